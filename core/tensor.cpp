#include <strand/core/tensor.hpp>

namespace strand {

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int64_t d : dims_) n *= d;
  return n;
}

Shape Shape::with_batch(int64_t batch) const {
  std::vector<int64_t> d{batch};
  d.insert(d.end(), dims_.begin(), dims_.end());
  return Shape(std::move(d));
}

Shape Shape::drop_batch() const {
  return Shape(std::vector<int64_t>(dims_.empty() ? dims_.begin() : dims_.begin() + 1, dims_.end()));
}

Shape Shape::channels_last() const { return rank() == 3 ? Shape{dims_[1], dims_[2], dims_[0]} : *this; }

std::string Shape::str() const {
  std::string s = "[";
  for (size_t i = 0; i < dims_.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(dims_[i]);
  }
  return s + "]";
}

}  // namespace strand
