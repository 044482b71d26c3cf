// CPU kernels behind CpuBackend, one free function per Backend kernel (same arguments, same
// layouts and contracts as backend.hpp) plus a trailing ThreadPool to run on. Conv and dense
// run on sgemm (gemm.hpp); everything else is a vectorized loop.
// Kernels that need scratch memory take a Workspace owned by the caller, so there is no
// global state: one Workspace must not be used by two calls at the same time.
//
// Determinism: every kernel gives the same bits for the same inputs and pool size. Only the
// weight gradients (conv2d dw) depend on the pool size, because they are reduced per chunk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

#include <strand/core/backend.hpp>
#include <strand/core/cpu/thread_pool.hpp>

namespace strand::cpu {

// Reusable scratch: `slots` regions of equal size, each 64-byte aligned, one per parallel
// chunk. Grows on demand and never shrinks; contents are unspecified after reserve().
class Workspace {
 public:
  void reserve(int slots, size_t floats_per_slot) {
    stride_ = (floats_per_slot + 15) / 16 * 16;  // keep every slot on a 64-byte boundary
    const size_t need = stride_ * static_cast<size_t>(slots);
    if (need > capacity_) {
      data_.reset(static_cast<float*>(::operator new[](need * sizeof(float), std::align_val_t{64})));
      capacity_ = need;
    }
  }
  float* slot(int i) const { return data_.get() + stride_ * static_cast<size_t>(i); }

 private:
  struct Free {
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::unique_ptr<float[], Free> data_;
  size_t capacity_ = 0, stride_ = 0;
};

void conv2d_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b, float* y,
                    Workspace& ws, ThreadPool& pool);
void conv2d_backward(const Conv2dDesc& d, const float* x, const float* w, const float* dy, float* dx,
                     float* dw, float* db, Workspace& ws, ThreadPool& pool);

void maxpool2x2_forward(const Pool2dDesc& d, const float* x, float* y, ThreadPool& pool);
// relu: dx also zero where x <= 0, x being a ReLU's output (Backend::relu_maxpool2x2_backward).
void maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy, float* dx,
                         bool relu, ThreadPool& pool);

void pool_forward(PoolKind kind, const PoolDesc& d, const float* x, float* y, ThreadPool& pool);
void pool_backward(PoolKind kind, const PoolDesc& d, const float* x, const float* dy, float* dx,
                   ThreadPool& pool);

void batchnorm_forward_train(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                             const float* running, float* y, float* saved, float* running_delta,
                             ThreadPool& pool);
void batchnorm_forward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                             const float* running, float* y, ThreadPool& pool);
void batchnorm_backward(const BatchNormDesc& d, const float* x, const float* gamma_beta, const float* saved,
                        const float* dy, float* dx, float* dgamma_beta, ThreadPool& pool);
void batchnorm_backward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                              const float* running, const float* dy, float* dx, float* dgamma_beta,
                              ThreadPool& pool);

void dense_forward(const DenseDesc& d, const float* x, const float* w, const float* b, float* y,
                   ThreadPool& pool);
void dense_backward(const DenseDesc& d, const float* x, const float* w, const float* dy, float* dx, float* dw,
                    float* db, ThreadPool& pool);

void relu_forward(int64_t n, const float* x, float* y, ThreadPool& pool);
void relu_backward(int64_t n, const float* y, const float* dy, float* dx, ThreadPool& pool);

void dropout_forward(int64_t n, float rate, uint64_t key, uint64_t first, const float* x, float* y,
                     ThreadPool& pool);
void dropout_backward(int64_t n, float rate, uint64_t key, uint64_t first, const float* dy, float* dx,
                      ThreadPool& pool);

// `ws` holds the per-row losses so they can be summed in row order.
LossResult softmax_xent(int64_t batch, int64_t classes, const float* logits, const int32_t* labels,
                        float* dlogits, Workspace& ws, ThreadPool& pool);
void softmax(int64_t batch, int64_t classes, const float* logits, float* probs, ThreadPool& pool);

// x [b,C,H,W] = images[indices[i]] as float32, augmented as d says (backend.hpp GatherDesc),
// y [b] = labels[indices[i]]. Indices are not checked: they come from a permutation of the
// data set's own rows.
void gather(const GatherDesc& d, const int64_t* indices, const void* images, const int32_t* labels, float* x,
            int32_t* y, ThreadPool& pool);

void sgd_step(int64_t n, float lr, float* params, const float* grads, ThreadPool& pool);
// velocity = momentum * velocity + grads; params -= lr * velocity.
void momentum_step(int64_t n, float lr, float momentum, float* params, const float* grads, float* velocity,
                   ThreadPool& pool);
void adam_step(int64_t n, float lr, float beta1, float beta2, float eps, int64_t step, float* params,
               const float* grads, float* m, float* v, ThreadPool& pool);

// Elementwise loops are compiled three times — for x86-64-v4 (AVX-512), v3 (AVX2, FMA) and the
// baseline — and the dynamic loader picks the best the CPU runs (GCC function multi-versioning),
// so the library needs no -march flag and the user no environment variable.
#define STRAND_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

// Element count above which elementwise loops go parallel; below it, starting threads costs
// more than the loop.
inline constexpr int64_t kParallelMin = 1 << 15;

}  // namespace strand::cpu
