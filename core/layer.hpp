// Layer: one step of a network, described by a LayerSpec (what is saved in model files) and
// run through a Backend. Layers own no parameters: the Model hands each one a view into its
// single flat parameter buffer and its single flat gradient buffer.
// Shapes passed to layers are per sample (no batch dimension): {C,H,W} or {F}.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <strand/core/backend.hpp>
#include <strand/core/tensor.hpp>

namespace strand {

// A layer's type and settings, e.g. {"conv2d", {{"filters",32},{"kernel_h",5},...}}
// (layers.hpp lists them). Model files (models/model_json.hpp) are this, written as JSON.
struct LayerSpec {
  std::string type;
  std::map<std::string, double> attrs;

  double attr(const std::string& key) const;  // Format error when missing
  double attr_or(const std::string& key, double fallback) const;
  bool operator==(const LayerSpec&) const = default;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(type, attrs);
  }
};

// What differs from one step to the next.
struct StepInfo {
  bool training = false;
  uint64_t key = 0;           // per-step, per-layer random key (dropout masks)
  uint64_t first_sample = 0;  // index of the batch's first sample in the global (all-rank) batch
};

// Where a layer's numbers live for one call: views into the model's flat buffers.
//   params       param_count() trainable floats; grads the same range of the gradient buffer
//   state        state_count() floats of the parameter buffer that the optimizer does not
//                train (batchnorm's running statistics); state_delta the same range of the
//                gradient buffer, which a training forward writes and the optimizer subtracts
//   saved        saved_count() floats of scratch a training forward keeps for backward
struct LayerParams {
  const float* params = nullptr;
  float* grads = nullptr;
  const float* state = nullptr;
  float* state_delta = nullptr;
  float* saved = nullptr;
};

class Layer {
 public:
  virtual ~Layer() = default;

  virtual LayerSpec spec() const = 0;
  // Fixes the input shape and checks that it fits; returns the output shape.
  virtual Shape bind(const Shape& in) = 0;
  virtual int64_t param_count() const { return 0; }  // trainable
  virtual int64_t state_count() const { return 0; }
  virtual int64_t saved_count() const { return 0; }
  // Writes initial parameters and state (host memory, param_count() and state_count() floats).
  virtual void init_params(float* /*params*/, uint64_t /*seed*/) const {}
  virtual void init_state(float* /*state*/) const {}
  // Per sample, of the matrix products (conv2d, dense); the memory-bound layers count 0.
  virtual double forward_flops() const { return 0; }
  // True when the output is the input reinterpreted (flatten): the model passes the same
  // memory through and calls neither forward nor backward.
  virtual bool aliases_input() const { return false; }
  // What backward() reads besides dy. A layer that needs neither its input nor (for its
  // producer) the producer's output may run in place, over its input (ReLU, dropout).
  virtual bool backward_reads_input() const { return true; }
  virtual bool backward_reads_output() const { return false; }
  // True when backward may write dx over dy (elementwise layers): the model then keeps the
  // gradient in the same buffer, which lets its two gradient buffers be sized apart.
  virtual bool backward_in_place() const { return false; }

  // Fusion with a ReLU that runs in place right after this layer (forward) or right before it
  // (backward). The model asks once, at construction; a layer that returns true applies the
  // ReLU itself from then on (relu(y) in forward, dx masked where x <= 0 in backward) and the
  // model skips that pass of the ReLU layer.
  virtual bool fuse_relu_after() { return false; }
  virtual bool fuse_relu_before() { return false; }

  // x [B,in...] -> y [B,out...]
  virtual void forward(Backend& be, int64_t batch, const float* x, float* y, const LayerParams& p,
                       const StepInfo& step) = 0;
  // After a training forward: writes p.grads and dx (may be null: nothing needs it).
  virtual void backward(Backend& be, int64_t batch, const float* x, const float* y, const float* dy,
                        float* dx, const LayerParams& p, const StepInfo& step) = 0;
};

// Builds a layer from its spec; Format error for an unknown type, an unknown or missing
// setting or a bad value.
std::unique_ptr<Layer> make_layer(const LayerSpec& spec);
// A short name for messages and summaries: "conv2d 5x5x32 same", "maxpool 2x2/2", "dense 1024".
std::string describe(const LayerSpec& spec);

}  // namespace strand
