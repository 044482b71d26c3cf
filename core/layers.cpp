#include <strand/core/layers.hpp>

#include <cmath>
#include <cstdio>
#include <set>
#include <string>

#include <strand/core/error.hpp>

namespace strand {

double LayerSpec::attr(const std::string& key) const {
  auto it = attrs.find(key);
  STRAND_CHECK(it != attrs.end(), Format, "layer '" + type + "' has no setting '" + key + "'", "layer spec");
  return it->second;
}

double LayerSpec::attr_or(const std::string& key, double fallback) const {
  auto it = attrs.find(key);
  return it == attrs.end() ? fallback : it->second;
}

namespace layers {
LayerSpec conv2d(int64_t filters, int64_t kernel, bool same) {
  return conv2d(filters, kernel, kernel, Conv2dOptions{.same = same});
}
LayerSpec conv2d(int64_t filters, int64_t kernel_h, int64_t kernel_w, const Conv2dOptions& o) {
  LayerSpec s{"conv2d",
              {{"filters", double(filters)},
               {"kernel_h", double(kernel_h)},
               {"kernel_w", double(kernel_w)},
               {"stride_h", double(o.stride_h)},
               {"stride_w", double(o.stride_w)},
               {"same", o.same ? 1.0 : 0.0},
               {"bias", o.bias ? 1.0 : 0.0}}};
  if (!o.same) {
    s.attrs["pad_h"] = double(o.pad_h);
    s.attrs["pad_w"] = double(o.pad_w);
  }
  return s;
}
static LayerSpec pool(const char* type, int64_t kernel, int64_t stride) {
  return {type,
          {{"kernel_h", double(kernel)},
           {"kernel_w", double(kernel)},
           {"stride_h", double(stride)},
           {"stride_w", double(stride)}}};
}
LayerSpec maxpool2x2() { return pool("maxpool", 2, 2); }
LayerSpec maxpool(int64_t kernel, int64_t stride) { return pool("maxpool", kernel, stride); }
LayerSpec avgpool(int64_t kernel, int64_t stride) { return pool("avgpool", kernel, stride); }
LayerSpec global_avgpool() { return {"global_avgpool", {}}; }
LayerSpec batchnorm(double momentum, double epsilon) {
  return {"batchnorm", {{"momentum", momentum}, {"epsilon", epsilon}}};
}
LayerSpec dense(int64_t units) { return {"dense", {{"units", double(units)}}}; }
LayerSpec relu() { return {"relu", {}}; }
LayerSpec flatten() { return {"flatten", {}}; }
LayerSpec dropout(double rate) { return {"dropout", {{"rate", rate}}}; }
}  // namespace layers

namespace {

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
std::string dims(int64_t h, int64_t w) { return std::to_string(h) + "x" + std::to_string(w); }

// Glorot/Xavier uniform (TensorFlow's default for conv and dense kernels) from a counter-based
// generator, so initial weights are the same on every platform and thread count.
void glorot_uniform(float* w, int64_t n, double fan_in, double fan_out, uint64_t seed) {
  const double limit = std::sqrt(6.0 / (fan_in + fan_out));
  for (int64_t i = 0; i < n; ++i) {
    double u = double(mix64(seed ^ mix64(uint64_t(i))) >> 11) * (1.0 / 9007199254740992.0);
    w[i] = float((2.0 * u - 1.0) * limit);
  }
}

// A spec's settings must all be known to its type: a misspelt one would otherwise be ignored.
void check_keys(const LayerSpec& s, std::initializer_list<const char*> known) {
  const std::set<std::string> ok(known.begin(), known.end());
  for (const auto& [key, value] : s.attrs) {
    if (ok.count(key)) continue;
    std::string list;
    for (const char* k : known) list += (list.empty() ? "" : ", ") + std::string(k);
    throw Error(
        ErrorKind::Format,
        "layer '" + s.type + "' has no setting '" + key + "' (known: " + (list.empty() ? "none" : list) + ")",
        "layer spec");
  }
}

int64_t int_in(const LayerSpec& s, const std::string& key, int64_t lo, int64_t hi) {
  const double v = s.attr(key);
  STRAND_CHECK(v >= double(lo) && v <= double(hi) && v == std::floor(v), Format,
               "layer '" + s.type + "': '" + key + "' must be an integer in [" + std::to_string(lo) + "," +
                   std::to_string(hi) + "], got " + num(v),
               "layer spec");
  return int64_t(v);
}
int64_t int_or(const LayerSpec& s, const std::string& key, int64_t fallback, int64_t lo, int64_t hi) {
  return s.attrs.count(key) ? int_in(s, key, lo, hi) : fallback;
}
bool flag_or(const LayerSpec& s, const std::string& key, bool fallback) {
  return int_or(s, key, fallback ? 1 : 0, 0, 1) == 1;
}

void expect_rank(const Shape& in, size_t rank, const std::string& layer) {
  STRAND_CHECK(in.rank() == rank, Shape,
               layer + " expects " + (rank == 3 ? "an image [C,H,W]" : "features [F]") + " per sample, got " +
                   in.str() + (rank == 1 ? " (add a flatten or global_avgpool before it)" : ""),
               layer);
}

class Conv2d final : public Layer {
 public:
  explicit Conv2d(const LayerSpec& s) {
    check_keys(s, {"filters", "kernel", "kernel_h", "kernel_w", "stride_h", "stride_w", "same", "pad_h",
                   "pad_w", "bias"});
    filters_ = int_in(s, "filters", 1, 1 << 16);
    const int64_t k = int_or(s, "kernel", 0, 1, 64);  // older files: one square kernel size
    d_.kernel_h = k ? k : int_in(s, "kernel_h", 1, 64);
    d_.kernel_w = k ? k : int_in(s, "kernel_w", 1, 64);
    d_.stride_h = int_or(s, "stride_h", 1, 1, 64);
    d_.stride_w = int_or(s, "stride_w", 1, 1, 64);
    same_ = flag_or(s, "same", false);
    STRAND_CHECK(!same_ || (!s.attrs.count("pad_h") && !s.attrs.count("pad_w")), Format,
                 "layer 'conv2d': 'same' padding and explicit padding both given", "layer spec");
    STRAND_CHECK(
        !same_ || (d_.kernel_h % 2 == 1 && d_.kernel_w % 2 == 1), Format,
        "layer 'conv2d': 'same' padding needs odd kernel sizes, got " + dims(d_.kernel_h, d_.kernel_w),
        "layer spec");
    d_.pad_h = same_ ? (d_.kernel_h - 1) / 2 : int_or(s, "pad_h", 0, 0, 64);
    d_.pad_w = same_ ? (d_.kernel_w - 1) / 2 : int_or(s, "pad_w", 0, 0, 64);
    bias_ = flag_or(s, "bias", true);
  }
  LayerSpec spec() const override {
    return layers::conv2d(filters_, d_.kernel_h, d_.kernel_w,
                          {.stride_h = d_.stride_h,
                           .stride_w = d_.stride_w,
                           .same = same_,
                           .pad_h = d_.pad_h,
                           .pad_w = d_.pad_w,
                           .bias = bias_});
  }
  Shape bind(const Shape& in) override {
    expect_rank(in, 3, "conv2d");
    d_.in_c = in[0];
    d_.in_h = in[1];
    d_.in_w = in[2];
    d_.out_c = filters_;
    STRAND_CHECK(d_.in_h + 2 * d_.pad_h >= d_.kernel_h && d_.in_w + 2 * d_.pad_w >= d_.kernel_w, Shape,
                 "kernel " + dims(d_.kernel_h, d_.kernel_w) + " is larger than its padded input " +
                     dims(d_.in_h + 2 * d_.pad_h, d_.in_w + 2 * d_.pad_w),
                 "conv2d");
    return Shape{filters_, d_.out_h(), d_.out_w()};
  }
  int64_t weight_count() const { return filters_ * d_.in_c * d_.kernel_h * d_.kernel_w; }
  int64_t param_count() const override { return weight_count() + (bias_ ? filters_ : 0); }
  void init_params(float* p, uint64_t seed) const override {
    const double rf = double(d_.kernel_h * d_.kernel_w);
    glorot_uniform(p, weight_count(), d_.in_c * rf, filters_ * rf, seed);
    for (int64_t i = weight_count(); i < param_count(); ++i) p[i] = 0.f;
  }
  double forward_flops() const override {
    Conv2dDesc d = d_;
    d.batch = 1;
    return d.flops();
  }
  bool fuse_relu_after() override { return relu_ = true; }
  void forward(Backend& be, int64_t batch, const float* x, float* y, const LayerParams& p,
               const StepInfo&) override {
    const float* b = bias_ ? p.params + weight_count() : nullptr;
    if (relu_) {
      be.conv2d_relu_forward(desc(batch), x, p.params, b, y);
    } else {
      be.conv2d_forward(desc(batch), x, p.params, b, y);
    }
  }
  void backward(Backend& be, int64_t batch, const float* x, const float*, const float* dy, float* dx,
                const LayerParams& p, const StepInfo&) override {
    be.conv2d_backward(desc(batch), x, p.params, dy, dx, p.grads, bias_ ? p.grads + weight_count() : nullptr);
  }

