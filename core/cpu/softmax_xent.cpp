// Row-wise softmax and mean softmax cross-entropy. Each row is shifted by its max before
// exp so large logits do not overflow.
#include <cmath>
#include <string>

#include <strand/core/cpu/kernels.hpp>
#include <strand/core/error.hpp>
#include <strand/core/op_checks.hpp>

namespace strand::cpu {
LossResult softmax_xent(int64_t batch, int64_t classes, const float* logits, const int32_t* labels,
                        float* dlogits, Workspace& ws, ThreadPool& pool) {
  const char* where = "cpu::softmax_xent";
  check_softmax(batch, classes, where);
  // Checked up front so no thread stops half-way through the rows.
  for (int64_t n = 0; n < batch; ++n) {
    STRAND_CHECK(labels[n] >= 0 && labels[n] < classes, Usage,
                 "label " + std::to_string(labels[n]) + " of row " + std::to_string(n) + " is outside [0, " +
                     std::to_string(classes) + ")",
                 where);
  }
  ws.reserve(1, static_cast<size_t>(2 * batch));
  float* row_loss = ws.slot(0);   // [B]
  float* hit = row_loss + batch;  // [B] 1 where the arg-max is the label
  const float inv_batch = 1.0f / static_cast<float>(batch);
  pool.parallel_for(batch, kParallelMin / classes, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* l = logits + n * classes;  // [C]
      float* g = dlogits + n * classes;       // [C]; may alias l: each l[j] is read before g[j]
      int64_t arg = 0;
      for (int64_t j = 1; j < classes; ++j) arg = l[j] > l[arg] ? j : arg;
      const float mx = l[arg];
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < classes; ++j) sum += std::exp(l[j] - mx);
      const int32_t label = labels[n];
      row_loss[n] = std::log(sum) - (l[label] - mx);
      hit[n] = arg == label;
      const float inv_sum = 1.0f / sum;
#pragma omp simd
      for (int64_t j = 0; j < classes; ++j) {
        g[j] = (std::exp(l[j] - mx) * inv_sum - (j == label ? 1.0f : 0.0f)) * inv_batch;
      }
    }
  });
  double total = 0.0;  // row order, so the loss does not depend on the thread count
  int64_t correct = 0;
  for (int64_t n = 0; n < batch; ++n) {
    total += row_loss[n];
    correct += hit[n] != 0.0f;
  }
  return {total / static_cast<double>(batch), correct};
}

void softmax(int64_t batch, int64_t classes, const float* logits, float* probs, ThreadPool& pool) {
  check_softmax(batch, classes, "cpu::softmax");
  pool.parallel_for(batch, kParallelMin / classes, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* l = logits + n * classes;  // [C]
      float* p = probs + n * classes;         // [C]; may alias l
      float mx = l[0];
      for (int64_t j = 1; j < classes; ++j) mx = l[j] > mx ? l[j] : mx;
      float sum = 0.0f;
      for (int64_t j = 0; j < classes; ++j) {
        p[j] = std::exp(l[j] - mx);
        sum += p[j];
      }
      const float inv_sum = 1.0f / sum;
#pragma omp simd
      for (int64_t j = 0; j < classes; ++j) p[j] *= inv_sum;
    }
  });
}

}  // namespace strand::cpu
