// Conv2d on cuDNN (NCHW, FP32, any stride and padding): forward, backward data and backward
// filter; the bias terms are hand-written kernels: bias (+ the fused ReLU) in one pass after the
// forward, and a deterministic two-pass reduction for the bias gradient. Without a bias (a
// convolution before batchnorm) neither runs: a fused ReLU is then the plain ReLU kernel.
//
// Algorithms are chosen once per shape (ConvPlan, cached in the backend), by default with the
// _v7 heuristics: a timed search (cudnnFind*, CudaOptions::cudnn_benchmark) may pick a
// different algorithm from run to run, and with it different rounding. With the heuristics,
// backward data/filter take the best-ranked algorithm that cuDNN reports as deterministic, so
// gradients are the same bits every run on the same GPU; the timed search takes the fastest,
// deterministic or not, as PyTorch's cudnn.benchmark does.
// Math is CUDNN_FMA_MATH unless the backend was made with TF32: cuDNN's default would allow
// TF32 tensor cores for FP32 data on Ampere and newer, which is off from the CPU by far more
// than 1e-4, so it is a choice the user makes (--tf32), not a default.
#include <algorithm>
#include <cstdint>
#include <string>

#include <strand/core/cuda/check.hpp>
#include <strand/core/cuda/cuda_backend.hpp>
#include <strand/core/cuda/kernels.hpp>
#include <strand/core/error.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cuda {
namespace {

// Algorithms needing more scratch than this are skipped (FFT variants can ask for gigabytes).
constexpr size_t kMaxWorkspace = size_t{512} << 20;

// The shared checks, plus cuDNN's limit: its 4-D descriptors take int dimensions.
void check_desc(const Conv2dDesc& d, const char* where) {
  check_conv2d(d, where);
  constexpr int64_t kMax = int64_t{1} << 30;
  STRAND_CHECK(d.batch < kMax && d.in_c < kMax && d.in_h < kMax && d.in_w < kMax && d.out_c < kMax &&
                   d.kernel_h < kMax && d.kernel_w < kMax && d.pad_h < kMax && d.pad_w < kMax &&
                   d.stride_h < kMax && d.stride_w < kMax,
               Shape,
               "conv2d sizes must be below 2^30 for cuDNN, got batch=" + std::to_string(d.batch) +
                   " in_c=" + std::to_string(d.in_c) + " out_c=" + std::to_string(d.out_c),
               where);
}

TensorDescPtr tensor_desc(int64_t n, int64_t c, int64_t h, int64_t w) {
  cudnnTensorDescriptor_t t = nullptr;
  STRAND_CUDNN_CHECK(cudnnCreateTensorDescriptor(&t));
  TensorDescPtr p(t);
  STRAND_CUDNN_CHECK(
      cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, int(n), int(c), int(h), int(w)));
  return p;
}

// FFT and Winograd algorithms trade accuracy for speed: on a 100x100 image their filter
// gradient was off from the CPU by 4e-4 relative, where the GEMM-based ones stay within 1e-4.
bool lossy(cudnnConvolutionFwdAlgo_t a) {
  return a == CUDNN_CONVOLUTION_FWD_ALGO_FFT || a == CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD || a == CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}
bool lossy(cudnnConvolutionBwdDataAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD ||
         a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}
