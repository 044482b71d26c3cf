#include <strand/core/op_checks.hpp>

#include <cmath>
#include <string>

#include <strand/core/error.hpp>

namespace strand {

void check_conv2d(const Conv2dDesc& d, const char* where) {
  const std::string dims = "batch=" + std::to_string(d.batch) + " in_c=" + std::to_string(d.in_c) +
                           " in=" + std::to_string(d.in_h) + "x" + std::to_string(d.in_w) +
                           " out_c=" + std::to_string(d.out_c) + " kernel=" + std::to_string(d.kernel_h) +
                           "x" + std::to_string(d.kernel_w) + " pad=" + std::to_string(d.pad_h) + "x" +
                           std::to_string(d.pad_w) + " stride=" + std::to_string(d.stride_h) + "x" +
                           std::to_string(d.stride_w);
  STRAND_CHECK(d.batch >= 1 && d.in_c >= 1 && d.in_h >= 1 && d.in_w >= 1 && d.out_c >= 1 && d.kernel_h >= 1 &&
                   d.kernel_w >= 1,
               Shape, "conv2d needs every size >= 1, got " + dims, where);
  STRAND_CHECK(d.pad_h >= 0 && d.pad_w >= 0, Shape, "conv2d padding must be >= 0, got " + dims, where);
  STRAND_CHECK(d.stride_h >= 1 && d.stride_w >= 1, Shape, "conv2d stride must be >= 1, got " + dims, where);
  STRAND_CHECK(d.in_h + 2 * d.pad_h >= d.kernel_h && d.in_w + 2 * d.pad_w >= d.kernel_w, Shape,
               "conv2d kernel larger than the padded input, got " + dims, where);
  STRAND_CHECK(d.out_h() >= 1 && d.out_w() >= 1, Shape,
               "conv2d kernel larger than the padded input (output would be " + std::to_string(d.out_h()) +
                   "x" + std::to_string(d.out_w()) + "), got " + dims,
               where);
}

void check_maxpool2x2(const Pool2dDesc& d, const char* where) {
  STRAND_CHECK(d.batch >= 1 && d.channels >= 1 && d.in_h >= 2 && d.in_w >= 2, Shape,
               "maxpool2x2 needs batch, channels >= 1 and H, W >= 2, got batch=" + std::to_string(d.batch) +
                   " channels=" + std::to_string(d.channels) + " in=" + std::to_string(d.in_h) + "x" +
                   std::to_string(d.in_w),
               where);
}

void check_pool(const PoolDesc& d, const char* where) {
  const std::string dims = "batch=" + std::to_string(d.batch) + " channels=" + std::to_string(d.channels) +
                           " in=" + std::to_string(d.in_h) + "x" + std::to_string(d.in_w) +
                           " kernel=" + std::to_string(d.kernel_h) + "x" + std::to_string(d.kernel_w) +
                           " stride=" + std::to_string(d.stride_h) + "x" + std::to_string(d.stride_w);
  STRAND_CHECK(d.batch >= 1 && d.channels >= 1 && d.kernel_h >= 1 && d.kernel_w >= 1 && d.stride_h >= 1 &&
                   d.stride_w >= 1,
               Shape, "pooling needs every size >= 1, got " + dims, where);
  STRAND_CHECK(d.in_h >= d.kernel_h && d.in_w >= d.kernel_w, Shape,
               "pooling window larger than its input, got " + dims, where);
}

void check_batchnorm(const BatchNormDesc& d, const char* where) {
  STRAND_CHECK(d.batch >= 1 && d.channels >= 1 && d.spatial >= 1, Shape,
               "batchnorm needs batch, channels, spatial >= 1, got batch=" + std::to_string(d.batch) +
                   " channels=" + std::to_string(d.channels) + " spatial=" + std::to_string(d.spatial),
               where);
  STRAND_CHECK(d.eps > 0.0f && d.momentum >= 0.0f && d.momentum < 1.0f, Usage,
               "batchnorm needs eps > 0 and momentum in [0, 1), got eps=" + std::to_string(d.eps) +
                   " momentum=" + std::to_string(d.momentum),
               where);
}

void check_dense(const DenseDesc& d, const char* where) {
  STRAND_CHECK(d.batch >= 1 && d.in >= 1 && d.out >= 1, Shape,
               "dense needs batch, in, out >= 1, got batch=" + std::to_string(d.batch) +
                   " in=" + std::to_string(d.in) + " out=" + std::to_string(d.out),
               where);
}

void check_softmax(int64_t batch, int64_t classes, const char* where) {
  STRAND_CHECK(batch >= 1 && classes >= 1, Shape,
               "softmax needs batch, classes >= 1, got batch=" + std::to_string(batch) +
                   " classes=" + std::to_string(classes),
               where);
}

float dropout_scale(float rate, const char* where) {
  // rate == 1 would drop everything and scale by infinity; NaN fails both comparisons.
  STRAND_CHECK(rate >= 0.0f && rate < 1.0f, Usage,
               "dropout rate must be in [0, 1), got " + std::to_string(rate), where);
  return 1.0f / (1.0f - rate);
}

AdamScalars adam_scalars(float lr, float beta1, float beta2, int64_t step, const char* where) {
  STRAND_CHECK(step >= 1, Usage, "adam step counts from 1, got " + std::to_string(step), where);
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  return {static_cast<float>(lr / bc1), static_cast<float>(1.0 / std::sqrt(bc2))};
}

}  // namespace strand
