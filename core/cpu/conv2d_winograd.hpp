// Winograd convolution for the CPU backend, stride 1, padding below the kernel size, any
// channel counts: F(2x2, 5x5) for 5x5 kernels (a 2x2 block of outputs costs 36 multiplies per
// channel pair instead of 100) and F(4x4, 3x3) for 3x3 ones (a 4x4 block: 36 instead of 144).
// conv2d.cpp chooses it; the im2col path stays the reference it is tested against
// (tests/core/cpu).
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