bool lossy(cudnnConvolutionBwdFilterAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING ||
         a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

// Picks the first (best-ranked or fastest) result that ran, uses FP32 FMA math (no tensor ops)
// unless `tensor_ops` allows TF32, fits kMaxWorkspace and, when `need_deterministic`, is
// deterministic, and when `exact`, is not FFT or Winograd. nullptr if none.
template <class Perf>
const Perf* pick(const Perf* perfs, int count, bool need_deterministic, bool tensor_ops, bool exact) {
  for (int i = 0; i < count; ++i) {
    const Perf& p = perfs[i];
    if (p.status != CUDNN_STATUS_SUCCESS || p.memory > kMaxWorkspace) continue;
    if (exact && lossy(p.algo)) continue;
    if (!tensor_ops &&
        (p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
      continue;
    if (need_deterministic && p.determinism != CUDNN_DETERMINISTIC) continue;
    return &p;
  }
  return nullptr;
}

// y [B,C,P] += b [C] broadcast over images and pixels, then ReLU if asked: one pass where
// cudnnAddTensor plus a ReLU kernel made two. Index is uint32_t when the tensor fits (64-bit
// division is slow on the GPU). Vec4: P % 4 == 0 and y 16-byte aligned, so a float4 never
// straddles two planes.
template <class Index, bool Relu, bool Vec4>
__global__ void bias_act_kernel(Index n, Index channels, Index pixels, const float* __restrict__ b,
                                float* __restrict__ y) {
  constexpr Index kWidth = Vec4 ? 4 : 1;
  const Index items = n / kWidth;
  for (Index i = blockIdx.x * Index{blockDim.x} + threadIdx.x; i < items;
       i += Index{gridDim.x} * blockDim.x) {
    const float bias = b[(i * kWidth / pixels) % channels];
    if constexpr (Vec4) {
      float4 v = reinterpret_cast<float4*>(y)[i];
      v.x += bias, v.y += bias, v.z += bias, v.w += bias;
      if constexpr (Relu) {
        v.x = v.x > 0.0f ? v.x : 0.0f, v.y = v.y > 0.0f ? v.y : 0.0f;
        v.z = v.z > 0.0f ? v.z : 0.0f, v.w = v.w > 0.0f ? v.w : 0.0f;
      }
      reinterpret_cast<float4*>(y)[i] = v;
    } else {
      const float v = y[i] + bias;
      y[i] = Relu ? (v > 0.0f ? v : 0.0f) : v;
    }
  }
}

template <bool Relu>
void bias_act(int64_t batch, int64_t channels, int64_t pixels, const float* b, float* y,
              cudaStream_t stream) {
  const int64_t n = batch * channels * pixels;
  const bool vec4 = pixels % 4 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0;
  // The grid-stride overshoot (at most 2^24) must fit too.
  if (n < (int64_t{1} << 31)) {
    const auto un = uint32_t(n), uc = uint32_t(channels), up = uint32_t(pixels);
    if (vec4) {
      bias_act_kernel<uint32_t, Relu, true><<<grid_for(n / 4), kBlock, 0, stream>>>(un, uc, up, b, y);
    } else {
      bias_act_kernel<uint32_t, Relu, false><<<grid_for(n), kBlock, 0, stream>>>(un, uc, up, b, y);
    }
  } else {
    bias_act_kernel<int64_t, Relu, false><<<grid_for(n), kBlock, 0, stream>>>(n, channels, pixels, b, y);
  }
  STRAND_CUDA_CHECK(cudaGetLastError());
}

// db [out_c] = sum of dy [B,out_c,P] over images and pixels, in two deterministic passes (the
// same bits every run; cudnnConvolutionBackwardBias makes no such promise). Pass 1: block
// (chunk, o) sums channel o over the fixed image range of its chunk into part [out_c, chunks];
// pass 2 adds each channel's chunks in order. One block per channel alone (a few dozen blocks
// each reading hundreds of MB at batch 4096) left most of the GPU idle.
constexpr int kBiasBlock = 256;
constexpr int64_t kBiasChunkFloats = int64_t{1} << 15;  // about 32k floats of dy per block

int64_t bias_images_per_chunk(int64_t pixels) { return std::max<int64_t>(1, kBiasChunkFloats / pixels); }

__global__ void conv_bias_grad_partial(int64_t batch, int64_t channels, int64_t pixels,
                                       int64_t images_per_chunk, const float* __restrict__ dy,
                                       float* __restrict__ part) {
  __shared__ float sums[kBiasBlock];
  const int64_t chunk = blockIdx.x, o = blockIdx.y;
  const int64_t n0 = chunk * images_per_chunk;
  const int64_t n1 = std::min(batch, n0 + images_per_chunk);
  // 32-bit offsets inside the chunk: images_per_chunk * pixels is about kBiasChunkFloats.
  const auto count = static_cast<uint32_t>((n1 - n0) * pixels);
  const auto plane = static_cast<uint32_t>(pixels);
  const float* base = dy + (n0 * channels + o) * pixels;
  const int64_t image_stride = channels * pixels;
  float s = 0.0f;
  for (uint32_t i = threadIdx.x; i < count; i += kBiasBlock) {
    const uint32_t n = i / plane, p = i - n * plane;
    s += base[n * image_stride + p];
  }
  sums[threadIdx.x] = s;
  __syncthreads();
  for (int stride = kBiasBlock / 2; stride > 0; stride /= 2) {
    if (int(threadIdx.x) < stride) sums[threadIdx.x] += sums[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[o * gridDim.x + chunk] = sums[0];
}

__global__ void conv_bias_grad_finish(int64_t channels, int64_t chunks, const float* __restrict__ part,
                                      float* __restrict__ db) {
  const int64_t o = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (o >= channels) return;
  float s = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) s += part[o * chunks + c];
  db[o] = s;
}

}  // namespace

const ConvPlan& CudaBackend::conv_plan(const Conv2dDesc& d) {
  static_assert(sizeof(ConvKey) == sizeof(Conv2dDesc), "a ConvKey holds every Conv2dDesc field");
  const ConvKey key{d.batch,    d.in_c,  d.in_h,  d.in_w,     d.out_c,   d.kernel_h,
                    d.kernel_w, d.pad_h, d.pad_w, d.stride_h, d.stride_w};
  if (auto it = conv_plans_.find(key); it != conv_plans_.end()) return it->second;

  ConvPlan plan;
  plan.x = tensor_desc(d.batch, d.in_c, d.in_h, d.in_w);
  plan.y = tensor_desc(d.batch, d.out_c, d.out_h(), d.out_w());

  cudnnFilterDescriptor_t w = nullptr;
  STRAND_CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
  plan.w.reset(w);
  STRAND_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, int(d.out_c),
                                                int(d.in_c), int(d.kernel_h), int(d.kernel_w)));

  cudnnConvolutionDescriptor_t conv = nullptr;
  STRAND_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
  plan.conv.reset(conv);
  // The CPU conv is a cross-correlation (no kernel flip), no dilation; cuDNN's output size is
  // floor((in + 2 pad - k) / stride) + 1 like strand's (checked below).
  STRAND_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, int(d.pad_h), int(d.pad_w), int(d.stride_h),
                                                     int(d.stride_w), 1, 1, CUDNN_CROSS_CORRELATION,
                                                     CUDNN_DATA_FLOAT));
  // TENSOR_OP math lets cuDNN use TF32 for FP32 data (what PyTorch does with allow_tf32).
  STRAND_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, tf32_ ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));

  int n = 0, c = 0, h = 0, wd = 0;
  STRAND_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv, plan.x.get(), w, &n, &c, &h, &wd));
  STRAND_CHECK(n == d.batch && c == d.out_c && h == d.out_h() && wd == d.out_w(), Internal,
               "cuDNN output shape " + std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) +
                   "x" + std::to_string(wd) + " differs from strand's",
               "cuda::conv2d");

  choose_conv_algorithms(plan);
  cudnnHandle_t dnn = cudnn_.get();
  // Sizes asked for with the descriptor's math type, which is what the calls will run with.
  STRAND_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(dnn, plan.x.get(), w, conv, plan.y.get(),
                                                             plan.fwd, &plan.fwd_bytes));
  STRAND_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(dnn, w, plan.y.get(), conv, plan.x.get(),
                                                                  plan.bwd_data, &plan.bwd_data_bytes));
  STRAND_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(dnn, plan.x.get(), plan.y.get(), conv, w,
                                                                    plan.bwd_filter, &plan.bwd_filter_bytes));

  return conv_plans_.emplace(key, std::move(plan)).first->second;
}

