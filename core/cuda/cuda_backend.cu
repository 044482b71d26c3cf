// CudaBackend: handles, memory and the thin kernel forwarders; conv2d.cu and dense.cu hold the
// cuDNN and cuBLAS members. Also the CUDA entry points of backend.hpp.
#include <strand/core/cuda/cuda_backend.hpp>

#include <string>
#include <utility>

#include <strand/core/cuda/check.hpp>
#include <strand/core/cuda/kernels.hpp>
#include <strand/core/error.hpp>

namespace strand {
namespace cuda {
namespace {

// What NVIDIA recommends for Hopper; more than any sgemm here needs.
constexpr size_t kCublasWorkspace = size_t{32} << 20;

DevicePtr device_malloc(size_t bytes) {
  void* p = nullptr;
  STRAND_CUDA_CHECK(cudaMalloc(&p, bytes));
  return DevicePtr(p);
}

}  // namespace

CudaBackend::CudaBackend(int device, CudaOptions options)
    : device_(device),
      tf32_(options.tf32),
      graphs_(options.graphs),
      cudnn_benchmark_(options.cudnn_benchmark) {
  activate();
  cudaStream_t stream = nullptr;
  STRAND_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  stream_.reset(stream);
  cublasHandle_t blas = nullptr;
  STRAND_CUBLAS_CHECK(cublasCreate(&blas));
  cublas_.reset(blas);
  STRAND_CUBLAS_CHECK(cublasSetStream(blas, stream));
  // Plain FP32 sgemm unless TF32 was asked for: CUBLAS_DEFAULT_MATH never uses TF32 for FP32
  // data, so dense layers then match the CPU within 1e-4.
  STRAND_CUBLAS_CHECK(cublasSetMathMode(blas, tf32_ ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  // An explicit workspace: inside a graph capture cuBLAS may not allocate its own.
  cublas_workspace_ = device_malloc(kCublasWorkspace);
  STRAND_CUBLAS_CHECK(cublasSetWorkspace(blas, cublas_workspace_.get(), kCublasWorkspace));
  cudnnHandle_t dnn = nullptr;
  STRAND_CUDNN_CHECK(cudnnCreate(&dnn));
  cudnn_.reset(dnn);
  STRAND_CUDNN_CHECK(cudnnSetStream(dnn, stream));
  scalars_ = device_malloc(sizeof(LossScalars));
  totals_ = device_malloc(sizeof(LossScalars));
  STRAND_CUDA_CHECK(cudaMemsetAsync(totals_.get(), 0, sizeof(LossScalars), stream));
}

CudaBackend::~CudaBackend() {
  // Members are released after this body on the same thread, so they see this device; the
  // stream is drained first so nothing still runs on memory that is about to be freed.
  (void)cudaSetDevice(device_);
  abandon_capture();
  (void)cudaStreamSynchronize(stream_.get());
}

void CudaBackend::abandon_capture() noexcept {
  if (!capturing_) return;
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  (void)cudaStreamEndCapture(stream_.get(), &graph);
  if (graph) (void)cudaGraphDestroy(graph);
  (void)cudaGetLastError();
  step_graphs_.erase(graph_batch_);
}

void CudaBackend::begin_step(int64_t batch) {
  activate();
  abandon_capture();
  if (!graphs_) return;
  graph_batch_ = batch;
  // A new shape runs eagerly once (plans, workspaces and library scratch are made then), and is
  // captured from its next step on. Each shape keeps its graph: an epoch's smaller last batch
  // does not cost the full batch its graph.
  if (eager_batches_.insert(batch).second) return;
  // Thread-local mode: other threads may keep using the runtime (another backend) meanwhile.
  STRAND_CUDA_CHECK(cudaStreamBeginCapture(stream_.get(), cudaStreamCaptureModeThreadLocal));
  capturing_ = true;
}

void CudaBackend::end_step() {
  if (!capturing_) return;
  activate();
  capturing_ = false;
  cudaGraph_t raw = nullptr;
  STRAND_CUDA_CHECK(cudaStreamEndCapture(stream_.get(), &raw));
  const Unique<cudaGraph_t, cudaGraphDestroy> graph(raw);
  // Steps differ only in kernel arguments (batch indices, dropout keys, Adam's scalars), so the
  // instantiated graph is updated in place; a different topology instantiates anew.
  GraphExecPtr& exec = step_graphs_[graph_batch_];
  if (exec) {
    cudaGraphExecUpdateResultInfo info{};
    if (cudaGraphExecUpdate(exec.get(), graph.get(), &info) != cudaSuccess) {
      (void)cudaGetLastError();
      exec.reset();
    }
  }
  if (!exec) {
    cudaGraphExec_t raw_exec = nullptr;
    STRAND_CUDA_CHECK(cudaGraphInstantiate(&raw_exec, graph.get(), 0));
    exec.reset(raw_exec);
  }
  STRAND_CUDA_CHECK(cudaGraphLaunch(exec.get(), stream_.get()));
}

void CudaBackend::activate() const { STRAND_CUDA_CHECK(cudaSetDevice(device_)); }

void* CudaBackend::workspace(size_t bytes) {
  if (bytes > workspace_bytes_) {
    // Queued cuDNN calls may still use the old block.
    STRAND_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
    workspace_.reset();
    workspace_bytes_ = 0;
    workspace_ = device_malloc(bytes);
    workspace_bytes_ = bytes;
  }
  return workspace_.get();
}

Buffer CudaBackend::alloc(size_t bytes) {
  if (bytes == 0) return Buffer(this, nullptr, 0);
  activate();
  DevicePtr p = device_malloc(bytes);
  STRAND_CUDA_CHECK(cudaMemsetAsync(p.get(), 0, bytes, stream_.get()));
  STRAND_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  return Buffer(this, p.release(), bytes);
}

void CudaBackend::free(void* ptr) noexcept {
  if (!ptr) return;
  // Errors are ignored: free runs in destructors and must not throw; a failure here means the
  // context is already broken and the next checked call reports it. The stream is drained so
  // no queued kernel still uses the memory.
  (void)cudaSetDevice(device_);
  (void)cudaStreamSynchronize(stream_.get());
  (void)cudaFree(ptr);
}

// Host memory is pageable: the async copy is staged by the driver and the sync makes the call
// complete (and orders it after every kernel queued before it).
void CudaBackend::to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  activate();
  STRAND_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_.get()));
  STRAND_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
}

void CudaBackend::to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  activate();
  STRAND_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_.get()));
  STRAND_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
}