  Conv2dDesc desc(int64_t batch) const {
    Conv2dDesc d = d_;
    d.batch = batch;
    return d;
  }

 private:
  int64_t filters_ = 0;
  bool same_ = false, bias_ = true;
  bool relu_ = false;  // fuse_relu_after() was accepted
  Conv2dDesc d_;
};

class Pool final : public Layer {
 public:
  Pool(const LayerSpec& s, PoolKind kind) : kind_(kind) {
    if (s.type == "maxpool2x2") {  // older files
      check_keys(s, {});
    } else {
      check_keys(s, {"kernel_h", "kernel_w", "stride_h", "stride_w"});
      d_.kernel_h = int_in(s, "kernel_h", 1, 1 << 16);
      d_.kernel_w = int_in(s, "kernel_w", 1, 1 << 16);
      d_.stride_h = int_or(s, "stride_h", d_.kernel_h, 1, 1 << 16);
      d_.stride_w = int_or(s, "stride_w", d_.kernel_w, 1, 1 << 16);
    }
  }
  LayerSpec spec() const override {
    return {kind_ == PoolKind::Max ? "maxpool" : "avgpool",
            {{"kernel_h", double(d_.kernel_h)},
             {"kernel_w", double(d_.kernel_w)},
             {"stride_h", double(d_.stride_h)},
             {"stride_w", double(d_.stride_w)}}};
  }
  // Max backward finds the maxima again in its input; the 2x2 kernels compare with the output.
  bool backward_reads_output() const override { return fast(); }
  Shape bind(const Shape& in) override {
    const std::string self = describe(spec());
    expect_rank(in, 3, self);
    d_.channels = in[0];
    d_.in_h = in[1];
    d_.in_w = in[2];
    STRAND_CHECK(d_.in_h >= d_.kernel_h && d_.in_w >= d_.kernel_w, Shape,
                 "input " + dims(d_.in_h, d_.in_w) + " is smaller than the window", self);
    // A window step that does not tile the input would silently drop rows or columns.
    STRAND_CHECK(
        (d_.in_h - d_.kernel_h) % d_.stride_h == 0 && (d_.in_w - d_.kernel_w) % d_.stride_w == 0, Shape,
        "input " + dims(d_.in_h, d_.in_w) + " is not divisible into " + dims(d_.kernel_h, d_.kernel_w) +
            " windows at stride " + dims(d_.stride_h, d_.stride_w) + ": (" + std::to_string(d_.in_h) + " - " +
            std::to_string(d_.kernel_h) + ") / " + std::to_string(d_.stride_h) + " and (" +
            std::to_string(d_.in_w) + " - " + std::to_string(d_.kernel_w) + ") / " +
            std::to_string(d_.stride_w) + " must be whole numbers",
        self);
    return Shape{d_.channels, d_.out_h(), d_.out_w()};
  }
  void forward(Backend& be, int64_t batch, const float* x, float* y, const LayerParams&,
               const StepInfo&) override {
    if (fast()) {
      be.maxpool2x2_forward(desc2(batch), x, y);
    } else {
      be.pool_forward(kind_, desc(batch), x, y);
    }
  }
  // Only the 2x2 stride-2 kernels fold in the ReLU before them.
  bool fuse_relu_before() override { return relu_ = fast(); }
  void backward(Backend& be, int64_t batch, const float* x, const float* y, const float* dy, float* dx,
                const LayerParams&, const StepInfo&) override {
    if (!dx) return;
    if (relu_) {
      be.relu_maxpool2x2_backward(desc2(batch), x, y, dy, dx);
    } else if (fast()) {
      be.maxpool2x2_backward(desc2(batch), x, y, dy, dx);
    } else {
      be.pool_backward(kind_, desc(batch), x, dy, dx);
    }
  }

