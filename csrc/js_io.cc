// Raw tensor bytes to and from files, for the safetensors reader/writer in lib/io. TypeScript
// parses and validates the JSON header; this file only moves bytes, straight between the file
// and tensor storage (no copy on the JS heap). readTensors is declared in js_op_table.cc.
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

std::vector<ReadEntry> arg_read_entries(const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), what + ": expected an array");
  const auto array = v.As<Napi::Array>();
  std::vector<ReadEntry> entries;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const Napi::Value item = array.Get(i);
    if (!item.IsObject()) throw Napi::TypeError::New(v.Env(), what + "[" + std::to_string(i) + "]: expected an object");
    const Napi::Object e = item.As<Napi::Object>();
    const std::string field = what + "[].";
    ReadEntry entry;
    entry.name = arg_string(e.Get("name"), (field + "name").c_str());
    entry.dtype = parse_dtype(arg_string(e.Get("dtype"), (field + "dtype").c_str()), (field + "dtype").c_str());
    entry.shape = arg_shape(e.Get("shape"), (field + "shape").c_str());
    entry.offset = int64_t(arg_number(e.Get("offset"), (field + "offset").c_str()));
    entry.nbytes = int64_t(arg_number(e.Get("nbytes"), (field + "nbytes").c_str()));
    entries.push_back(std::move(entry));
  }
  return entries;
}

std::vector<at::Tensor> read_tensors(const std::string& path, const std::vector<ReadEntry>& entries) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TORCH_CHECK(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  FileCloser closer{fd};
  std::vector<at::Tensor> out;
  out.reserve(entries.size());
  for (const auto& e : entries) {
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
    TORCH_CHECK(int64_t(t.nbytes()) == e.nbytes, path, ": tensor '", e.name, "' has ", e.nbytes,
                " bytes but dtype and shape need ", t.nbytes());
    read_all(fd, static_cast<char*>(t.data_ptr()), e.nbytes, e.offset, path, e.name);
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

// writeTensors(path, header: Uint8Array, tensors: Tensor[]): the file is the 8-byte little-endian
// header length, the header, then each tensor's bytes in order (CPU, contiguous).
Napi::Value WriteTensors(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&] {
    const std::string path = arg_string(info[0], "path");
    if (!info[1].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "header: expected a Uint8Array");
    const auto header = info[1].As<Napi::Uint8Array>();
    if (!info[2].IsArray()) throw Napi::TypeError::New(info.Env(), "tensors: expected an array of Tensors");
    const auto array = info[2].As<Napi::Array>();
    std::vector<at::Tensor> tensors;
    for (uint32_t i = 0; i < array.Length(); ++i) tensors.push_back(TensorWrap::FromValue(array.Get(i), "tensors").detach());
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    TORCH_CHECK(fd >= 0, path, ": cannot create: ", std::strerror(errno));
    FileCloser closer{fd};
    uint64_t length = header.ByteLength();
    unsigned char prefix[8];
    for (int i = 0; i < 8; ++i) prefix[i] = static_cast<unsigned char>((length >> (8 * i)) & 0xffu);
    write_all(fd, reinterpret_cast<const char*>(prefix), 8, path);
    write_all(fd, reinterpret_cast<const char*>(header.Data()), header.ByteLength(), path);
    // Straight from each tensor's storage; only a device or non-contiguous tensor gets a host copy,
    // one tensor at a time, so the file never exists in memory as a whole.
    for (const auto& tensor : tensors) {
      const at::Tensor t = tensor.to(at::kCPU).contiguous();
      write_all(fd, static_cast<const char*>(t.data_ptr()), t.nbytes(), path);
    }
    TORCH_CHECK(::fsync(fd) == 0, path, ": fsync failed: ", std::strerror(errno));
    return info.Env().Undefined();
  });
}

}  // namespace

void InitIo(Napi::Env env, Napi::Object exports) {
  export_functions(env, exports, {
                                      {"writeTensors", WriteTensors},
                                  });
}

}  // namespace edpo_js
