#include <strand/core/layers.hpp>

#include <cmath>
#include <string>

#include <strand/core/error.hpp>

namespace strand {

double LayerSpec::attr(const std::string& key) const {
  auto it = attrs.find(key);
  STRAND_CHECK(it != attrs.end(), Format, "layer '" + type + "' has no setting '" + key + "'", "layer spec");
  return it->second;
}

namespace layers {
LayerSpec conv2d(int64_t filters, int64_t kernel, bool same) {
  return {"conv2d", {{"filters", double(filters)}, {"kernel", double(kernel)}, {"same", same ? 1.0 : 0.0}}};
}
LayerSpec maxpool2x2() { return {"maxpool2x2", {}}; }
LayerSpec dense(int64_t units) { return {"dense", {{"units", double(units)}}}; }
LayerSpec relu() { return {"relu", {}}; }
LayerSpec flatten() { return {"flatten", {}}; }
LayerSpec dropout(double rate) { return {"dropout", {{"rate", rate}}}; }
}  // namespace layers

namespace {

// Glorot/Xavier uniform (TensorFlow's default for conv and dense kernels) from a counter-based
// generator, so initial weights are the same on every platform and thread count.
void glorot_uniform(float* w, int64_t n, double fan_in, double fan_out, uint64_t seed) {
  const double limit = std::sqrt(6.0 / (fan_in + fan_out));
  for (int64_t i = 0; i < n; ++i) {
    double u = double(mix64(seed ^ mix64(uint64_t(i))) >> 11) * (1.0 / 9007199254740992.0);
    w[i] = float((2.0 * u - 1.0) * limit);
  }
}

int64_t positive_int(const LayerSpec& s, const std::string& key, int64_t max) {
  double v = s.attr(key);
  STRAND_CHECK(v >= 1 && v <= double(max) && v == std::floor(v), Format,
               "layer '" + s.type + "': '" + key + "' must be an integer in [1," + std::to_string(max) +
                   "], got " + std::to_string(v),
               "layer spec");
  return int64_t(v);
}

void expect_rank(const Shape& in, size_t rank, const std::string& layer) {
  STRAND_CHECK(in.rank() == rank, Shape,
               layer + " expects a rank-" + std::to_string(rank) + " input per sample, got " + in.str(),
               layer);
}

class Conv2d final : public Layer {
 public:
  explicit Conv2d(const LayerSpec& s)
      : filters_(positive_int(s, "filters", 1 << 16)),
        kernel_(positive_int(s, "kernel", 64)),
        same_(s.attr("same") != 0) {}
  LayerSpec spec() const override { return layers::conv2d(filters_, kernel_, same_); }
  Shape bind(const Shape& in) override {
    expect_rank(in, 3, "conv2d");
    d_.in_c = in[0];
    d_.in_h = in[1];
    d_.in_w = in[2];
    d_.out_c = filters_;
    d_.kernel_h = d_.kernel_w = kernel_;
    // 'same' for odd kernels pads (k-1)/2 on each side (stride 1 keeps H and W).
    STRAND_CHECK(!same_ || kernel_ % 2 == 1, Shape, "conv2d 'same' padding needs an odd kernel size",
                 "conv2d");
    d_.pad_h = d_.pad_w = same_ ? (kernel_ - 1) / 2 : 0;
    STRAND_CHECK(d_.out_h() >= 1 && d_.out_w() >= 1, Shape,
                 "conv2d kernel " + std::to_string(kernel_) + " is larger than its input " + in.str(),
                 "conv2d");
    return Shape{filters_, d_.out_h(), d_.out_w()};
  }
  int64_t weight_count() const { return filters_ * d_.in_c * kernel_ * kernel_; }
  int64_t param_count() const override { return weight_count() + filters_; }
  void init_params(float* p, uint64_t seed) const override {
    const double rf = double(kernel_ * kernel_);
    glorot_uniform(p, weight_count(), d_.in_c * rf, filters_ * rf, seed);
    for (int64_t i = 0; i < filters_; ++i) p[weight_count() + i] = 0.f;
  }
  double forward_flops() const override {
    Conv2dDesc d = d_;
    d.batch = 1;
    return d.flops();
  }
  bool fuse_relu_after() override { return relu_ = true; }
  void forward(Backend& be, int64_t batch, const float* x, float* y, const float* params,
               const StepInfo&) override {
    if (relu_) {
      be.conv2d_relu_forward(desc(batch), x, params, params + weight_count(), y);
    } else {
      be.conv2d_forward(desc(batch), x, params, params + weight_count(), y);
    }
  }
  void backward(Backend& be, int64_t batch, const float* x, const float*, const float* dy, float* dx,
                const float* params, float* grads, const StepInfo&) override {
    be.conv2d_backward(desc(batch), x, params, dy, dx, grads, grads + weight_count());
  }

 private:
  Conv2dDesc desc(int64_t batch) const {
    Conv2dDesc d = d_;
    d.batch = batch;
    return d;
  }
  int64_t filters_, kernel_;
  bool same_;
  bool relu_ = false;  // fuse_relu_after() was accepted
  Conv2dDesc d_;
};

class MaxPool2x2 final : public Layer {
 public:
  LayerSpec spec() const override { return layers::maxpool2x2(); }
  bool backward_reads_output() const override { return true; }  // finds the maxima again
  Shape bind(const Shape& in) override {
    expect_rank(in, 3, "maxpool2x2");
    d_.channels = in[0];
    d_.in_h = in[1];
    d_.in_w = in[2];
    STRAND_CHECK(d_.out_h() >= 1 && d_.out_w() >= 1, Shape,
                 "maxpool2x2 needs at least 2x2 input, got " + in.str(), "maxpool2x2");
    return Shape{d_.channels, d_.out_h(), d_.out_w()};
  }
  void forward(Backend& be, int64_t batch, const float* x, float* y, const float*, const StepInfo&) override {
    be.maxpool2x2_forward(desc(batch), x, y);
  }
  bool fuse_relu_before() override { return relu_ = true; }
  void backward(Backend& be, int64_t batch, const float* x, const float* y, const float* dy, float* dx,
                const float*, float*, const StepInfo&) override {
    if (!dx) return;
    if (relu_) {
      be.relu_maxpool2x2_backward(desc(batch), x, y, dy, dx);
    } else {
      be.maxpool2x2_backward(desc(batch), x, y, dy, dx);
    }
  }