  bool fast() const {
    return kind_ == PoolKind::Max && d_.kernel_h == 2 && d_.kernel_w == 2 && d_.stride_h == 2 &&
           d_.stride_w == 2;
  }
  PoolDesc desc(int64_t batch) const {
    PoolDesc d = d_;
    d.batch = batch;
    return d;
  }
  Pool2dDesc desc2(int64_t batch) const { return {batch, d_.channels, d_.in_h, d_.in_w}; }

 private:
  PoolKind kind_;
  bool relu_ = false;  // fuse_relu_before() was accepted
  PoolDesc d_;
};

// The mean over each channel's plane: an average pool whose window is the whole plane.
class GlobalAvgPool final : public Layer {
 public:
  explicit GlobalAvgPool(const LayerSpec& s) { check_keys(s, {}); }
  LayerSpec spec() const override { return layers::global_avgpool(); }
  Shape bind(const Shape& in) override {
    expect_rank(in, 3, "global_avgpool");
    d_ = PoolDesc{0, in[0], in[1], in[2], in[1], in[2], 1, 1};
    return Shape{in[0]};
  }
  void forward(Backend& be, int64_t batch, const float* x, float* y, const LayerParams&,
               const StepInfo&) override {
    be.pool_forward(PoolKind::Avg, desc(batch), x, y);
  }
  void backward(Backend& be, int64_t batch, const float* x, const float*, const float* dy, float* dx,
                const LayerParams&, const StepInfo&) override {
    if (dx) be.pool_backward(PoolKind::Avg, desc(batch), x, dy, dx);
  }

