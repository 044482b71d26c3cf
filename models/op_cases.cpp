#include <strand/models/op_cases.hpp>

#include <map>
#include <memory>

#include <strand/core/error.hpp>
#include <strand/core/layers.hpp>

namespace strand::models {

std::vector<OpCase> op_cases(const ModelArch& arch, int64_t batch) {
  STRAND_CHECK(batch >= 1, Usage, "batch must be >= 1, got " + std::to_string(batch), "op_cases");
  // Each layer bound to its input shape, as the Model binds them: the shapes come from the
  // layers themselves (padding, pooled sizes), not from a second copy of their rules here.
  std::vector<Shape> shapes{arch.input};
  std::vector<std::unique_ptr<Layer>> layers;
  int64_t params = 0;
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    std::unique_ptr<Layer>& layer = layers.emplace_back(make_layer(arch.layers[i]));
    try {
      shapes.push_back(layer->bind(shapes.back()));
    } catch (const Error& e) {
      throw Error(e.kind(), e.message(),
                  "model '" + arch.name + "' layer " + std::to_string(i) + " (" + arch.layers[i].type + ")");
    }
    params += layer->param_count();  // Adam runs over the trainable ones
  }
  // The ReLUs the neighbouring layers take over, asked of the layers as Model asks them.
  const size_t n = arch.layers.size();
  std::vector<bool> fused_fwd(n, false), fused_bwd(n, false);
  for (size_t i = 1; i < n; ++i) {
    if (arch.layers[i].type != "relu") continue;
    fused_fwd[i] = layers[i - 1]->fuse_relu_after();
    fused_bwd[i] = i + 1 < n && layers[i + 1]->fuse_relu_before();
  }

  std::vector<OpCase> cases;
  cases.push_back({.name = "gather", .kind = OpKind::Gather, .batch = batch, .sample = arch.input.numel()});
  std::map<std::string, int> ordinal;
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    const LayerSpec& spec = arch.layers[i];
    const Shape& in = shapes[i];
    const Shape& out = shapes[i + 1];
    OpCase c{.batch = batch, .needs_dx = i > 0};
    if (spec.type == "conv2d") {
      c.kind = OpKind::Conv2d;
      c.conv = layers::conv2d_desc(spec, in);
      c.conv.batch = batch;
      c.relu_in_forward = i + 1 < n && fused_fwd[i + 1];
      c.name = "conv";
    } else if (spec.type == "maxpool" || spec.type == "maxpool2x2" || spec.type == "avgpool" ||
               spec.type == "global_avgpool") {
      const PoolDesc d = layers::pool_desc(spec, in);
      const bool max = spec.type != "avgpool" && spec.type != "global_avgpool";
      if (max && d.kernel_h == 2 && d.kernel_w == 2 && d.stride_h == 2 && d.stride_w == 2) {
        c.kind = OpKind::MaxPool2x2;  // the layer's fast path
        c.pool = Pool2dDesc{.batch = batch, .channels = in[0], .in_h = in[1], .in_w = in[2]};
        c.relu_in_backward = i > 0 && fused_bwd[i - 1];
      } else {
        c.kind = OpKind::Pool;
        c.pooling = d;
        c.pooling.batch = batch;
        c.pool_kind = max ? PoolKind::Max : PoolKind::Avg;
      }
      c.name = "pool";
    } else if (spec.type == "batchnorm") {
      c.kind = OpKind::BatchNorm;
      c.batchnorm = layers::batchnorm_desc(spec, in);
      c.batchnorm.batch = batch;
      c.name = "batchnorm";
    } else if (spec.type == "dense") {
      c.kind = OpKind::Dense;
      c.dense = DenseDesc{.batch = batch, .in = in.numel(), .out = out.numel()};
      c.name = "dense";
    } else if (spec.type == "relu") {
      c.kind = OpKind::Relu;
      c.elements = batch * in.numel();
      c.relu_in_forward = fused_fwd[i];
      c.relu_in_backward = fused_bwd[i];
      c.name = "relu";
    } else if (spec.type == "dropout") {
      c.kind = OpKind::Dropout;
      c.elements = batch * in.numel();
      c.rate = float(spec.attr("rate"));
      c.name = "dropout";
    } else {
      continue;  // flatten: the same memory, no kernel
    }
    c.name += std::to_string(++ordinal[c.name]);
    cases.push_back(c);
  }
  cases.push_back({.name = "softmax_xent",
                   .kind = OpKind::SoftmaxXent,
                   .batch = batch,
                   .classes = shapes.back().numel()});
  cases.push_back({.name = "adam", .kind = OpKind::Adam, .batch = batch, .elements = params});
  return cases;
}

std::vector<OpCase> ops_of(const std::vector<OpCase>& cases, OpKind kind) {
  std::vector<OpCase> out;
  for (const OpCase& c : cases)
    if (c.kind == kind) out.push_back(c);
  return out;
}

const OpCase& op_named(const std::vector<OpCase>& cases, const std::string& name) {
  std::string known;
  for (const OpCase& c : cases) {
    if (c.name == name) return c;
    known += (known.empty() ? "" : ", ") + c.name;
  }
  throw Error(ErrorKind::Usage, "no op '" + name + "' (known: " + known + ")", "op_cases");
}

}  // namespace strand::models
