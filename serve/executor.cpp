#include "serve/executor.hpp"

#include <algorithm>
#include <cstring>

namespace strand::serve {

Executor::Executor(BatchOptions options) : options_(options) {
  if (options_.enabled()) thread_ = std::thread([this] { batch_loop(); });
}

Executor::~Executor() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  queued_.notify_all();
  thread_.join();
}

void Executor::forward(Model& model, const float* x, int64_t rows, float* probs) {
  ++passes_;
  const int64_t in = model.arch().input.numel(), out = model.classes();
  for (int64_t r = 0; r < rows; r += kMaxPassRows) {
    const int64_t n = std::min(kMaxPassRows, rows - r);
    model.predict(x + r * in, n, probs + r * out);
  }
}

void Executor::run(Model& model, const float* x, int64_t rows, float* probs) {
  if (!options_.enabled()) {
    std::lock_guard lk(pass_mu_);
    forward(model, x, rows, probs);
    return;
  }
  if (rows >= options_.max_batch) {
    // Too big to merge: runs alone, and no batch should wait for it.
    {
      std::lock_guard lk(mu_);
      ++unbatched_;
    }
    queued_.notify_all();
    struct Done {
      Executor& e;
      ~Done() {
        std::lock_guard lk(e.mu_);
        --e.unbatched_;
      }
    } done{*this};
    std::lock_guard lk(pass_mu_);
    forward(model, x, rows, probs);
    return;
  }
  Job job{&model, x, rows, probs, std::chrono::steady_clock::now(), false, nullptr};
  std::unique_lock lk(mu_);
  queue_.push_back(&job);
  queued_.notify_all();
  finished_.wait(lk, [&] { return job.done; });
  if (job.error) std::rethrow_exception(job.error);
}

Executor::Announcement::Announcement(Executor& e) : e_(e) {
  std::lock_guard lk(e_.mu_);
  ++e_.announced_;
}

Executor::Announcement::~Announcement() {
  {
    std::lock_guard lk(e_.mu_);
    --e_.announced_;
  }
  e_.queued_.notify_all();  // a batch may have been waiting for this request
}

int64_t Executor::queued_rows(const Model* model) const {
  int64_t rows = 0;
  for (const Job* j : queue_)
    if (j->model == model) rows += j->rows;
  return rows;
}

void Executor::batch_loop() {
  std::unique_lock lk(mu_);
  while (true) {
    queued_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and nothing left to run
    Model* model = queue_.front()->model;
    const auto deadline = queue_.front()->arrived + options_.timeout;
    queued_.wait_until(lk, deadline, [&] {
      return stopping_ || queued_rows(model) >= options_.max_batch || int64_t(queue_.size()) + unbatched_ >= announced_;
    });
    // Oldest first; a job that does not fit waits for the next pass.
    std::vector<Job*> batch;
    int64_t rows = 0;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->model == model && rows + (*it)->rows <= options_.max_batch) {
        rows += (*it)->rows;
        batch.push_back(*it);
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    lk.unlock();
    std::exception_ptr error;
    try {
      const int64_t in = model->arch().input.numel(), out = model->classes();
      xs_.resize(size_t(rows * in));
      ps_.resize(size_t(rows * out));
      int64_t r = 0;
      for (const Job* j : batch) {
        std::memcpy(xs_.data() + r * in, j->x, size_t(j->rows * in) * sizeof(float));
        r += j->rows;
      }
      {
        std::lock_guard pass(pass_mu_);
        forward(*model, xs_.data(), rows, ps_.data());
      }
      r = 0;
      for (Job* j : batch) {
        std::memcpy(j->probs, ps_.data() + r * out, size_t(j->rows * out) * sizeof(float));
        r += j->rows;
      }
    } catch (...) {
      error = std::current_exception();
    }
    lk.lock();
    for (Job* j : batch) {
      j->done = true;
      j->error = error;
    }
    finished_.notify_all();
  }
}

}  // namespace strand::serve
