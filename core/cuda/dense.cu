// Dense layer on cuBLAS sgemm (FP32 math, see the backend's handle set-up) and the two bias
// kernels. x [B,in], w [out,in], b [out], y [B,out].
//
// cuBLAS is column-major: a row-major [r,c] matrix is the column-major [c,r] matrix, its
// transpose, with leading dimension c. So each row-major product C = A B is computed as
// C^T = B^T A^T on the same memory, with the operands swapped.
#include <string>

#include "core/cuda/check.hpp"
#include "core/cuda/cuda_backend.hpp"
#include "core/cuda/kernels.hpp"
#include "core/error.hpp"
#include "core/op_checks.hpp"

namespace strand::cuda {
namespace {

// The shared checks, plus cuBLAS's limit: cublasSgemm takes int sizes.
void check_dense_dims(const DenseDesc& d, const char* where) {
  check_dense(d, where);
  constexpr int64_t kMax = int64_t{1} << 31;
  STRAND_CHECK(d.batch < kMax && d.in < kMax && d.out < kMax, Shape,
               "dense sizes must be below 2^31 for cuBLAS, got batch=" + std::to_string(d.batch) +
                   " in=" + std::to_string(d.in) + " out=" + std::to_string(d.out),
               where);
}

__global__ void add_bias_rows_kernel(int64_t rows, int64_t cols, const float* __restrict__ b,
                                     float* __restrict__ y) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    y[i] += b[i % cols];
}

// One thread per column, summing down the rows in row order like the CPU: deterministic, and
// adjacent threads read adjacent addresses.
__global__ void bias_grad_rows_kernel(int64_t rows, int64_t cols, const float* __restrict__ dy,
                                      float* __restrict__ db) {
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < cols;
       c += int64_t{gridDim.x} * blockDim.x) {
    float s = dy[c];
    for (int64_t r = 1; r < rows; ++r) s += dy[r * cols + c];
    db[c] = s;
  }
}

}  // namespace

void add_bias_rows(int64_t rows, int64_t cols, const float* b, float* y, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  add_bias_rows_kernel<<<grid_for(rows * cols), kBlock, 0, stream>>>(rows, cols, b, y);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

void bias_grad_rows(int64_t rows, int64_t cols, const float* dy, float* db, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  bias_grad_rows_kernel<<<grid_for(cols), kBlock, 0, stream>>>(rows, cols, dy, db);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::dense_forward(const DenseDesc& d, const float* x, const float* w,
                                const float* b, float* y) {
  check_dense_dims(d, "cuda::dense_forward");
  activate();
  const int B = int(d.batch), in = int(d.in), out = int(d.out);
  const float one = 1.0f, zero = 0.0f;
  // y [B,out] = x [B,in] w^T  <=>  y^T [out,B] = w [out,in] x^T; in column-major terms
  // w is the [in,out] matrix w^T (ld in), so op T; x is [in,B] (ld in), op N; y is [out,B].
  STRAND_CUBLAS_CHECK(cublasSgemm(cublas_.get(), CUBLAS_OP_T, CUBLAS_OP_N, out, B, in, &one, w,
                                  in, x, in, &zero, y, out));
  add_bias_rows(d.batch, d.out, b, y, stream_.get());
}

void CudaBackend::dense_backward(const DenseDesc& d, const float* x, const float* w,
                                 const float* dy, float* dx, float* dw, float* db) {
  check_dense_dims(d, "cuda::dense_backward");
  activate();
  const int B = int(d.batch), in = int(d.in), out = int(d.out);
  const float one = 1.0f, zero = 0.0f;
  // dw [out,in] = dy^T x  <=>  dw^T [in,out] = x^T [in,B] (ld in) * dy [B,out], where dy in
  // column-major is dy^T [out,B] (ld out), so op T.
  STRAND_CUBLAS_CHECK(cublasSgemm(cublas_.get(), CUBLAS_OP_N, CUBLAS_OP_T, in, out, B, &one, x,
                                  in, dy, out, &zero, dw, in));
  // dx [B,in] = dy w  <=>  dx^T [in,B] = w^T [in,out] (ld in) * dy^T [out,B] (ld out).
  if (dx) {
    STRAND_CUBLAS_CHECK(cublasSgemm(cublas_.get(), CUBLAS_OP_N, CUBLAS_OP_N, in, B, out, &one, w,
                                    in, dy, out, &zero, dx, in));
  }
  bias_grad_rows(d.batch, d.out, dy, db, stream_.get());  // db [out]
}

}  // namespace strand::cuda