void CudaBackend::choose_conv_algorithms(ConvPlan& plan) {
  cudnnHandle_t dnn = cudnn_.get();
  cudnnFilterDescriptor_t w = plan.w.get();
  cudnnConvolutionDescriptor_t conv = plan.conv.get();
  constexpr int kAlgos = 16;  // more than cuDNN has of each kind
  int found = 0;
  // The FP32 default matches the CPU within 1e-4; TF32 (about 1e-3) and the timed search
  // (PyTorch's choice) may use the FFT and Winograd algorithms too.
  const bool exact = !tf32_ && !cudnn_benchmark_;
  // The timed search runs each algorithm on scratch tensors that cuDNN allocates (it syncs),
  // so it happens here, once per shape, in the first (eager, never captured) step. Results come
  // sorted fastest first, so pick() takes the fastest that qualifies; run to run reproducibility
  // is given up with the search anyway, so it may be a non-deterministic one.
  {
    cudnnConvolutionFwdAlgoPerf_t perfs[kAlgos];
    if (cudnn_benchmark_) {
      STRAND_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(dnn, plan.x.get(), w, conv, plan.y.get(),
                                                              kAlgos, &found, perfs));
    } else {
      STRAND_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(dnn, plan.x.get(), w, conv, plan.y.get(),
                                                                kAlgos, &found, perfs));
    }
    const auto* p = pick(perfs, found, false, tf32_, exact);
    // Implicit GEMM needs no workspace and supports every shape here.
    plan.fwd = p ? p->algo : CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  }
  {
    cudnnConvolutionBwdDataAlgoPerf_t perfs[kAlgos];
    if (cudnn_benchmark_) {
      STRAND_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(dnn, w, plan.y.get(), conv, plan.x.get(),
                                                                   kAlgos, &found, perfs));
    } else {
      STRAND_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(dnn, w, plan.y.get(), conv, plan.x.get(),
                                                                     kAlgos, &found, perfs));
    }
    const auto* p = pick(perfs, found, !cudnn_benchmark_, tf32_, exact);
    plan.bwd_data = p ? p->algo : CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;  // deterministic
  }
  {
    cudnnConvolutionBwdFilterAlgoPerf_t perfs[kAlgos];
    if (cudnn_benchmark_) {
      STRAND_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(dnn, plan.x.get(), plan.y.get(), conv, w,
                                                                     kAlgos, &found, perfs));
    } else {
      STRAND_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(dnn, plan.x.get(), plan.y.get(), conv,
                                                                       w, kAlgos, &found, perfs));
    }
    const auto* p = pick(perfs, found, !cudnn_benchmark_, tf32_, exact);
    plan.bwd_filter = p ? p->algo : CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;  // deterministic
  }
}

