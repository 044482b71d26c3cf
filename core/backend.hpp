// Backend: device memory and every kernel a layer, loss or optimizer needs.
// Layers hold no device code: they describe the op and call their backend.
// CpuBackend (core/cpu/) is the reference and is always built; CudaBackend (core/cuda/)
// mirrors it name for name. All kernels are deterministic: same inputs and same thread
// count give the same bits.
//
// Layouts: images NCHW; conv weights [out_c, in_c, kh, kw]; dense weights [out, in]
// (y = x W^T + b); all tensors float32 unless named otherwise; labels int32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace strand {

class Backend;

// Where kernels run: the CPU, or CUDA GPU `index` (0-based) of this machine.
enum class DeviceKind { Cpu, Cuda };
struct Device {
  static constexpr int kLocalGpu = -1;
  DeviceKind kind = DeviceKind::Cpu;
  // cuda only; kLocalGpu ("cuda" without a number): GPU 0 for one process, the GPU of the
  // rank's index on its host in a data-parallel job (Device::resolved).
  int index = kLocalGpu;
  bool is_cpu() const { return kind == DeviceKind::Cpu; }
  // kLocalGpu replaced by `local_rank`.
  Device resolved(int local_rank) const { return {kind, index == kLocalGpu ? local_rank : index}; }
  std::string str() const;  // "cpu", "cuda", "cuda:N"
  bool operator==(const Device&) const = default;
};
// "cpu", "cuda" (GPU 0) or "cuda:N"; Usage error naming the text otherwise. The one parser of
// device strings: the CLI, files and the environment all come through it.
Device parse_device(std::string_view text);

// Owning handle to device memory (RAII). Move-only.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend* backend, void* ptr, size_t bytes) : backend_(backend), ptr_(ptr), bytes_(bytes) {}
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    Buffer t(std::move(o));
    swap(t);
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  float* f32() const { return static_cast<float*>(ptr_); }
  int32_t* i32() const { return static_cast<int32_t*>(ptr_); }
  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void swap(Buffer& o) noexcept {
    std::swap(backend_, o.backend_);
    std::swap(ptr_, o.ptr_);
    std::swap(bytes_, o.bytes_);
  }
  Backend* backend_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// 2-D convolution (cross-correlation) with symmetric zero padding and a stride; odd trailing
// rows/columns a stride does not reach are not read (floor).
struct Conv2dDesc {
  int64_t batch = 0, in_c = 0, in_h = 0, in_w = 0;
  int64_t out_c = 0, kernel_h = 0, kernel_w = 0, pad_h = 0, pad_w = 0;
  int64_t stride_h = 1, stride_w = 1;
  int64_t out_h() const { return (in_h + 2 * pad_h - kernel_h) / stride_h + 1; }
  int64_t out_w() const { return (in_w + 2 * pad_w - kernel_w) / stride_w + 1; }
  bool unit_stride() const { return stride_h == 1 && stride_w == 1; }
  double flops() const { return 2.0 * batch * out_c * out_h() * out_w() * in_c * kernel_h * kernel_w; }
};

// 2x2 max pooling, stride 2; odd trailing rows/columns are dropped (floor). The fast path of
// PoolDesc's max pooling, with the fused ReLU backward.
struct Pool2dDesc {
  int64_t batch = 0, channels = 0, in_h = 0, in_w = 0;
  int64_t out_h() const { return in_h / 2; }
  int64_t out_w() const { return in_w / 2; }
};

// Pooling over kernel_h x kernel_w windows stepped by stride_h x stride_w, no padding; windows
// that would cross the far edge are dropped (floor). Windows may overlap (stride < kernel).
enum class PoolKind { Max, Avg };
struct PoolDesc {
  int64_t batch = 0, channels = 0, in_h = 0, in_w = 0;
  int64_t kernel_h = 2, kernel_w = 2, stride_h = 2, stride_w = 2;
  int64_t out_h() const { return (in_h - kernel_h) / stride_h + 1; }
  int64_t out_w() const { return (in_w - kernel_w) / stride_w + 1; }
};