  PoolDesc desc(int64_t batch) const {
    PoolDesc d = d_;
    d.batch = batch;
    return d;
  }

 private:
  PoolDesc d_;
};

class BatchNorm final : public Layer {
 public:
  explicit BatchNorm(const LayerSpec& s) {
    check_keys(s, {"momentum", "epsilon"});
    d_.momentum = float(s.attr_or("momentum", 0.99));
    d_.eps = float(s.attr_or("epsilon", 1e-3));
    STRAND_CHECK(d_.momentum >= 0.f && d_.momentum < 1.f, Format,
                 "layer 'batchnorm': 'momentum' must be in [0,1), got " + num(d_.momentum), "layer spec");
    STRAND_CHECK(d_.eps > 0.f && std::isfinite(d_.eps), Format,
                 "layer 'batchnorm': 'epsilon' must be > 0, got " + num(d_.eps), "layer spec");
  }
  LayerSpec spec() const override { return layers::batchnorm(d_.momentum, d_.eps); }
  Shape bind(const Shape& in) override {
    STRAND_CHECK(in.rank() == 3 || in.rank() == 1, Shape,
                 "batchnorm expects an image [C,H,W] or features [F] per sample, got " + in.str(),
                 "batchnorm");
    d_.channels = in[0];
    d_.spatial = in.rank() == 3 ? in[1] * in[2] : 1;
    return in;
  }
  int64_t param_count() const override { return 2 * d_.channels; }  // gamma, beta
  int64_t state_count() const override { return 2 * d_.channels; }  // running mean, variance
  int64_t saved_count() const override { return 2 * d_.channels; }  // batch mean, 1/std
  void init_params(float* p, uint64_t) const override {
    for (int64_t c = 0; c < d_.channels; ++c) {
      p[c] = 1.f;
      p[d_.channels + c] = 0.f;
    }
  }
  void init_state(float* s) const override {  // mean 0, variance 1
    for (int64_t c = 0; c < d_.channels; ++c) {
      s[c] = 0.f;
      s[d_.channels + c] = 1.f;
    }
  }
  void forward(Backend& be, int64_t batch, const float* x, float* y, const LayerParams& p,
               const StepInfo& step) override {
    if (step.training) {
      be.batchnorm_forward_train(desc(batch), x, p.params, p.state, y, p.saved, p.state_delta);
    } else {
      be.batchnorm_forward_infer(desc(batch), x, p.params, p.state, y);
    }
  }
  void backward(Backend& be, int64_t batch, const float* x, const float*, const float* dy, float* dx,
                const LayerParams& p, const StepInfo& step) override {
    if (step.training) {
      be.batchnorm_backward(desc(batch), x, p.params, p.saved, dy, dx, p.grads);
    } else {
      be.batchnorm_backward_infer(desc(batch), x, p.params, p.state, dy, dx, p.grads);
    }
  }

