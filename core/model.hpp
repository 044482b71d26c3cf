// Model: a list of layers run on one backend, with ALL parameters in one contiguous buffer and
// ALL gradients in another (same layout), so a distributed strategy moves them in one call.
// Layout: the trainable parameters, layer 0's first (within a layer, weights then bias), then
// the state, layer 0's first: numbers the optimizer does not train (batchnorm's running
// statistics). A training forward writes the state's update into the gradient buffer's state
// range as a delta (state -= delta; Optimizer's state rule), so strategies that average
// gradients average the state too, and checkpoints and exports carry it with the parameters.
// Backward reports the state range first, then fills gradients last layer first and reports
// each finished range, so a strategy can start moving them while earlier layers still compute.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/layer.hpp>
#include <strand/core/tensor.hpp>

namespace strand {

// What a model is, independent of any backend: saved in model files.
struct ModelArch {
  std::string name;  // "mnist_cnn"
  Shape input;       // per sample, e.g. {1,28,28}
  std::vector<LayerSpec> layers;

  bool operator==(const ModelArch&) const = default;
};

// One layer of a bound model, as `strand model summary` prints it.
struct LayerSummary {
  LayerSpec spec;
  Shape output;        // per sample
  int64_t params = 0;  // trainable + state
  int64_t state = 0;   // of which not trained (running statistics)
  double flops = 0;    // forward, per sample
};

class Model {
 public:
  // [begin, end) of the flat gradient buffer, in floats, is final for this step.
  using GradsReady = std::function<void(int64_t begin, int64_t end)>;

  Model(Backend& backend, ModelArch arch);
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelArch& arch() const { return arch_; }
  Backend& backend() const { return be_; }
  const Shape& output_shape() const { return shapes_.back(); }  // per sample, e.g. {10}
  int64_t classes() const { return output_shape().numel(); }
  int64_t param_count() const { return param_count_; }          // trainable + state
  int64_t trainable_count() const { return trainable_count_; }  // the state starts here
  double forward_flops_per_sample() const;
  // Each layer's spec, output shape, parameters and forward FLOPs per sample, in order.
  std::vector<LayerSummary> summary() const;
  // Offsets of each layer's trainable parameters in the flat buffer (size layers+1; back() is
  // trainable_count()).
  const std::vector<int64_t>& param_offsets() const { return offsets_; }

  // Device pointers to the flat buffers (param_count() floats each).
  float* params() const { return params_.f32(); }
  float* grads() const { return grads_ptr_; }
  // Backward writes the gradients to `storage` from now on (param_count() floats in this
  // model's backend's memory, owned by the caller and kept alive while the model trains), and
  // the model's own gradient buffer is freed: a data-parallel communicator can then reduce
  // them where they are written (MpiCommunicator::allocate's shared windows).
  void place_grads(float* storage);

  void init(uint64_t seed);               // Glorot-uniform weights, zero biases, each layer's initial state
  std::vector<float> get_params() const;  // to host
  void set_params(std::span<const float> host_params);  // from host; Shape error on size mismatch

  // x: device [batch, input...]. Returns device logits [batch, classes]. `step_key` seeds
  // this step's dropout masks (each layer mixes in its index); `first_sample` is the index of
  // x's first sample in the step's global batch (data parallelism), so each sample's mask
  // does not depend on how the batch is split over ranks.
  const float* forward(const float* x, int64_t batch, bool training, uint64_t step_key,
                       uint64_t first_sample = 0);
  // Softmax cross-entropy on the last forward's logits; prepares the backward pass.
  LossResult loss(const int32_t* labels, int64_t batch);
  // The same without waiting for the result: it is added to the backend's loss totals
  // (Backend::take_loss_totals), so a training step never stalls on the device.
  void loss_accumulate(const int32_t* labels, int64_t batch);
  // Fills grads() from the last loss(); calls ready(begin, end) after each layer with parameters.
  // After an inference forward these are the gradients of the inference function (batchnorm
  // with its running statistics fixed) and the state's deltas are zero.
  void backward(const GradsReady& ready = {});

  // Inference on host memory: x [batch, input...] -> probs [batch, classes].
  void predict(const float* x_host, int64_t batch, float* probs_host);

 private:
  void reserve(int64_t batch);
  void check_forward_done(int64_t batch) const;
  StepInfo step_info(size_t layer) const;
  LayerParams layer_params(size_t layer) const;

  Backend& be_;
  ModelArch arch_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<Shape> shapes_;  // shapes_[i] = input of layer i; back() = output
  std::vector<int64_t> offsets_, state_offsets_, saved_offsets_;
  int64_t param_count_ = 0, trainable_count_ = 0;
  Buffer params_, grads_, saved_;
  float* grads_ptr_ = nullptr;  // grads_, or the caller's storage (place_grads)

  int64_t capacity_ = 0;              // batch size the activation buffers hold
  std::vector<bool> in_place_;        // layer i writes its output over its input
  std::vector<bool> relu_fused_fwd_;  // ReLU layer i: the layer before applies it (forward)
  std::vector<bool> relu_fused_bwd_;  // ReLU layer i: the layer after applies it (backward)
  std::vector<Buffer> acts_;          // acts_[i] = output of layer i (unless it aliases or runs in place)
  std::vector<const float*> outs_;    // outputs of the last forward, outs_[0] = input
  Buffer dbuf_[2];                    // ping-pong gradient buffers for backward
  Buffer xbuf_, pbuf_;                // predict(): staged input and probabilities
  int64_t batch_ = 0;
  bool training_ = false;
  uint64_t step_key_ = 0;
  uint64_t first_sample_ = 0;
};

}  // namespace strand