// Batch normalization of x [batch, channels, spatial] per channel (spatial = H*W after a
// convolution, 1 after a dense layer). Parameters: gamma_beta [2C] = {gamma, beta}; running
// statistics: running [2C] = {mean, variance}. Training normalizes with the batch's mean and
// biased variance over batch*spatial values and keeps them for backward in saved [2C] = {mean,
// 1/sqrt(var+eps)}. The running statistics move as Keras's do: new = momentum * running +
// (1 - momentum) * batch (the variance unbiased); the kernel writes running - new into
// running_delta [2C] rather than updating in place, so a strategy averages it over ranks like
// a gradient and the optimizer subtracts it (Optimizer's state rule).
struct BatchNormDesc {
  int64_t batch = 0, channels = 0, spatial = 1;
  float eps = 1e-3f, momentum = 0.99f;
};
// One channel's running_delta {mean, variance} for a batch of `values` values with this mean
// and biased variance: the one formula every backend's kernel uses (a constexpr function, so
// CUDA device code calls it too).
struct RunningDelta {
  float mean, var;
};
inline constexpr RunningDelta batchnorm_running_delta(const BatchNormDesc& d, int64_t values, double mean,
                                                      double var, float running_mean, float running_var) {
  const double unbiased = values > 1 ? var * double(values) / double(values - 1) : var;
  const double keep = 1.0 - double(d.momentum);
  return {float(keep * (double(running_mean) - mean)), float(keep * (double(running_var) - unbiased))};
}
struct DenseDesc {
  int64_t batch = 0, in = 0, out = 0;
  double flops() const { return 2.0 * batch * in * out; }
};

// How a data set stores its pixels: float32 as they are, or uint8 where v stands for
// u8_pixel(v) = v / 255 (converted as a batch is gathered, so the set stays a quarter the size).
enum class PixelType : uint8_t { F32, U8 };
inline constexpr float u8_pixel(uint8_t v) { return static_cast<float>(v) / 255.0f; }

// Training-time augmentation, drawn per sample (augment_draw): the image is mirrored left-right
// (flip, probability 1/2), then translated by (dy, dx), each uniform in [-shift, shift], with
// zeros where no source pixel lands. Integer moves only, so every backend gives the same bits.
struct Augmentation {
  static constexpr int64_t kMaxShift = int64_t{1} << 30;  // shifts below it are drawn exactly
  int64_t shift = 0;
  bool flip = false;
  constexpr bool any() const { return shift > 0 || flip; }
  bool operator==(const Augmentation&) const = default;
};
// "shift:P", "flip", both joined by a comma ("shift:2,flip"; a repeated item must agree), or
// "none"; Usage error naming the text otherwise. The one parser of augmentation strings.
Augmentation parse_augmentation(std::string_view text);
std::string to_string(const Augmentation& a);  // parse_augmentation's form
struct AugmentDraw {
  int64_t dy = 0, dx = 0;
  bool flip = false;
};

// Batch assembly: b samples of [channels, height, width] (a flat sample is 1 x 1 x F) picked by
// index, converted to float32 and, when d.augment asks, augmented with draws keyed by (seed,
// epoch, the sample's index in the data set): the same image gets the same move whichever rank
// or step gathers it.
struct GatherDesc {
  int64_t batch = 0, channels = 1, height = 1, width = 1;
  PixelType pixels = PixelType::F32;
  Augmentation augment{};
  uint64_t seed = 0;
  int64_t epoch = 0;
  constexpr int64_t sample() const { return channels * height * width; }
};

struct LossResult {
  double loss = 0;      // mean cross-entropy over the batch
  int64_t correct = 0;  // rows whose arg-max equals the label
};

// Running totals of softmax_xent_accumulate() since they were last taken.
struct LossTotals {
  double loss_sum = 0;  // summed (not mean) cross-entropy
  int64_t correct = 0;
  int64_t examples = 0;
};

// A pinned host mirror of a device range of `floats` floats, with a copy queue of its own, for
// strategies that move device data through the host (a parameter server's pushes and pulls).
// Copies run in the order they were queued, alongside the backend's kernels. Offsets are in
// floats, the same for the device buffer and the mirror. Made by Backend::make_stage.
class Stage {
 public:
  using Fence = int64_t;  // downloads are numbered from 1 in the order they were queued
  virtual ~Stage() = default;
  virtual float* host() = 0;  // `floats` floats, valid while the stage lives
  // host()[begin, end) = device[begin, end), once every kernel queued on the backend so far has
  // run. host() must not be read there before done() or wait() says the download landed.
  virtual Fence download(const float* device, int64_t begin, int64_t end) = 0;
  // Whether download `f` (and every earlier one) has landed; never waits.
  virtual bool done(Fence f) = 0;
  virtual void wait(Fence f) = 0;
  // device[begin, end) = host()[begin, end), behind the copies queued before it: host() there
  // may be reused once join() has returned.
  virtual void upload(float* device, int64_t begin, int64_t end) = 0;
  // Kernels queued on the backend from now on run after every upload queued so far.
  virtual void join() = 0;
};