void CudaBackend::maxpool2x2_forward(const Pool2dDesc& d, const float* x, float* y) {
  activate();
  cuda::maxpool2x2_forward(d, x, y, stream_.get());
}
void CudaBackend::maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy,
                                      float* dx) {
  activate();
  cuda::maxpool2x2_backward(d, x, y, dy, dx, false, stream_.get());
}
void CudaBackend::relu_maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y,
                                           const float* dy, float* dx) {
  activate();
  cuda::maxpool2x2_backward(d, x, y, dy, dx, true, stream_.get());
}
void CudaBackend::pool_forward(PoolKind kind, const PoolDesc& d, const float* x, float* y) {
  activate();
  cuda::pool_forward(kind, d, x, y, stream_.get());
}
void CudaBackend::pool_backward(PoolKind kind, const PoolDesc& d, const float* x, const float* dy,
                                float* dx) {
  activate();
  cuda::pool_backward(kind, d, x, dy, dx, workspace(cuda::pool_scratch_bytes(kind, d)), stream_.get());
}
void CudaBackend::batchnorm_forward_train(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                          const float* running, float* y, float* saved,
                                          float* running_delta) {
  activate();
  cuda::batchnorm_forward_train(d, x, gamma_beta, running, y, saved, running_delta, stream_.get());
}
void CudaBackend::batchnorm_forward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                          const float* running, float* y) {
  activate();
  cuda::batchnorm_forward_infer(d, x, gamma_beta, running, y, stream_.get());
}
void CudaBackend::batchnorm_backward(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                     const float* saved, const float* dy, float* dx, float* dgamma_beta) {
  activate();
  cuda::batchnorm_backward(d, x, gamma_beta, saved, dy, dx, dgamma_beta, stream_.get());
}
void CudaBackend::batchnorm_backward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                           const float* running, const float* dy, float* dx,
                                           float* dgamma_beta) {
  activate();
  cuda::batchnorm_backward_infer(d, x, gamma_beta, running, dy, dx, dgamma_beta, stream_.get());
}
void CudaBackend::relu_forward(int64_t n, const float* x, float* y) {
  activate();
  cuda::relu_forward(n, x, y, stream_.get());
}
void CudaBackend::relu_backward(int64_t n, const float* y, const float* dy, float* dx) {
  activate();
  cuda::relu_backward(n, y, dy, dx, stream_.get());
}
void CudaBackend::dropout_forward(int64_t n, float rate, uint64_t key, uint64_t first, const float* x,
                                  float* y) {
  activate();
  cuda::dropout_forward(n, rate, key, first, x, y, stream_.get());
}
void CudaBackend::dropout_backward(int64_t n, float rate, uint64_t key, uint64_t first, const float* dy,
                                   float* dx) {
  activate();
  cuda::dropout_backward(n, rate, key, first, dy, dx, stream_.get());
}