std::string CudaBackend::conv_algorithms(const Conv2dDesc& d, bool bias) {
  check_desc(d, "cuda::conv_algorithms");
  activate();
  if (conv2d_direct_supported(d, bias)) return "direct kernels (fwd, bwd filter; cuDNN for bwd data)";
  const ConvPlan& p = conv_plan(d);
  const size_t ws = std::max({p.fwd_bytes, p.bwd_data_bytes, p.bwd_filter_bytes});
  return "fwd " + std::to_string(int(p.fwd)) + ", bwd data " + std::to_string(int(p.bwd_data)) +
         ", bwd filter " + std::to_string(int(p.bwd_filter)) + " (" +
         std::to_string((ws + (size_t{1} << 20) - 1) >> 20) + " MiB workspace)";
}

void CudaBackend::conv2d_forward_impl(const Conv2dDesc& d, const float* x, const float* w, const float* b,
                                      float* y, bool relu) {
  activate();
  if (conv2d_direct_supported(d, b != nullptr)) {
    conv2d_direct_forward(d, x, w, b, y, relu, stream_.get());
    return;
  }
  const ConvPlan& p = conv_plan(d);
  void* ws = workspace(p.fwd_bytes);
  const float one = 1.0f, zero = 0.0f;
  // y [B,out_c,oh,ow] = conv(x, w), then y += b broadcast over images and pixels (and ReLU).
  STRAND_CUDNN_CHECK(cudnnConvolutionForward(cudnn_.get(), &one, p.x.get(), x, p.w.get(), w, p.conv.get(),
                                             p.fwd, ws, p.fwd_bytes, &zero, p.y.get(), y));
  const int64_t pixels = d.out_h() * d.out_w();
  if (!b) {
    if (relu) cuda::relu_forward(d.batch * d.out_c * pixels, y, y, stream_.get());
  } else if (relu) {
    bias_act<true>(d.batch, d.out_c, pixels, b, y, stream_.get());
  } else {
    bias_act<false>(d.batch, d.out_c, pixels, b, y, stream_.get());
  }
}

