// What every backend checks before it runs an op, and the scalars it derives from the op's
// settings: one definition, so the CPU and CUDA backends enforce the same contract and compute
// the same values (a Shape or Usage error naming the op, its dims and `where`).
#pragma once

#include <cstdint>

#include <strand/core/backend.hpp>

namespace strand {

void check_conv2d(const Conv2dDesc& d, const char* where);
void check_maxpool2x2(const Pool2dDesc& d, const char* where);
void check_pool(const PoolDesc& d, const char* where);
void check_batchnorm(const BatchNormDesc& d, const char* where);
void check_dense(const DenseDesc& d, const char* where);
void check_softmax(int64_t batch, int64_t classes, const char* where);

// 1 / (1 - rate): the scale of kept elements. Usage error unless rate is in [0, 1).
float dropout_scale(float rate, const char* where);

// Adam's bias corrections folded into two scalars: p -= lr_t * m / (sqrt(v) * c2 + eps) is
// lr * m_hat / (sqrt(v_hat) + eps) with m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t).
// Computed in double on the host. Usage error unless step >= 1.
struct AdamScalars {
  float lr_t, c2;
};
AdamScalars adam_scalars(float lr, float beta1, float beta2, int64_t step, const char* where);

}  // namespace strand
