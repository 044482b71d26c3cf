#include <strand/core/model.hpp>

#include <algorithm>

#include <strand/core/error.hpp>

namespace strand {

Model::Model(Backend& backend, ModelArch arch) : be_(backend), arch_(std::move(arch)) {
  STRAND_CHECK(!arch_.layers.empty(), Usage, "model '" + arch_.name + "' has no layers", "Model");
  STRAND_CHECK(arch_.input.rank() >= 1 && arch_.input.numel() >= 1, Shape,
               "model '" + arch_.name + "' has an empty input shape " + arch_.input.str(), "Model");
  shapes_.push_back(arch_.input);
  offsets_.push_back(0);
  for (const LayerSpec& spec : arch_.layers) {
    try {
      layers_.push_back(make_layer(spec));
    } catch (const Error& e) {
      throw Error(
          e.kind(), e.message(),
          "model '" + arch_.name + "' layer " + std::to_string(layers_.size()) + " (" + spec.type + ")");
    }
    try {
      shapes_.push_back(layers_.back()->bind(shapes_.back()));
    } catch (const Error& e) {
      throw Error(e.kind(), e.message(),
                  "model '" + arch_.name + "' layer " + std::to_string(layers_.size() - 1) + " (" +
                      describe(spec) + ", input " + shapes_.back().str() + ")");
    }
    offsets_.push_back(offsets_.back() + layers_.back()->param_count());
  }
  trainable_count_ = offsets_.back();
  state_offsets_.push_back(trainable_count_);
  saved_offsets_.push_back(0);
  for (const auto& l : layers_) {
    state_offsets_.push_back(state_offsets_.back() + l->state_count());
    saved_offsets_.push_back(saved_offsets_.back() + l->saved_count());
  }
  param_count_ = state_offsets_.back();
  // In place saves a whole activation (ReLU after conv1: 10 MB at batch 100) when the layer's
  // backward does not read its input and the layer that made that input does not read its
  // output. The model's own input (the caller's memory) is never overwritten.
  for (size_t i = 0; i < layers_.size(); ++i) {
    ptrdiff_t src = ptrdiff_t(i) - 1;
    while (src >= 0 && layers_[size_t(src)]->aliases_input()) --src;
    in_place_.push_back(src >= 0 && !layers_[i]->aliases_input() && !layers_[i]->backward_reads_input() &&
                        !layers_[size_t(src)]->backward_reads_output());
  }
  // A ReLU in place between two layers that can take it over (conv2d before, max pool after)
  // costs no pass of its own: at batch 4096 on a GPU each pass over conv1's output moves
  // 0.4-1.2 GB.
  relu_fused_fwd_.assign(layers_.size(), false);
  relu_fused_bwd_.assign(layers_.size(), false);
  for (size_t i = 1; i < layers_.size(); ++i) {
    if (layers_[i]->spec().type != "relu" || !in_place_[i]) continue;
    relu_fused_fwd_[i] = layers_[i - 1]->fuse_relu_after();
    relu_fused_bwd_[i] = i + 1 < layers_.size() && layers_[i + 1]->fuse_relu_before();
  }
  params_ = be_.alloc(size_t(param_count_) * sizeof(float));
  grads_ = be_.alloc(size_t(param_count_) * sizeof(float));
  grads_ptr_ = grads_.f32();
  saved_ = be_.alloc(size_t(saved_offsets_.back()) * sizeof(float));
}

void Model::place_grads(float* storage) {
  STRAND_CHECK(storage != nullptr || param_count_ == 0, Usage, "gradient storage is null",
               "Model::place_grads");
  grads_ptr_ = storage;
  grads_ = Buffer();
}

double Model::forward_flops_per_sample() const {
  double f = 0;
  for (const auto& l : layers_) f += l->forward_flops();
  return f;
}

std::vector<LayerSummary> Model::summary() const {
  std::vector<LayerSummary> out;
  for (size_t i = 0; i < layers_.size(); ++i)
    out.push_back({layers_[i]->spec(), shapes_[i + 1], layers_[i]->param_count() + layers_[i]->state_count(),
                   layers_[i]->state_count(), layers_[i]->forward_flops()});
  return out;
}

void Model::init(uint64_t seed) {
  std::vector<float> host(static_cast<size_t>(param_count_));
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->init_params(host.data() + offsets_[i], mix64(seed + i));
    layers_[i]->init_state(host.data() + state_offsets_[i]);
  }
  set_params(host);
}

std::vector<float> Model::get_params() const {
  std::vector<float> host(static_cast<size_t>(param_count_));
  be_.to_host(host.data(), params_.data(), host.size() * sizeof(float));
  return host;
}

void Model::set_params(std::span<const float> host) {
  STRAND_CHECK(int64_t(host.size()) == param_count_, Shape,
               "model '" + arch_.name + "' has " + std::to_string(param_count_) + " parameters, got " +
                   std::to_string(host.size()),
               "Model::set_params");
  be_.to_device(params_.data(), host.data(), host.size() * sizeof(float));
}

