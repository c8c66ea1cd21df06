// The backend registry (backend.h): one slot per device type, filled while the library loads.
#include "backend.h"

#include <c10/util/Exception.h>

#include <array>

namespace edpo {
namespace {

// A function-local table: registrations run during static initialisation, in any file order.
std::array<const Backend*, size_t(c10::COMPILE_TIME_MAX_DEVICE_TYPES)>& slots() {
  static std::array<const Backend*, size_t(c10::COMPILE_TIME_MAX_DEVICE_TYPES)> table{};
  return table;
}

}  // namespace

BackendRegistration::BackendRegistration(c10::DeviceType type, const Backend* backend) {
  slots().at(size_t(type)) = backend;
}

const Backend* find_backend(c10::DeviceType type) {
  const size_t i = size_t(type);
  return i < slots().size() ? slots()[i] : nullptr;
}

const Backend& backend_for(const c10::Device& device, const char* what) {
  const Backend* b = find_backend(device.type());
  TORCH_CHECK(
      b != nullptr, what, ": tensors on ", device,
      device.is_cuda() ? " need a CUDA build of edpo (EDPO_CUDA=1 npm run build:cuda)" : " have no edpo kernels");
  return *b;
}

}  // namespace edpo