void CudaBackend::synchronize() {
  activate();
  STRAND_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
}

const void* CudaBackend::device_view(const void* host, size_t bytes, Buffer& storage) {
  storage = alloc(bytes);
  to_device(storage.data(), host, bytes);
  return storage.data();
}

void CudaBackend::gather(const GatherDesc& d, const int64_t* indices, const void* images,
                         const int32_t* labels, float* x, int32_t* y) {
  activate();
  cuda::gather(d, indices, images, labels, x, y, stream_.get());
}

void CudaBackend::softmax_xent_accumulate(int64_t batch, int64_t classes, const float* logits,
                                          const int32_t* labels, float* dlogits) {
  activate();
  auto* s = static_cast<LossScalars*>(scalars_.get());
  auto* t = static_cast<LossScalars*>(totals_.get());
  cuda::softmax_xent(batch, classes, logits, labels, dlogits, &s->loss_sum, &s->correct, &s->bad_labels,
                     stream_.get());
  cuda::add_loss_totals(&s->loss_sum, &s->correct, &s->bad_labels, &t->loss_sum, &t->correct, &t->bad_labels,
                        stream_.get());
  totals_examples_ += batch;
}

LossTotals CudaBackend::take_loss_totals() {
  activate();
  LossScalars host{};
  STRAND_CUDA_CHECK(
      cudaMemcpyAsync(&host, totals_.get(), sizeof host, cudaMemcpyDeviceToHost, stream_.get()));
  STRAND_CUDA_CHECK(cudaMemsetAsync(totals_.get(), 0, sizeof host, stream_.get()));
  STRAND_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  const int64_t examples = std::exchange(totals_examples_, 0);
  STRAND_CHECK(host.bad_labels == 0, Usage,
               std::to_string(host.bad_labels) + " of " + std::to_string(examples) +
                   " training labels are outside the model's classes",
               "cuda::softmax_xent");
  return {host.loss_sum, host.correct, examples};
}

LossResult CudaBackend::softmax_xent(int64_t batch, int64_t classes, const float* logits,
                                     const int32_t* labels, float* dlogits) {
  activate();
  auto* s = static_cast<LossScalars*>(scalars_.get());
  cuda::softmax_xent(batch, classes, logits, labels, dlogits, &s->loss_sum, &s->correct, &s->bad_labels,
                     stream_.get());
  LossScalars host{};
  STRAND_CUDA_CHECK(cudaMemcpyAsync(&host, s, sizeof host, cudaMemcpyDeviceToHost, stream_.get()));
  STRAND_CUDA_CHECK(cudaStreamSynchronize(stream_.get()));
  // The CPU names the first bad label; the GPU only counts them (dlogits is then unspecified).
  STRAND_CHECK(host.bad_labels == 0, Usage,
               std::to_string(host.bad_labels) + " of " + std::to_string(batch) + " labels are outside [0, " +
                   std::to_string(classes) + ")",
               "cuda::softmax_xent");
  return {host.loss_sum / static_cast<double>(batch), host.correct};
}

void CudaBackend::softmax(int64_t batch, int64_t classes, const float* logits, float* probs) {
  activate();
  cuda::softmax(batch, classes, logits, probs, stream_.get());
}
void CudaBackend::sgd_step(int64_t n, float lr, float* params, const float* grads) {
  activate();
  cuda::sgd_step(n, lr, params, grads, stream_.get());
}
void CudaBackend::momentum_step(int64_t n, float lr, float momentum, float* params, const float* grads,
                                float* velocity) {
  activate();
  cuda::momentum_step(n, lr, momentum, params, grads, velocity, stream_.get());
}
void CudaBackend::adam_step(int64_t n, float lr, float beta1, float beta2, float eps, int64_t step,
                            float* params, const float* grads, float* m, float* v) {
  activate();
  cuda::adam_step(n, lr, beta1, beta2, eps, step, params, grads, m, v, stream_.get());
}

}  // namespace cuda

bool cuda_built() { return true; }

int cuda_device_count() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
    (void)cudaGetLastError();  // not a failure of strand: clear it so later checks do not see it
    return 0;
  }
  STRAND_CUDA_CHECK(err);
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(int device, CudaOptions options) {
  const std::string where = "device cuda:" + std::to_string(device);
  const int count = cuda_device_count();
  STRAND_CHECK(count > 0, Usage, "no CUDA GPU is visible (no NVIDIA driver or no device)", where);
  STRAND_CHECK(device >= 0 && device < count, Usage,
               "GPU index " + std::to_string(device) + " is out of range: this machine shows " +
                   std::to_string(count) + " GPU(s), numbered from 0",
               where);
  return std::make_unique<cuda::CudaBackend>(device, options);
}

}  // namespace strand
