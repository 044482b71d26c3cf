// Array<T>: a host array with its shape, as returned by the IDX and .npy readers after
// conversion to the types strand computes with (float32 samples, int32 labels).
#pragma once

#include <vector>

#include <strand/core/tensor.hpp>

namespace strand::io {

template <class T>
struct Array {
  Shape shape;
  std::vector<T> data;  // row-major, shape.numel() elements
};

}  // namespace strand::io