// A second in-order queue of device work beside the backend's kernels (a CUDA stream), for
// collectives that reduce gradient buckets while backward computes earlier layers (NCCL). It is
// ordered against the kernels by events, which a recorded step (CUDA graph) keeps: follow() and
// join() may be called inside a step, and what is queued on the lane is recorded with it.
// Made by Backend::make_lane.
class Lane {
 public:
  using Mark = int64_t;  // numbered from 1 in the order mark() was called
  virtual ~Lane() = default;
  // Work queued on the lane from now on runs after every kernel queued on the backend so far.
  virtual void follow() = 0;
  // Kernels queued on the backend from now on run after everything queued on the lane so far.
  virtual void join() = 0;
  // The native queue (a cudaStream_t) that a communication library queues its work on.
  virtual void* native() = 0;
  // Outside a step: a mark behind every kernel queued on the backend so far (after a join(), the
  // lane's work before it too), and whether the device has passed it, never waiting.
  virtual Mark mark() = 0;
  virtual bool passed(Mark m) = 0;
  // Once the mark after the last join() has passed: seconds the kernels waited at that join
  // for the lane (the communication backward did not hide); negative where it was not timed.
  virtual double join_wait_seconds() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu", "cuda": for log lines
  virtual DeviceKind kind() const = 0;

  // ---- memory
  virtual Buffer alloc(size_t bytes) = 0;     // zero-filled
  virtual void free(void* ptr) noexcept = 0;  // called by ~Buffer
  virtual void to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void to_host(void* dst, const void* src, size_t bytes) = 0;
  // Waits until every kernel queued so far has finished (timers read after it are honest).
  virtual void synchronize() {}
  // Work is about to come (a server has a request in hand and is parsing it): a backend whose
  // threads sleep between kernels may wake them now, so the next pass does not wait for that.
  virtual void expect_work() {}
  // Runs body(part) for part in [0, parts) on the host threads this backend keeps for its
  // kernels (CPU: its pool, if not busy), else one part after another on the caller: host work
  // such as parsing a request can borrow them between passes.
  virtual void run_host_parts(int parts, const std::function<void(int part)>& body) {
    for (int p = 0; p < parts; ++p) body(p);
  }
  // A training step of `batch` images runs between begin_step() and end_step(). A backend may
  // record the step and replay it as one unit (CUDA graphs); the CPU runs kernels as they come.
  // Between the two calls nothing may wait for the device or allocate.
  virtual void begin_step(int64_t /*batch*/) {}
  virtual void end_step() {}
  // Makes `bytes` of host memory readable by this backend's kernels: the host pointer itself
  // where kernels read host memory (CPU), else a copy placed in `storage`.
  virtual const void* device_view(const void* host, size_t bytes, Buffer& storage) = 0;
  // A Stage over `floats` floats where kernels work on device memory; nullptr where they work
  // on host memory (the CPU), so a strategy sends from the flat buffers in place. Its copies
  // cannot be recorded into a step (CUDA graphs): a strategy that stages runs without them.
  virtual std::unique_ptr<Stage> make_stage(int64_t /*floats*/) { return nullptr; }
  // A Lane beside this backend's kernels where they run on a device queue; nullptr on the CPU,
  // whose kernels have run when their call returns.
  virtual std::unique_ptr<Lane> make_lane() { return nullptr; }

  // ---- batch assembly on the device (GatherDesc). images [N,C,H,W] of d.pixels, labels [N],
  // indices [b] (int64, each in [0,N)) -> x [b,C,H,W] float32, y [b].
  virtual void gather(const GatherDesc& d, const int64_t* indices, const void* images, const int32_t* labels,
                      float* x, int32_t* y) = 0;

