#include <strand/core/backend.hpp>

#include <charconv>

#include <strand/core/error.hpp>

namespace strand {

Buffer::~Buffer() {
  if (ptr_ && backend_) backend_->free(ptr_);
}

std::string Device::str() const {
  if (kind == DeviceKind::Cpu) return "cpu";
  return index == kLocalGpu ? "cuda" : "cuda:" + std::to_string(index);
}

Device parse_device(std::string_view text) {
  if (text == "cpu") return {};
  if (text == "cuda") return {DeviceKind::Cuda, Device::kLocalGpu};
  if (text.starts_with("cuda:")) {
    int index = -1;
    const char* first = text.data() + 5;
    const char* last = text.data() + text.size();
    auto [end, ec] = std::from_chars(first, last, index);
    if (ec == std::errc() && end == last && index >= 0) return {DeviceKind::Cuda, index};
  }
  throw Error(ErrorKind::Usage, "unknown device '" + std::string(text) + "' (use cpu, cuda or cuda:N)",
              "device");
}

std::unique_ptr<Backend> make_backend(Device device, int threads, CudaOptions cuda) {
  if (device.is_cpu()) {
    STRAND_CHECK(!cuda.tf32, Usage, "TF32 is a GPU math mode: use it with a cuda device", "device cpu");
    STRAND_CHECK(!cuda.cudnn_benchmark, Usage, "--cudnn-benchmark is for cuDNN: use it with a cuda device",
                 "device cpu");
    return make_cpu_backend(threads);
  }
  return make_cuda_backend(device.resolved(0).index, cuda);
}

}  // namespace strand
