// CudaBackend: device memory and every Backend kernel on one GPU, name for name with CpuBackend.
// All work runs in order on the backend's own non-blocking stream; to_device/to_host, alloc and
// softmax_xent (which returns host values) wait for it. Convolutions run on cuDNN (one-channel
// 3x3/5x5 stride-1 ones with a bias on the direct kernels of conv2d_direct.cu), dense layers on
// cuBLAS (FP32 unless TF32 was asked for), everything else (pooling and batchnorm included) on
// the hand-written kernels of kernels.hpp.
// Like CpuBackend it owns scratch memory (the workspace that cuDNN, the bias gradients and
// pooling share, loss scalars), so one CudaBackend must not run two kernels at the same
// time; use one backend per caller thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <type_traits>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <strand/core/backend.hpp>

namespace strand::cuda {

// unique_ptr over a CUDA / cuBLAS / cuDNN handle (a pointer to an opaque struct) that calls
// the library's destroy function. Destroy errors are ignored: destructors must not throw, and a
// failing destroy means the context is already broken (the next checked call reports it).
template <class Handle, auto Destroy>
struct Destroyer {
  void operator()(Handle h) const noexcept { (void)Destroy(h); }
};
template <class Handle, auto Destroy>
using Unique = std::unique_ptr<std::remove_pointer_t<Handle>, Destroyer<Handle, Destroy>>;

using StreamPtr = Unique<cudaStream_t, cudaStreamDestroy>;
using CublasPtr = Unique<cublasHandle_t, cublasDestroy>;
using CudnnPtr = Unique<cudnnHandle_t, cudnnDestroy>;
using TensorDescPtr = Unique<cudnnTensorDescriptor_t, cudnnDestroyTensorDescriptor>;
using FilterDescPtr = Unique<cudnnFilterDescriptor_t, cudnnDestroyFilterDescriptor>;
using ConvDescPtr = Unique<cudnnConvolutionDescriptor_t, cudnnDestroyConvolutionDescriptor>;
using DevicePtr = Unique<void*, cudaFree>;
using GraphExecPtr = Unique<cudaGraphExec_t, cudaGraphExecDestroy>;

// Descriptors and algorithms for one convolution shape, chosen once (conv2d.cu).
struct ConvPlan {
  TensorDescPtr x, y;  // x [B,in_c,H,W], y [B,out_c,oh,ow]
  FilterDescPtr w;     // [out_c,in_c,kh,kw]
  ConvDescPtr conv;    // padding, strides, cross-correlation, FP32 FMA math
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t bwd_data{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
  size_t fwd_bytes = 0, bwd_data_bytes = 0, bwd_filter_bytes = 0;  // workspace each needs
};

class CudaBackend final : public Backend {
 public:
  // device must exist (make_cuda_backend checks); options: see backend.hpp.
  CudaBackend(int device, CudaOptions options);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  int device() const { return device_; }
  // "fwd A, bwd data B, bwd filter C (W MiB workspace)": the cuDNN algorithms (cudnn*Algo_t
  // numbers) chosen for this shape, choosing them now if no step has yet; "direct kernels ..."
  // where a convolution of this shape, with or without a bias, runs on conv2d_direct.cu
  // (conv2d.cu).
  std::string conv_algorithms(const Conv2dDesc& d, bool bias);
  std::string name() const override { return "cuda"; }
  DeviceKind kind() const override { return DeviceKind::Cuda; }

  Buffer alloc(size_t bytes) override;
  void free(void* ptr) noexcept override;
  void to_device(void* dst, const void* src, size_t bytes) override;
  void to_host(void* dst, const void* src, size_t bytes) override;
  void synchronize() override;
  void begin_step(int64_t batch) override;
  void end_step() override;
  const void* device_view(const void* host, size_t bytes, Buffer& storage) override;
  std::unique_ptr<Stage> make_stage(int64_t floats) override;  // stage.cu
  std::unique_ptr<Lane> make_lane() override;                  // lane.cu
  void gather(const GatherDesc& d, const int64_t* indices, const void* images, const int32_t* labels,
              float* x, int32_t* y) override;

