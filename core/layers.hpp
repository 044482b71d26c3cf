// The layer types strand offers, as LayerSpec constructors; make_layer() (layer.hpp) turns a
// spec into a runnable layer. Settings (all numbers; model files spell some as text):
//   conv2d     filters, kernel_h, kernel_w, stride_h, stride_w (1), same (1: pad (k-1)/2 per
//              side, odd kernels; 0: pad_h, pad_w, default 0), bias (1)
//              weights [F,C,kh,kw], bias [F]; output floor((in + 2 pad - k) / stride) + 1
//   maxpool, avgpool  kernel_h, kernel_w, stride_h, stride_w: windows must tile the input
//   global_avgpool    [C,H,W] -> [C]
//   batchnorm  momentum (0.99), epsilon (0.001): per channel of [C,H,W] or per feature of [F];
//              gamma, beta trained; running mean and variance kept as state
//   dense      units                                  weights [units,in], bias [units]
//   relu, flatten, dropout rate (inverted; identity when not training)
// Older files' "maxpool2x2" and conv2d "kernel" read as maxpool 2x2/2 and kernel_h = kernel_w.
#pragma once

#include <cstdint>

#include <strand/core/layer.hpp>

namespace strand::layers {

struct Conv2dOptions {
  int64_t stride_h = 1, stride_w = 1;
  bool same = true;
  int64_t pad_h = 0, pad_w = 0;  // when !same
  bool bias = true;
};
LayerSpec conv2d(int64_t filters, int64_t kernel, bool same);
LayerSpec conv2d(int64_t filters, int64_t kernel_h, int64_t kernel_w, const Conv2dOptions& o);
LayerSpec maxpool2x2();
LayerSpec maxpool(int64_t kernel, int64_t stride);
LayerSpec avgpool(int64_t kernel, int64_t stride);
LayerSpec global_avgpool();
LayerSpec batchnorm(double momentum = 0.99, double epsilon = 1e-3);
LayerSpec dense(int64_t units);
LayerSpec relu();
LayerSpec flatten();
LayerSpec dropout(double rate);

// The kernel descriptor (batch 0) that a conv2d / pooling (also global_avgpool) / batchnorm
// spec runs with on input `in`, for op tables and benchmarks; errors as make_layer and bind.
Conv2dDesc conv2d_desc(const LayerSpec& conv, const Shape& in);
PoolDesc pool_desc(const LayerSpec& pool, const Shape& in);
BatchNormDesc batchnorm_desc(const LayerSpec& bn, const Shape& in);

}  // namespace strand::layers