  BatchNormDesc desc(int64_t batch) const {
    BatchNormDesc d = d_;
    d.batch = batch;
    return d;
  }

 private:
  BatchNormDesc d_;
};

class Dense final : public Layer {
 public:
  explicit Dense(const LayerSpec& s) {
    check_keys(s, {"units"});
    units_ = int_in(s, "units", 1, 1 << 24);
  }
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
  void forward(Backend& be, int64_t batch, const float* x, float* y, const LayerParams& p,
               const StepInfo&) override {
    be.dense_forward(desc(batch), x, p.params, p.params + d_.in * d_.out, y);
  }
  void backward(Backend& be, int64_t batch, const float* x, const float*, const float* dy, float* dx,
                const LayerParams& p, const StepInfo&) override {
    be.dense_backward(desc(batch), x, p.params, dy, dx, p.grads, p.grads + d_.in * d_.out);
  }

 private:
  DenseDesc desc(int64_t batch) const {
    DenseDesc d = d_;
    d.batch = batch;
    return d;
  }
  int64_t units_ = 0;
  DenseDesc d_;
};

class Relu final : public Layer {
 public:
  explicit Relu(const LayerSpec& s) { check_keys(s, {}); }
  LayerSpec spec() const override { return layers::relu(); }
  bool backward_reads_input() const override { return false; }
  bool backward_reads_output() const override { return true; }  // the gradient passes where y > 0
  bool backward_in_place() const override { return true; }
  Shape bind(const Shape& in) override {
    n_ = in.numel();
    return in;
  }
  void forward(Backend& be, int64_t batch, const float* x, float* y, const LayerParams&,
               const StepInfo&) override {
    be.relu_forward(batch * n_, x, y);
  }
  void backward(Backend& be, int64_t batch, const float*, const float* y, const float* dy, float* dx,
                const LayerParams&, const StepInfo&) override {
    if (dx) be.relu_backward(batch * n_, y, dy, dx);
  }

 private:
  int64_t n_ = 0;
};

class Flatten final : public Layer {
 public:
  explicit Flatten(const LayerSpec& s) { check_keys(s, {}); }
  LayerSpec spec() const override { return layers::flatten(); }
  Shape bind(const Shape& in) override { return Shape{in.numel()}; }
  bool aliases_input() const override { return true; }
  void forward(Backend&, int64_t, const float*, float*, const LayerParams&, const StepInfo&) override {}
  void backward(Backend&, int64_t, const float*, const float*, const float*, float*, const LayerParams&,
                const StepInfo&) override {}
};

class Dropout final : public Layer {
 public:
  explicit Dropout(const LayerSpec& s) {
    check_keys(s, {"rate"});
    rate_ = float(s.attr("rate"));
    STRAND_CHECK(rate_ >= 0.f && rate_ < 1.f, Format,
                 "layer 'dropout': 'rate' must be in [0,1), got " + num(rate_), "layer spec");
  }
  LayerSpec spec() const override { return layers::dropout(rate_); }
  bool backward_reads_input() const override { return false; }  // the mask is a function of the key
  bool backward_in_place() const override { return true; }
  Shape bind(const Shape& in) override {
    n_ = in.numel();
    return in;
  }
  void forward(Backend& be, int64_t batch, const float* x, float* y, const LayerParams&,
               const StepInfo& step) override {
    if (step.training) {
      be.dropout_forward(batch * n_, rate_, step.key, step.first_sample * uint64_t(n_), x, y);
    } else {
      be.dropout_forward(batch * n_, 0.f, step.key, 0, x, y);  // rate 0 keeps all: a copy
    }
  }
  void backward(Backend& be, int64_t batch, const float*, const float*, const float* dy, float* dx,
                const LayerParams&, const StepInfo& step) override {
    if (dx)
      be.dropout_backward(batch * n_, step.training ? rate_ : 0.f, step.key, step.first_sample * uint64_t(n_),
                          dy, dx);
  }