  // ---- conv2d. x [B,in_c,H,W], w [out_c,in_c,kh,kw], b [out_c] or null (no bias),
  // y [B,out_c,oh,ow].
  virtual void conv2d_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b,
                              float* y) = 0;
  // Writes (overwrites) dw and db (null when there is no bias); dx may be null (first layer
  // needs no input gradient).
  virtual void conv2d_backward(const Conv2dDesc& d, const float* x, const float* w, const float* dy,
                               float* dx, float* dw, float* db) = 0;

  // ---- max pool 2x2 stride 2. x [B,C,H,W], y [B,C,H/2,W/2]. Backward routes dy to the first
  // position (row-major within the window) holding the maximum; other positions get 0.
  virtual void maxpool2x2_forward(const Pool2dDesc& d, const float* x, float* y) = 0;
  virtual void maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy,
                                   float* dx) = 0;

  // ---- pooling (PoolDesc). Max backward routes each window's dy to the window's first
  // maximum (row-major); average backward spreads dy / (kernel_h*kernel_w) over the window.
  // Overlapping windows add up; positions no window covers get 0. Backward reads x, never the
  // forward's output (an in-place ReLU after the pool may have overwritten it).
  virtual void pool_forward(PoolKind kind, const PoolDesc& d, const float* x, float* y) = 0;
  virtual void pool_backward(PoolKind kind, const PoolDesc& d, const float* x, const float* dy,
                             float* dx) = 0;

  // ---- batch normalization (BatchNormDesc). y may not alias x.
  virtual void batchnorm_forward_train(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                       const float* running, float* y, float* saved,
                                       float* running_delta) = 0;
  virtual void batchnorm_forward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                       const float* running, float* y) = 0;
  // From a training forward's `saved`: writes dgamma_beta [2C] and dx (may be null).
  virtual void batchnorm_backward(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                  const float* saved, const float* dy, float* dx, float* dgamma_beta) = 0;
  // After an inference forward: the per-channel affine map the running statistics make, so
  // dx = dy * gamma / sqrt(var + eps). Writes dgamma_beta [2C] and dx (may be null).
  virtual void batchnorm_backward_infer(const BatchNormDesc& d, const float* x, const float* gamma_beta,
                                        const float* running, const float* dy, float* dx,
                                        float* dgamma_beta) = 0;

  // ---- dense. x [B,in], w [out,in], b [out], y [B,out] = x w^T + b.
  virtual void dense_forward(const DenseDesc& d, const float* x, const float* w, const float* b,
                             float* y) = 0;
  // Writes dw [out,in] and db [out]; dx [B,in] may be null.
  virtual void dense_backward(const DenseDesc& d, const float* x, const float* w, const float* dy, float* dx,
                              float* dw, float* db) = 0;

  // ---- elementwise. y may alias x; dx may alias dy.
  virtual void relu_forward(int64_t n, const float* x, float* y) = 0;
  virtual void relu_backward(int64_t n, const float* y, const float* dy, float* dx) = 0;

  // ---- fused forms, used by the model where a ReLU runs in place right after a convolution
  // and right before a max pool, each in one pass over memory instead of two. Same results as
  // the two calls they replace.
  // y = relu(conv2d(x, w) + b).
  virtual void conv2d_relu_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b,
                                   float* y) = 0;
  // maxpool2x2_backward, then the ReLU's backward through x, the ReLU's output: dx is also zero
  // where x <= 0.
  virtual void relu_maxpool2x2_backward(const Pool2dDesc& d, const float* x, const float* y, const float* dy,
                                        float* dx) = 0;
  // Inverted dropout: element i is kept iff dropout_keep(key, first + i, rate) (below), and
  // kept elements are scaled by 1/(1-rate). The mask is a pure function of (key, first + i),
  // so forward and backward agree without storing it, on every backend. `first` is the index
  // of x[0] in the whole (global) batch: a rank holding samples [k, k+b) of a data-parallel
  // batch draws the masks one process would draw for them.
  virtual void dropout_forward(int64_t n, float rate, uint64_t key, uint64_t first, const float* x,
                               float* y) = 0;
  virtual void dropout_backward(int64_t n, float rate, uint64_t key, uint64_t first, const float* dy,
                                float* dx) = 0;

  // ---- softmax cross-entropy, mean over the batch. logits [B,C], labels int32 [B].
  // Writes dlogits [B,C] = (softmax - onehot) / B. A label outside [0,C) is a Usage error.
  virtual LossResult softmax_xent(int64_t batch, int64_t classes, const float* logits, const int32_t* labels,
                                  float* dlogits) = 0;
  // The training form: the same dlogits, but the batch's summed loss and correct count are
  // added to totals kept by the backend instead of being returned, so a step need not wait for
  // the device. take_loss_totals() returns them (waiting) and starts new ones; a label outside
  // [0,C) is reported by one of the two calls.
  virtual void softmax_xent_accumulate(int64_t batch, int64_t classes, const float* logits,
                                       const int32_t* labels, float* dlogits) = 0;
  virtual LossTotals take_loss_totals() = 0;
  // probs [B,C] = softmax(logits) (inference). probs may alias logits.
  virtual void softmax(int64_t batch, int64_t classes, const float* logits, float* probs) = 0;

  // ---- optimizers over flat buffers of n floats.
  virtual void sgd_step(int64_t n, float lr, float* params, const float* grads) = 0;
  virtual void momentum_step(int64_t n, float lr, float momentum, float* params, const float* grads,
                             float* velocity) = 0;
  // Adam with bias correction; `step` counts from 1.
  virtual void adam_step(int64_t n, float lr, float beta1, float beta2, float eps, int64_t step,
                         float* params, const float* grads, float* m, float* v) = 0;
};

