// Winograd F(2x2, 5x5) convolution for the CPU backend: 5x5 kernels, stride 1, any padding and
// channel counts. Each 2x2 block of outputs costs 36 multiplies per channel pair instead of 100,
// so the multiply count of mnist_cnn's conv2 drops 2.8x. conv2d.cpp chooses it; the im2col path
// stays the reference it is tested against (tests/core/cpu).
#pragma once

#include <cstdint>

#include <strand/core/backend.hpp>
#include <strand/core/cpu/kernels.hpp>

namespace strand::cpu {

// Whether winograd_conv2d_forward / winograd_conv2d_backward_data take this shape. Layers with
// few input channels (a first layer on grey images) gain nothing and keep im2col.
bool winograd_applies(const Conv2dDesc& d);

// y = conv(x, w) + b, same contract as conv2d_forward.
void winograd_conv2d_forward(const Conv2dDesc& d, const float* x, const float* w, const float* b, float* y,
                             Workspace& ws, ThreadPool& pool);

// dx = the input gradient of conv2d for output gradient dy: a convolution of dy with the
// kernels rotated by 180 degrees and in/out channels swapped. Overwrites dx.
void winograd_conv2d_backward_data(const Conv2dDesc& d, const float* w, const float* dy, float* dx,
                                   Workspace& ws, ThreadPool& pool);

}  // namespace strand::cpu
