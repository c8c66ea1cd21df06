// Raw tensor bytes to and from files, for the safetensors reader/writer in lib/io. TypeScript
// parses and validates the JSON header; this file only moves bytes, straight between the file
// and tensor storage (no copy on the JS heap); both entries are declared here (js_op_table.h).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "js_common.h"
#include "js_op_table.h"

namespace edpo_js {
namespace {

struct FileCloser {
  int fd;
  ~FileCloser() {
    if (fd >= 0) ::close(fd);
  }
};

void read_all(int fd, char* dst, int64_t nbytes, int64_t offset, const std::string& path, const std::string& name) {
  while (nbytes > 0) {
    const ssize_t n = ::pread(fd, dst, size_t(std::min<int64_t>(nbytes, int64_t(1) << 30)), off_t(offset));
    TORCH_CHECK(n > 0, path, ": tensor '", name, "': ", n == 0 ? "file ends before its data" : std::strerror(errno));
    dst += n;
    nbytes -= n;
    offset += n;
  }
}

}  // namespace

// Reads the entries' bytes from the file at `path` into new CPU tensors.
std::vector<at::Tensor> read_tensors(const std::string& path,
                                     const std::vector<std::shared_ptr<const OpArgs>>& entries) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TORCH_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  FileCloser closer{fd};
  std::vector<at::Tensor> out;
  out.reserve(entries.size());
  for (const auto& entry : entries) {
    const OpArgs& e = *entry;
    const std::string& name = e.string("name");
    const int64_t nbytes = int64_t(e.number("nbytes"));
    at::Tensor t = at::empty(e.integer_list("shape"), at::TensorOptions().dtype(e.dtype("dtype")));
    TORCH_CHECK(int64_t(t.nbytes()) == nbytes, path, ": tensor '", name, "' has ", nbytes,
                " bytes but dtype and shape need ", t.nbytes());
    read_all(fd, static_cast<char*>(t.data_ptr()), nbytes, int64_t(e.number("offset")), path, name);
    out.push_back(std::move(t));
  }
  return out;
}

namespace {

void write_all(int fd, const char* src, size_t nbytes, const std::string& path) {
  while (nbytes > 0) {
    const ssize_t n = ::write(fd, src, std::min<size_t>(nbytes, size_t(1) << 30));
    TORCH_CHECK(n > 0, path, ": write failed: ", std::strerror(errno));
    src += n;
    nbytes -= size_t(n);
  }
}

// The file is the 8-byte little-endian header length, the header, then each tensor's bytes in
// order.
void write_tensors(const std::string& path, const std::vector<uint8_t>& header, const std::vector<at::Tensor>& list) {
  std::vector<at::Tensor> tensors;
  for (const auto& t : list) tensors.push_back(t.detach());
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  TORCH_CHECK(fd >= 0, path, ": cannot create: ", std::strerror(errno));
  FileCloser closer{fd};
  uint64_t length = header.size();
  unsigned char prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<unsigned char>((length >> (8 * i)) & 0xffu);
  write_all(fd, reinterpret_cast<const char*>(prefix), 8, path);
  write_all(fd, reinterpret_cast<const char*>(header.data()), header.size(), path);
  // Straight from each tensor's storage; only a device or non-contiguous tensor gets a host copy,
  // one tensor at a time, so the file never exists in memory as a whole.
  for (const auto& tensor : tensors) {
    const at::Tensor t = tensor.to(at::kCPU).contiguous();
    write_all(fd, static_cast<const char*>(t.data_ptr()), t.nbytes(), path);
  }
  TORCH_CHECK(::fsync(fd) == 0, path, ": fsync failed: ", std::strerror(errno));
}

}  // namespace

void declare_io_ops(std::vector<OpDecl>& ops) {
  using K = ArgKind;
  ops.push_back(
      {"readTensors",
       "Reads tensors' bytes from a file into new CPU tensors (the safetensors reader in lib/io).",
       {{"path", K::String, "The file."},
        {"entries",
         K::ObjectList,
         "Per tensor: its name, dtype, shape, absolute offset and byte count.",
         0,
         NAN,
         {{"name", K::String, "The tensor's name (for errors)."},
          {"dtype", K::DType, "Its dtype."},
          {"shape", K::Shape, "Its shape."},
          {"offset", K::Number, "Absolute file offset of its bytes."},
          {"nbytes", K::Number, "Its byte count."}},
         "NativeReadEntry"}},
       {{"tensors", false, "The tensors, in the entries' order.", ResultKind::TensorList}},
       [](const OpArgs& a) -> OpResults { return {read_tensors(a.string("path"), a.object_list("entries"))}; }});
  ops.push_back(
      {"writeTensors",
       "Writes a safetensors file: the 8-byte little-endian header length, the header, then each tensor's bytes "
       "in order, straight from its storage.",
       {{"path", K::String, "The file (created or truncated)."},
        {"header", K::Bytes, "The JSON header, already laid out by lib/io."},
        {"tensors", K::TensorList, "The tensors, in the header's order."}},
       {},
       [](const OpArgs& a) -> OpResults {
         write_tensors(a.string("path"), a.byte_array("header"), a.list("tensors"));
         return {};
       },
       Call::Positional,
       Mode::Sync,
       Returns::Value});
}

}  // namespace edpo_js
