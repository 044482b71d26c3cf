// Shapes and tensor views. Tensors are float32, row-major, NCHW for images and [B, F] for
// features. A TensorView does not own memory; memory belongs to a Buffer (backend.hpp) or
// to a model's flat parameter/gradient buffers.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace strand {

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  explicit Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) {}

  size_t rank() const { return dims_.size(); }
  int64_t operator[](size_t i) const { return dims_.at(i); }
  int64_t& operator[](size_t i) { return dims_.at(i); }
  const std::vector<int64_t>& dims() const { return dims_; }
  int64_t numel() const;                  // product of dims; 1 for rank 0
  Shape with_batch(int64_t batch) const;  // {batch, dims...}
  Shape drop_batch() const;               // dims[1:]
  Shape channels_last() const;            // {C,H,W} -> {H,W,C} (TF's NHWC image); other ranks as is
  std::string str() const;                // "[100,32,28,28]"
  bool operator==(const Shape&) const = default;

 private:
  std::vector<int64_t> dims_;
};

struct TensorView {
  float* data = nullptr;
  Shape shape;
  int64_t numel() const { return shape.numel(); }
};

}  // namespace strand