 private:
  float rate_ = 0;
  int64_t n_ = 0;
};

template <class L, class D>
D bound_desc(const LayerSpec& spec, const Shape& in, D (L::*desc)(int64_t) const) {
  L layer(spec);
  layer.bind(in);
  return (layer.*desc)(0);
}

}  // namespace

namespace layers {
Conv2dDesc conv2d_desc(const LayerSpec& conv, const Shape& in) { return bound_desc(conv, in, &Conv2d::desc); }
PoolDesc pool_desc(const LayerSpec& pool, const Shape& in) {
  if (pool.type == "global_avgpool") return bound_desc(pool, in, &GlobalAvgPool::desc);
  Pool layer(pool, PoolKind::Max);
  layer.bind(in);
  return layer.desc(0);
}
BatchNormDesc batchnorm_desc(const LayerSpec& bn, const Shape& in) {
  return bound_desc(bn, in, &BatchNorm::desc);
}
}  // namespace layers

std::unique_ptr<Layer> make_layer(const LayerSpec& s) {
  if (s.type == "conv2d") return std::make_unique<Conv2d>(s);
  if (s.type == "maxpool" || s.type == "maxpool2x2") return std::make_unique<Pool>(s, PoolKind::Max);
  if (s.type == "avgpool") return std::make_unique<Pool>(s, PoolKind::Avg);
  if (s.type == "global_avgpool") return std::make_unique<GlobalAvgPool>(s);
  if (s.type == "batchnorm") return std::make_unique<BatchNorm>(s);
  if (s.type == "dense") return std::make_unique<Dense>(s);
  if (s.type == "relu") return std::make_unique<Relu>(s);
  if (s.type == "flatten") return std::make_unique<Flatten>(s);
  if (s.type == "dropout") return std::make_unique<Dropout>(s);
  throw Error(
      ErrorKind::Format,
      "unknown layer type '" + s.type +
          "' (known: conv2d, maxpool, avgpool, global_avgpool, batchnorm, dense, relu, flatten, dropout)",
      "layer spec");
}

std::string describe(const LayerSpec& s) {
  auto a = [&](const char* key, double fallback) { return int64_t(s.attr_or(key, fallback)); };
  if (s.type == "conv2d") {
    const int64_t k = a("kernel", 0);
    const int64_t kh = k ? k : a("kernel_h", 0), kw = k ? k : a("kernel_w", 0);
    std::string out = "conv2d " + dims(kh, kw) + "x" + std::to_string(a("filters", 0));
    if (a("stride_h", 1) != 1 || a("stride_w", 1) != 1) out += "/" + dims(a("stride_h", 1), a("stride_w", 1));
    const bool valid = !a("same", 0) && !a("pad_h", 0) && !a("pad_w", 0);
    out += a("same", 0) ? " same" : valid ? " valid" : " pad " + dims(a("pad_h", 0), a("pad_w", 0));
    if (!a("bias", 1)) out += " no-bias";
    return out;
  }
  if (s.type == "maxpool" || s.type == "avgpool") {
    std::string out = s.type + " " + dims(a("kernel_h", 2), a("kernel_w", 2));
    if (a("stride_h", 0) != a("kernel_h", 2) || a("stride_w", 0) != a("kernel_w", 2))
      out += "/" + dims(a("stride_h", 0), a("stride_w", 0));
    return out;
  }
  if (s.type == "maxpool2x2") return "maxpool 2x2";
  if (s.type == "dense") return "dense " + std::to_string(a("units", 0));
  if (s.type == "dropout") return "dropout " + num(s.attr_or("rate", 0));
  return s.type;
}

}  // namespace strand
