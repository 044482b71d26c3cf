#include "core/backend.hpp"

#include <charconv>

#include "core/error.hpp"

namespace strand {

Buffer::~Buffer() {
  if (ptr_ && backend_) backend_->free(ptr_);
}

std::unique_ptr<Backend> make_backend(const std::string& device, int threads, CudaOptions cuda) {
  if (device == "cpu") {
    STRAND_CHECK(!cuda.tf32, Usage, "TF32 is a GPU math mode: use it with a cuda device", "device cpu");
    STRAND_CHECK(!cuda.cudnn_benchmark, Usage, "--cudnn-benchmark is for cuDNN: use it with a cuda device",
                 "device cpu");
    return make_cpu_backend(threads);
  }
  if (device == "cuda") return make_cuda_backend(0, cuda);
  if (device.rfind("cuda:", 0) == 0) {
    int index = -1;
    const char* first = device.data() + 5;
    const char* last = device.data() + device.size();
    auto [end, ec] = std::from_chars(first, last, index);
    if (ec == std::errc() && end == last && index >= 0) return make_cuda_backend(index, cuda);
  }
  throw Error(ErrorKind::Usage, "unknown device '" + device + "' (use cpu, cuda or cuda:N)", "device");
}

}  // namespace strand
