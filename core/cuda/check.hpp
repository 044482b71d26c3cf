// Error checks for the CUDA runtime, cuBLAS and cuDNN: one macro per library, each turning a
// failed call into strand::Error with the library's own error text, the call's source text and
// file:line in `where`.
//
// Kinds: running out of GPU memory is ErrorKind::Usage (the caller can act on it: a smaller
// batch, another GPU); every other failure is ErrorKind::Internal (a broken invariant, a bad
// launch, or a device fault, after which the CUDA context is unusable anyway).
// After every kernel launch: STRAND_CUDA_CHECK(cudaGetLastError()).
#pragma once

#include <string>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <strand/core/error.hpp>

namespace strand::cuda::detail {

inline std::string check_where(const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line);
}

[[noreturn]] inline void throw_cuda(cudaError_t err, const char* expr, const char* file, int line) {
  const bool oom = err == cudaErrorMemoryAllocation;
  throw Error(oom ? ErrorKind::Usage : ErrorKind::Internal,
              std::string("CUDA: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ") in " +
                  expr + (oom ? " (out of GPU memory: try a smaller batch)" : ""),
              check_where(file, line));
}

[[noreturn]] inline void throw_cublas(cublasStatus_t st, const char* expr, const char* file, int line) {
  const bool oom = st == CUBLAS_STATUS_ALLOC_FAILED;
  throw Error(oom ? ErrorKind::Usage : ErrorKind::Internal,
              std::string("cuBLAS: ") + cublasGetStatusString(st) + " in " + expr +
                  (oom ? " (out of GPU memory: try a smaller batch)" : ""),
              check_where(file, line));
}

[[noreturn]] inline void throw_cudnn(cudnnStatus_t st, const char* expr, const char* file, int line) {
  const bool oom = st == CUDNN_STATUS_ALLOC_FAILED;
  char detail[512] = {};  // cuDNN 9 keeps a longer explanation of the last failure
  cudnnGetLastErrorString(detail, sizeof detail);
  throw Error(oom ? ErrorKind::Usage : ErrorKind::Internal,
              std::string("cuDNN: ") + cudnnGetErrorString(st) + " in " + expr +
                  (detail[0] ? std::string(" (") + detail + ")" : std::string()) +
                  (oom ? " (out of GPU memory: try a smaller batch)" : ""),
              check_where(file, line));
}

}  // namespace strand::cuda::detail

#define STRAND_CUDA_CHECK(expr)                                                        \
  do {                                                                                 \
    const cudaError_t strand_cuda_err_ = (expr);                                       \
    if (strand_cuda_err_ != cudaSuccess)                                               \
      ::strand::cuda::detail::throw_cuda(strand_cuda_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define STRAND_CUBLAS_CHECK(expr)                                                         \
  do {                                                                                    \
    const cublasStatus_t strand_cublas_st_ = (expr);                                      \
    if (strand_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                       \
      ::strand::cuda::detail::throw_cublas(strand_cublas_st_, #expr, __FILE__, __LINE__); \
  } while (0)

#define STRAND_CUDNN_CHECK(expr)                                                        \
  do {                                                                                  \
    const cudnnStatus_t strand_cudnn_st_ = (expr);                                      \
    if (strand_cudnn_st_ != CUDNN_STATUS_SUCCESS)                                       \
      ::strand::cuda::detail::throw_cudnn(strand_cudnn_st_, #expr, __FILE__, __LINE__); \
  } while (0)
