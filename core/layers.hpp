// The layer types strand offers, as LayerSpec constructors. make_layer() (layer.hpp) turns a
// spec into a runnable layer.
//   conv2d   filters, kernel, same (1: pad to keep H,W; 0: valid)   weights [F,C,k,k], bias [F]
//   maxpool2x2                                                      2x2 window, stride 2
//   dense    units                                                  weights [units,in], bias [units]
//   relu, flatten, dropout rate (inverted; identity when not training)
#pragma once

#include <cstdint>

#include <strand/core/layer.hpp>

namespace strand::layers {

LayerSpec conv2d(int64_t filters, int64_t kernel, bool same);
LayerSpec maxpool2x2();
LayerSpec dense(int64_t units);
LayerSpec relu();
LayerSpec flatten();
LayerSpec dropout(double rate);

}  // namespace strand::layers