void Model::reserve(int64_t batch) {
  if (batch <= capacity_) return;
  acts_.clear();
  for (size_t i = 0; i < layers_.size(); ++i) {
    const int64_t n = shapes_[i + 1].numel();
    const bool own = !layers_[i]->aliases_input() && !in_place_[i];
    acts_.push_back(own ? be_.alloc(size_t(batch * n) * sizeof(float)) : Buffer());
  }
  // Each gradient buffer is sized for the gradients backward() puts in it, walking the layers
  // as it does: in mnist_cnn only one of the two ever holds conv1's output gradient (10 MB at
  // batch 100), since ReLU and dropout keep the gradient where it is.
  int64_t need[2] = {shapes_.back().numel(), 1};
  int cur = 0;
  for (size_t i = layers_.size(); i-- > 1;) {
    if (layers_[i]->aliases_input()) continue;
    if (!layers_[i]->backward_in_place()) cur = 1 - cur;
    need[cur] = std::max(need[cur], shapes_[i].numel());
  }
  for (int k = 0; k < 2; ++k) dbuf_[k] = be_.alloc(size_t(batch * need[k]) * sizeof(float));
  capacity_ = batch;
}

LayerParams Model::layer_params(size_t i) const {
  return LayerParams{params_.f32() + offsets_[i], grads_ptr_ + offsets_[i], params_.f32() + state_offsets_[i],
                     grads_ptr_ + state_offsets_[i], saved_.f32() + saved_offsets_[i]};
}

StepInfo Model::step_info(size_t layer) const {
  return StepInfo{training_, mix64(step_key_ ^ mix64(layer + 1)), first_sample_};
}

const float* Model::forward(const float* x, int64_t batch, bool training, uint64_t step_key,
                            uint64_t first_sample) {
  STRAND_CHECK(batch >= 1, Usage, "batch size must be at least 1", "Model::forward");
  reserve(batch);
  batch_ = batch;
  training_ = training;
  step_key_ = step_key;
  first_sample_ = first_sample;
  outs_.assign(1, x);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const float* in = outs_.back();
    if (layers_[i]->aliases_input()) {
      outs_.push_back(in);
      continue;
    }
    // In place, the input is an activation this model owns (never the caller's x).
    float* y = in_place_[i] ? const_cast<float*>(in) : acts_[i].f32();
    if (!relu_fused_fwd_[i]) layers_[i]->forward(be_, batch, in, y, layer_params(i), step_info(i));
    outs_.push_back(y);
  }
  return outs_.back();
}

void Model::check_forward_done(int64_t batch) const {
  STRAND_CHECK(outs_.size() == layers_.size() + 1 && batch == batch_, Usage,
               "the loss needs a forward() of the same batch first", "Model::loss");
}

// Both write d(loss)/d(logits) into dbuf_[0]; backward() alternates from there.
LossResult Model::loss(const int32_t* labels, int64_t batch) {
  check_forward_done(batch);
  return be_.softmax_xent(batch, classes(), outs_.back(), labels, dbuf_[0].f32());
}

void Model::loss_accumulate(const int32_t* labels, int64_t batch) {
  check_forward_done(batch);
  be_.softmax_xent_accumulate(batch, classes(), outs_.back(), labels, dbuf_[0].f32());
}

void Model::backward(const GradsReady& ready) {
  STRAND_CHECK(outs_.size() == layers_.size() + 1, Usage, "backward() needs forward() and loss() first",
               "Model::backward");
  // The training forward wrote the state's deltas; after an inference forward they are zero
  // (an inference step leaves the running statistics alone). Final before any gradient.
  if (!training_ && param_count_ > trainable_count_) {
    const std::vector<float> zeros(size_t(param_count_ - trainable_count_), 0.f);
    be_.to_device(grads() + trainable_count_, zeros.data(), zeros.size() * sizeof(float));
  }
  if (ready && param_count_ > trainable_count_) ready(trainable_count_, param_count_);
  int cur = 0;  // dbuf_[cur] holds the gradient w.r.t. the current layer's output
  for (size_t i = layers_.size(); i-- > 0;) {
    Layer& layer = *layers_[i];
    if (layer.aliases_input()) continue;  // the gradient passes through unchanged
    if (relu_fused_bwd_[i]) continue;     // the next layer's backward applied it, in place
    // The first layer's input gradient is never used: skip computing it. reserve() sized the
    // buffers for exactly this walk.
    const bool in_place = layer.backward_in_place();
    float* dx = i == 0 ? nullptr : dbuf_[in_place ? cur : 1 - cur].f32();
    layer.backward(be_, batch_, outs_[i], outs_[i + 1], dbuf_[cur].f32(), dx, layer_params(i), step_info(i));
    if (dx && !in_place) cur = 1 - cur;
    if (ready && offsets_[i + 1] > offsets_[i]) ready(offsets_[i], offsets_[i + 1]);
  }
}

void Model::predict(const float* x_host, int64_t batch, float* probs_host) {
  const size_t in_bytes = size_t(batch * arch_.input.numel()) * sizeof(float);
  const size_t out_bytes = size_t(batch * classes()) * sizeof(float);
  if (xbuf_.bytes() < in_bytes) xbuf_ = be_.alloc(in_bytes);
  if (pbuf_.bytes() < out_bytes) pbuf_ = be_.alloc(out_bytes);
  be_.to_device(xbuf_.data(), x_host, in_bytes);
  const float* logits = forward(xbuf_.f32(), batch, false, 0);
  be_.softmax(batch, classes(), logits, pbuf_.f32());
  be_.to_host(probs_host, pbuf_.data(), out_bytes);
}

}  // namespace strand