void CudaBackend::conv2d_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b,
                                 float* y) {
  check_desc(d, "cuda::conv2d_forward");
  conv2d_forward_impl(d, x, w, b, y, false);
}

void CudaBackend::conv2d_relu_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b,
                                      float* y) {
  check_desc(d, "cuda::conv2d_relu_forward");
  conv2d_forward_impl(d, x, w, b, y, true);
}

void CudaBackend::conv2d_backward(const Conv2dDesc& d, const float* x, const float* w, const float* dy,
                                  float* dx, float* dw, float* db) {
  check_desc(d, "cuda::conv2d_backward");
  activate();
  const float one = 1.0f, zero = 0.0f;
  if (conv2d_direct_supported(d, db != nullptr)) {
    // dw and db by the direct kernels; dx (not needed by a first layer) by cuDNN, after them
    // in stream order, so the two can share the workspace.
    const ConvPlan* p = dx ? &conv_plan(d) : nullptr;
    const size_t part_bytes = size_t(conv2d_direct_partial_floats(d)) * sizeof(float);
    void* ws = workspace(std::max(part_bytes, p ? p->bwd_data_bytes : size_t{0}));
    conv2d_direct_backward_filter(d, x, dy, static_cast<float*>(ws), dw, db, stream_.get());
    if (p) {
      STRAND_CUDNN_CHECK(cudnnConvolutionBackwardData(cudnn_.get(), &one, p->w.get(), w, p->y.get(), dy,
                                                      p->conv.get(), p->bwd_data, ws, p->bwd_data_bytes,
                                                      &zero, p->x.get(), dx));
    }
    return;
  }
  const ConvPlan& p = conv_plan(d);
  const int64_t pixels = d.out_h() * d.out_w();
  // The bias passes index a chunk in 32 bits and put channels on the grid's y axis.
  STRAND_CHECK(!db || (pixels < (int64_t{1} << 31) && d.out_c <= 65535), Shape,
               "conv2d bias gradient on the GPU takes at most 65535 output channels and 2^31 "
               "output pixels, got out_c=" +
                   std::to_string(d.out_c) + " pixels=" + std::to_string(pixels),
               "cuda::conv2d_backward");
  const int64_t images_per_chunk = bias_images_per_chunk(pixels);
  const int64_t chunks = (d.batch + images_per_chunk - 1) / images_per_chunk;
  const size_t part_bytes = db ? size_t(d.out_c * chunks) * sizeof(float) : 0;
  // One workspace request for the three passes (they run in stream order, one after another),
  // so it is not regrown between them.
  const size_t ws_bytes = std::max({p.bwd_filter_bytes, dx ? p.bwd_data_bytes : size_t{0}, part_bytes});
  void* ws = workspace(ws_bytes);
  // dw [out_c,in_c,kh,kw] (overwritten: beta 0).
  STRAND_CUDNN_CHECK(cudnnConvolutionBackwardFilter(cudnn_.get(), &one, p.x.get(), x, p.y.get(), dy,
                                                    p.conv.get(), p.bwd_filter, ws, p.bwd_filter_bytes, &zero,
                                                    p.w.get(), dw));
  if (dx) {  // dx [B,in_c,H,W]
    STRAND_CUDNN_CHECK(cudnnConvolutionBackwardData(cudnn_.get(), &one, p.w.get(), w, p.y.get(), dy,
                                                    p.conv.get(), p.bwd_data, ws, p.bwd_data_bytes, &zero,
                                                    p.x.get(), dx));
  }
  if (!db) return;
  // db [out_c], through part [out_c, chunks] in the workspace.
  auto* part = static_cast<float*>(ws);
  conv_bias_grad_partial<<<dim3(unsigned(chunks), unsigned(d.out_c)), kBiasBlock, 0, stream_.get()>>>(
      d.batch, d.out_c, pixels, images_per_chunk, dy, part);
  STRAND_CUDA_CHECK(cudaGetLastError());
  conv_bias_grad_finish<<<unsigned((d.out_c + 127) / 128), 128, 0, stream_.get()>>>(d.out_c, chunks, part,
                                                                                    db);
  STRAND_CUDA_CHECK(cudaGetLastError());
}

}  // namespace strand::cuda