// The dropout mask, shared by every backend (host and device code must compute the same
// bits): a 64-bit mix of (key, i) mapped to [0,1) with 24 bits, compared with rate.
inline constexpr uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
inline constexpr bool dropout_keep(uint64_t key, uint64_t i, float rate) {
  return static_cast<float>(mix64(key ^ mix64(i)) >> 40) * (1.0f / 16777216.0f) >= rate;
}

// The augmentation of sample `index` of the data set under `key` = augment_key(seed, epoch):
// dx from the low 32 bits of one 64-bit mix, dy from the next 31, the flip from the top bit
// (each a multiply-shift into [0, 2*shift+1), which cannot overflow below Augmentation::kMaxShift).
inline constexpr uint64_t augment_key(uint64_t seed, int64_t epoch) {
  return mix64(seed ^ mix64(static_cast<uint64_t>(epoch) ^ 0xa5a5a5a5a5a5a5a5ULL));
}
inline constexpr AugmentDraw augment_draw(uint64_t key, uint64_t index, const Augmentation& a) {
  const uint64_t r = mix64(key ^ mix64(index));
  const uint64_t span = static_cast<uint64_t>(2 * a.shift + 1);
  return {static_cast<int64_t>((((r >> 32) & 0x7fffffffULL) * span) >> 31) - a.shift,
          static_cast<int64_t>(((r & 0xffffffffULL) * span) >> 32) - a.shift, a.flip && (r >> 63) != 0};
}

// The CPU backend with `threads` worker threads (>= 1).
std::unique_ptr<Backend> make_cpu_backend(int threads);

struct CudaOptions {
  // Let convolutions and matrix products use TF32 tensor cores (PyTorch's default for cuDNN
  // convolutions): much faster at large batches, with about 1e-3 relative error instead of FP32's.
  bool tf32 = false;
  // Record each training step (after the first at a batch size) as a CUDA graph and replay it
  // with one launch; the weights are the same bits as without.
  bool graphs = true;
  // Time cuDNN's convolution algorithms once per shape and keep the fastest, deterministic or
  // not (what torch.backends.cudnn.benchmark does); off, cuDNN's heuristics pick the same
  // deterministic algorithms every run, so gradients are the same bits run to run.
  bool cudnn_benchmark = false;
};

// The CUDA backend on GPU `device` (0-based). Usage error when strand was built without CUDA
// (-Dcuda=disabled, or no nvcc at build time) or the device does not exist.
std::unique_ptr<Backend> make_cuda_backend(int device, CudaOptions options = {});
// Whether this build has the CUDA backend, and how many GPUs the machine shows (0 without).
bool cuda_built();
int cuda_device_count();

// The backend of `device`. `threads` is for the CPU backend, `cuda` for CUDA (asking the CPU
// for TF32 is a Usage error: it has no such mode).
std::unique_ptr<Backend> make_backend(Device device, int threads, CudaOptions cuda = {});

}  // namespace strand
