// Dense layer on cuBLAS sgemm (FP32 math, see the backend's handle set-up) and the two bias
// kernels. x [B,in], w [out,in], b [out], y [B,out].
//
// cuBLAS is column-major: a row-major [r,c] matrix is the column-major [c,r] matrix, its
// transpose, with leading dimension c. So each row-major product C = A B is computed as
// C^T = B^T A^T on the same memory, with the operands swapped.
#include <string>

#include <strand/core/cuda/check.hpp>
#include <strand/core/cuda/cuda_backend.hpp>
#include <strand/core/cuda/kernels.hpp>
#include <strand/core/error.hpp>
#include <strand/core/op_checks.hpp>

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

// Index: uint32_t when rows * cols fits (64-bit remainder is slow on the GPU), else int64_t.
template <class Index>
__global__ void add_bias_rows_kernel(Index rows, Index cols, const float* __restrict__ b,
                                     float* __restrict__ y) {
  const Index n = rows * cols;
  for (Index i = blockIdx.x * Index{blockDim.x} + threadIdx.x; i < n; i += Index{gridDim.x} * blockDim.x)
    y[i] += b[i % cols];
}

// db [cols] = column sums of dy [rows, cols] in two deterministic passes. Pass 1: block
// (column tile, chunk) sums kRowsPerChunk rows of 32 adjacent columns (reads coalesced), each
// of its 8 warps a fixed strided subset of the rows, then the 8 partial sums in order, into
// part [chunks, cols]; pass 2 adds each column's chunks in order. One thread per column
// summing all rows (1,024 threads for 4,096 rows) ran at a small fraction of memory speed.
constexpr int kTileCols = 32, kTileRows = 8;
constexpr int64_t kRowsPerChunk = 64;

__global__ void bias_grad_rows_partial(int64_t rows, int64_t cols, const float* __restrict__ dy,
                                       float* __restrict__ part) {
  __shared__ float sums[kTileRows][kTileCols];
  const int64_t c = blockIdx.x * int64_t{kTileCols} + threadIdx.x;
  const int64_t r0 = blockIdx.y * kRowsPerChunk;
  const int64_t r1 = std::min(rows, r0 + kRowsPerChunk);
  float s = 0.0f;
  if (c < cols)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kTileRows) s += dy[r * cols + c];
  sums[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float t = sums[0][threadIdx.x];
    for (int k = 1; k < kTileRows; ++k) t += sums[k][threadIdx.x];
    part[blockIdx.y * cols + c] = t;
  }
}

__global__ void bias_grad_rows_finish(int64_t chunks, int64_t cols, const float* __restrict__ part,
                                      float* __restrict__ db) {
  for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < cols;
       c += int64_t{gridDim.x} * blockDim.x) {
    float s = part[c];
    for (int64_t k = 1; k < chunks; ++k) s += part[k * cols + c];
    db[c] = s;
  }
}

}  // namespace

void add_bias_rows(int64_t rows, int64_t cols, const float* b, float* y, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t n = rows * cols;
  if (n < (int64_t{1} << 31)) {
    add_bias_rows_kernel<uint32_t><<<grid_for(n), kBlock, 0, stream>>>(uint32_t(rows), uint32_t(cols), b, y);
  } else {
    add_bias_rows_kernel<int64_t><<<grid_for(n), kBlock, 0, stream>>>(rows, cols, b, y);
  }
  STRAND_CUDA_CHECK(cudaGetLastError());
}

int64_t bias_grad_rows_chunks(int64_t rows) { return (rows + kRowsPerChunk - 1) / kRowsPerChunk; }

void bias_grad_rows(int64_t rows, int64_t cols, const float* dy, float* part, float* db,
                    cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t chunks = bias_grad_rows_chunks(rows);
  STRAND_CHECK(chunks <= 65535, Shape,
               "dense bias gradient on the GPU takes at most " + std::to_string(65535 * kRowsPerChunk) +
                   " rows, got " + std::to_string(rows),
               "cuda::bias_grad_rows");
  const dim3 grid(unsigned((cols + kTileCols - 1) / kTileCols), unsigned(chunks));
  bias_grad_rows_partial<<<grid, dim3(kTileCols, kTileRows), 0, stream>>>(rows, cols, dy, part);
  STRAND_CUDA_CHECK(cudaGetLastError());
  bias_grad_rows_finish<<<grid_for(cols), kBlock, 0, stream>>>(chunks, cols, part, db);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

void CudaBackend::dense_forward(const DenseDesc& d, const float* x, const float* w, const float* b,
                                float* y) {
  check_dense_dims(d, "cuda::dense_forward");
  activate();
  const int B = int(d.batch), in = int(d.in), out = int(d.out);
  const float one = 1.0f, zero = 0.0f;
  // y [B,out] = x [B,in] w^T  <=>  y^T [out,B] = w [out,in] x^T; in column-major terms
  // w is the [in,out] matrix w^T (ld in), so op T; x is [in,B] (ld in), op N; y is [out,B].
  STRAND_CUBLAS_CHECK(
      cublasSgemm(cublas_.get(), CUBLAS_OP_T, CUBLAS_OP_N, out, B, in, &one, w, in, x, in, &zero, y, out));
  add_bias_rows(d.batch, d.out, b, y, stream_.get());
}

void CudaBackend::dense_backward(const DenseDesc& d, const float* x, const float* w, const float* dy,
                                 float* dx, float* dw, float* db) {
  check_dense_dims(d, "cuda::dense_backward");
  activate();
  const int B = int(d.batch), in = int(d.in), out = int(d.out);
  const float one = 1.0f, zero = 0.0f;
  // dw [out,in] = dy^T x  <=>  dw^T [in,out] = x^T [in,B] (ld in) * dy [B,out], where dy in
  // column-major is dy^T [out,B] (ld out), so op T.
  STRAND_CUBLAS_CHECK(
      cublasSgemm(cublas_.get(), CUBLAS_OP_N, CUBLAS_OP_T, in, out, B, &one, x, in, dy, out, &zero, dw, in));
  // dx [B,in] = dy w  <=>  dx^T [in,B] = w^T [in,out] (ld in) * dy^T [out,B] (ld out).
  if (dx) {
    STRAND_CUBLAS_CHECK(cublasSgemm(cublas_.get(), CUBLAS_OP_N, CUBLAS_OP_N, in, B, out, &one, w, in, dy, out,
                                    &zero, dx, in));
  }
  // db [out], through the partial sums in the workspace (not used by cuBLAS, which has its own).
  auto* part = static_cast<float*>(workspace(size_t(bias_grad_rows_chunks(d.batch) * d.out) * sizeof(float)));
  bias_grad_rows(d.batch, d.out, dy, part, db, stream_.get());
}

}  // namespace strand::cuda
