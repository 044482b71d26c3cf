// Row-wise softmax and mean softmax cross-entropy, one thread per row with the CPU's order of
// operations (max shift, then exp, sum, log). dlogits may alias logits, probs may alias
// logits: each row reads l[j] before it writes g[j].
//
// softmax_xent runs as ONE block that walks the rows in tiles of kXentBlock: each thread does
// one row of the tile, then thread 0 adds the tile's losses in row order into a double. The
// sum is thus taken in row order like the CPU's, the same bits every run, with no scratch
// memory and no second launch. A block is plenty for the batch sizes of training; inference
// (softmax) uses a full grid.
#include <string>

#include <strand/core/cuda/check.hpp>
#include <strand/core/cuda/kernels.hpp>
#include <strand/core/error.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cuda {
namespace {

constexpr int kXentBlock = 256;

__global__ void softmax_xent_kernel(int64_t batch, int64_t classes, const float* logits,
                                    const int32_t* __restrict__ labels, float* dlogits, double* loss_sum,
                                    int64_t* correct, int64_t* bad_labels) {
  __shared__ float row_loss[kXentBlock];
  __shared__ int row_hit[kXentBlock];
  __shared__ int row_bad[kXentBlock];
  const float inv_batch = 1.0f / static_cast<float>(batch);
  double total = 0.0;  // thread 0's running sums
  int64_t hits = 0, bad = 0;
  for (int64_t base = 0; base < batch; base += kXentBlock) {
    const int64_t n = base + threadIdx.x;
    float loss = 0.0f;
    int hit = 0, is_bad = 0;
    if (n < batch) {
      const int32_t label = labels[n];
      if (label < 0 || label >= classes) {
        is_bad = 1;  // the backend throws; this row's dlogits are left as they were
      } else {
        const float* l = logits + n * classes;  // [C]
        float* g = dlogits + n * classes;       // [C]
        int64_t arg = 0;
        for (int64_t j = 1; j < classes; ++j) arg = l[j] > l[arg] ? j : arg;
        const float mx = l[arg];
        float sum = 0.0f;
        for (int64_t j = 0; j < classes; ++j) sum += expf(l[j] - mx);
        loss = logf(sum) - (l[label] - mx);
        hit = arg == label;
        const float inv_sum = 1.0f / sum;
        for (int64_t j = 0; j < classes; ++j)
          g[j] = (expf(l[j] - mx) * inv_sum - (j == label ? 1.0f : 0.0f)) * inv_batch;
      }
    }
    row_loss[threadIdx.x] = loss;
    row_hit[threadIdx.x] = hit;
    row_bad[threadIdx.x] = is_bad;
    __syncthreads();
    if (threadIdx.x == 0) {
      const int64_t rows = batch - base < kXentBlock ? batch - base : kXentBlock;
      for (int64_t r = 0; r < rows; ++r) {
        total += row_loss[r];
        hits += row_hit[r];
        bad += row_bad[r];
      }
    }
    __syncthreads();  // the tile's shared rows are read before the next tile overwrites them
  }
  if (threadIdx.x == 0) {
    *loss_sum = total;
    *correct = hits;
    *bad_labels = bad;
  }
}

__global__ void softmax_kernel(int64_t batch, int64_t classes, const float* logits, float* probs) {
  for (int64_t n = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; n < batch;
       n += int64_t{gridDim.x} * blockDim.x) {
    const float* l = logits + n * classes;  // [C]
    float* p = probs + n * classes;         // [C]
    float mx = l[0];
    for (int64_t j = 1; j < classes; ++j) mx = l[j] > mx ? l[j] : mx;
    float sum = 0.0f;
    for (int64_t j = 0; j < classes; ++j) {
      p[j] = expf(l[j] - mx);
      sum += p[j];
    }
    const float inv_sum = 1.0f / sum;
    for (int64_t j = 0; j < classes; ++j) p[j] *= inv_sum;
  }
}

}  // namespace

void softmax_xent(int64_t batch, int64_t classes, const float* logits, const int32_t* labels, float* dlogits,
                  double* loss_sum, int64_t* correct, int64_t* bad_labels, cudaStream_t stream) {
  check_softmax(batch, classes, "cuda::softmax_xent");
  softmax_xent_kernel<<<1, kXentBlock, 0, stream>>>(batch, classes, logits, labels, dlogits, loss_sum,
                                                    correct, bad_labels);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

void softmax(int64_t batch, int64_t classes, const float* logits, float* probs, cudaStream_t stream) {
  check_softmax(batch, classes, "cuda::softmax");
  softmax_kernel<<<grid_for(batch), kBlock, 0, stream>>>(batch, classes, logits, probs);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

namespace {
__global__ void add_loss_totals_kernel(const double* loss_sum, const int64_t* correct,
                                       const int64_t* bad_labels, double* total_loss, int64_t* total_correct,
                                       int64_t* total_bad) {
  *total_loss += *loss_sum;
  *total_correct += *correct;
  *total_bad += *bad_labels;
}
}  // namespace

void add_loss_totals(const double* loss_sum, const int64_t* correct, const int64_t* bad_labels,
                     double* total_loss, int64_t* total_correct, int64_t* total_bad, cudaStream_t stream) {
  add_loss_totals_kernel<<<1, 1, 0, stream>>>(loss_sum, correct, bad_labels, total_loss, total_correct,
                                              total_bad);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strand::cuda
