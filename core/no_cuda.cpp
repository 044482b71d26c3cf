// The CUDA entry points of a build without CUDA (-Dcuda=disabled, or nvcc not found).
#include <strand/core/backend.hpp>
#include <strand/core/error.hpp>

namespace strand {

bool cuda_built() { return false; }
int cuda_device_count() { return 0; }

std::unique_ptr<Backend> make_cuda_backend(int, CudaOptions) {
  throw Error(ErrorKind::Usage,
              "this strand was built without CUDA (rebuild with -Dcuda=enabled where nvcc, cuBLAS and cuDNN "
              "are installed)",
              "device cuda");
}

}  // namespace strand