 private:
  Pool2dDesc desc(int64_t batch) const {
    Pool2dDesc d = d_;
    d.batch = batch;
    return d;
  }
  bool relu_ = false;  // fuse_relu_before() was accepted
  Pool2dDesc d_;
};

class Dense final : public Layer {
 public:
  explicit Dense(const LayerSpec& s) : units_(positive_int(s, "units", 1 << 24)) {}
  LayerSpec spec() const override { return layers::dense(units_); }
  Shape bind(const Shape& in) override {
    expect_rank(in, 1, "dense");
    d_.in = in[0];
    d_.out = units_;
    return Shape{units_};
  }
  int64_t param_count() const override { return d_.in * d_.out + d_.out; }
  void init_params(float* p, uint64_t seed) const override {
    glorot_uniform(p, d_.in * d_.out, double(d_.in), double(d_.out), seed);
    for (int64_t i = 0; i < d_.out; ++i) p[d_.in * d_.out + i] = 0.f;
  }
  double forward_flops() const override {
    DenseDesc d = d_;
    d.batch = 1;
    return d.flops();
  }
  void forward(Backend& be, int64_t batch, const float* x, float* y, const float* params,
               const StepInfo&) override {
    be.dense_forward(desc(batch), x, params, params + d_.in * d_.out, y);
  }
  void backward(Backend& be, int64_t batch, const float* x, const float*, const float* dy, float* dx,
                const float* params, float* grads, const StepInfo&) override {
    be.dense_backward(desc(batch), x, params, dy, dx, grads, grads + d_.in * d_.out);
  }

 private:
  DenseDesc desc(int64_t batch) const {
    DenseDesc d = d_;
    d.batch = batch;
    return d;
  }
  int64_t units_;
  DenseDesc d_;
};

class Relu final : public Layer {
 public:
  LayerSpec spec() const override { return layers::relu(); }
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return true; }  // the gradient passes where y > 0
  bool backward_in_place() const override { return true; }
  Shape bind(const Shape& in) override {
    n_ = in.numel();
    return in;
  }
  void forward(Backend& be, int64_t batch, const float* x, float* y, const float*, const StepInfo&) override {
    be.relu_forward(batch * n_, x, y);
  }
  void backward(Backend& be, int64_t batch, const float*, const float* y, const float* dy, float* dx,
                const float*, float*, const StepInfo&) override {
    if (dx) be.relu_backward(batch * n_, y, dy, dx);
  }

 private:
  int64_t n_ = 0;
};

class Flatten final : public Layer {
 public:
  LayerSpec spec() const override { return layers::flatten(); }
  Shape bind(const Shape& in) override { return Shape{in.numel()}; }
  bool aliases_input() const override { return true; }
  void forward(Backend&, int64_t, const float*, float*, const float*, const StepInfo&) override {}
  void backward(Backend&, int64_t, const float*, const float*, const float*, float*, const float*, float*,
                const StepInfo&) override {}
};

class Dropout final : public Layer {
 public:
  explicit Dropout(const LayerSpec& s) : rate_(float(s.attr("rate"))) {
    STRAND_CHECK(rate_ >= 0.f && rate_ < 1.f, Format,
                 "dropout rate must be in [0,1), got " + std::to_string(rate_), "layer spec");
  }
  LayerSpec spec() const override { return layers::dropout(rate_); }
  bool backward_reads_input() const override { return false; }  // the mask is a function of the key
  bool backward_in_place() const override { return true; }
  Shape bind(const Shape& in) override {
    n_ = in.numel();
    return in;
  }
  void forward(Backend& be, int64_t batch, const float* x, float* y, const float*,
               const StepInfo& step) override {
    if (step.training) {
      be.dropout_forward(batch * n_, rate_, step.key, step.first_sample * uint64_t(n_), x, y);
    } else {
      be.dropout_forward(batch * n_, 0.f, step.key, 0, x, y);  // rate 0 keeps all: a copy
    }
  }
  void backward(Backend& be, int64_t batch, const float*, const float*, const float* dy, float* dx,
                const float*, float*, const StepInfo& step) override {
    if (dx)
      be.dropout_backward(batch * n_, step.training ? rate_ : 0.f, step.key, step.first_sample * uint64_t(n_),
                          dy, dx);
  }

 private:
  float rate_;
  int64_t n_ = 0;
};

}  // namespace

std::unique_ptr<Layer> make_layer(const LayerSpec& s) {
  if (s.type == "conv2d") return std::make_unique<Conv2d>(s);
  if (s.type == "maxpool2x2") return std::make_unique<MaxPool2x2>();
  if (s.type == "dense") return std::make_unique<Dense>(s);
  if (s.type == "relu") return std::make_unique<Relu>();
  if (s.type == "flatten") return std::make_unique<Flatten>();
  if (s.type == "dropout") return std::make_unique<Dropout>(s);
  throw Error(
      ErrorKind::Format,
      "unknown layer type '" + s.type + "' (known: conv2d, maxpool2x2, dense, relu, flatten, dropout)",
      "layer spec");
}

}  // namespace strand