  void conv2d_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b, float* y) override;
  void conv2d_backward(const Conv2dDesc& d, const float* x, const float* w, const float* dy, float* dx,
                       float* dw, float* db) override;
  void conv2d_relu_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b,
                           float* y) override;
  void relu_maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy,
                                float* dx) override;
  void maxpool2x2_forward(const Pool2dDesc& d, const float* x, float* y) override;
  void maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy,
                           float* dx) override;
  void pool_forward(PoolKind kind, const PoolDesc& d, const float* x, float* y) override;
  void pool_backward(PoolKind kind, const PoolDesc& d, const float* x, const float* dy, float* dx) override;
  void batchnorm_forward_train(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                               const float* running, float* y, float* saved, float* running_delta) override;
  void batchnorm_forward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                               const float* running, float* y) override;
  void batchnorm_backward(const BatchNormDesc& d, const float* x, const float* gamma_beta, const float* saved,
                          const float* dy, float* dx, float* dgamma_beta) override;
  void batchnorm_backward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                const float* running, const float* dy, float* dx,
                                float* dgamma_beta) override;
  void dense_forward(const DenseDesc& d, const float* x, const float* w, const float* b, float* y) override;
  void dense_backward(const DenseDesc& d, const float* x, const float* w, const float* dy, float* dx,
                      float* dw, float* db) override;
  void relu_forward(int64_t n, const float* x, float* y) override;
  void relu_backward(int64_t n, const float* y, const float* dy, float* dx) override;
  void dropout_forward(int64_t n, float rate, uint64_t key, uint64_t first, const float* x,
                       float* y) override;
  void dropout_backward(int64_t n, float rate, uint64_t key, uint64_t first, const float* dy,
                        float* dx) override;
  LossResult softmax_xent(int64_t batch, int64_t classes, const float* logits, const int32_t* labels,
                          float* dlogits) override;
  void softmax_xent_accumulate(int64_t batch, int64_t classes, const float* logits, const int32_t* labels,
                               float* dlogits) override;
  LossTotals take_loss_totals() override;
  void softmax(int64_t batch, int64_t classes, const float* logits, float* probs) override;
  void sgd_step(int64_t n, float lr, float* params, const float* grads) override;
  void momentum_step(int64_t n, float lr, float momentum, float* params, const float* grads,
                     float* velocity) override;
  void adam_step(int64_t n, float lr, float beta1, float beta2, float eps, int64_t step, float* params,
                 const float* grads, float* m, float* v) override;

 private:
  // The three outputs of the softmax_xent kernel, read back with one copy.
  struct LossScalars {
    double loss_sum;
    int64_t correct;
    int64_t bad_labels;
  };
  using ConvKey = std::array<int64_t, 11>;  // every Conv2dDesc field

  // Makes device_ current on the calling thread: the runtime's current device is per thread,
  // and several backends (several GPUs) may live in one process.
  void activate() const;
  // The workspace (cuDNN's, and the scratch of the bias gradients and pooling), grown
  // to at least `bytes` (contents unspecified).
  void* workspace(size_t bytes);
  const ConvPlan& conv_plan(const Conv2dDesc& d);  // conv2d.cu
  void conv2d_forward_impl(const Conv2dDesc& d, const float* x, const float* w, const float* b, float* y,
                           bool relu);  // conv2d.cu
  // The algorithms of `plan` (descriptors set), by cuDNN's heuristics or, with cudnn_benchmark_,
  // by timing them on scratch tensors (conv2d.cu).
  void choose_conv_algorithms(ConvPlan& plan);

  // Declaration order is destruction order reversed: descriptors and memory go before the
  // library handles, the stream last.
  // Ends a capture left open by a step that threw, discarding what it recorded.
  void abandon_capture() noexcept;

  int device_;
  bool tf32_;
  bool graphs_;
  bool cudnn_benchmark_;
  StreamPtr stream_;
  DevicePtr cublas_workspace_;  // before the handle: freed after it
  CublasPtr cublas_;
  CudnnPtr cudnn_;
  DevicePtr scalars_;  // LossScalars of the last softmax_xent call
  DevicePtr totals_;   // LossScalars summed by softmax_xent_accumulate
  int64_t totals_examples_ = 0;
  DevicePtr workspace_;
  size_t workspace_bytes_ = 0;
  std::map<ConvKey, ConvPlan> conv_plans_;
  // Step graphs: the first step at a batch size runs eagerly (plans, workspaces and library
  // scratch are made then, outside any capture); later steps are captured and replayed, one
  // graph per batch size.
  int64_t graph_batch_ = 0;  // of the step in progress
  bool capturing_ = false;
  std::set<int64_t> eager_batches_;              // batch sizes that have run once
  std::map<int64_t, GraphExecPtr> step_graphs_;  // declared after the stream: destroyed before it
};

}  // namespace strand::cuda
