#include <strand/serve/executor.hpp>

#include <algorithm>
#include <cstring>

namespace strand::serve {

Executor::Executor(BatchOptions options) : options_(options) {
  thread_ = std::thread([this] { pass_loop(); });
}

Executor::~Executor() {
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

std::unique_lock<std::mutex> Executor::idle_pass_lock(bool alone) {
  std::lock_guard lk(mu_);
  if (!queue_.empty() || (alone && (announced_ > 1 || unbatched_ != 0))) return {};
  return std::unique_lock(pass_mu_, std::try_to_lock);
}

bool Executor::expect(Model& model) {
  // Passes queued or running: the threads are awake, and busy.
  const auto pass = idle_pass_lock(false);
  if (!pass) return false;
  model.backend().expect_work();
  return true;
}

void Executor::run(Model& model, const float* x, int64_t rows, float* probs) {
  if (options_.enabled() && rows >= options_.max_batch) {
    // Too big to merge: runs alone, and no batch should wait for it.
    {
      std::lock_guard lk(mu_);
      ++unbatched_;
    }
    queued_.notify_one();
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
  // Idle, and with batching nothing to merge with: run here, which spares a request on its own
  // the two thread hand-overs of the queue.
  if (const auto pass = idle_pass_lock(options_.enabled())) {
    forward(model, x, rows, probs);
    return;
  }
  queue_and_wait(model, x, rows, probs);
}

void Executor::queue_and_wait(Model& model, const float* x, int64_t rows, float* probs) {
  Job job{&model, x, rows, probs, std::chrono::steady_clock::now(), false, nullptr, {}};
  std::unique_lock lk(mu_);
  queue_.push_back(&job);
  queued_.notify_one();
  job.finished.wait(lk, [&] { return job.done; });
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
  e_.queued_.notify_one();  // a batch may have been waiting for this request
}

int64_t Executor::queued_rows(const Model* model) const {
  int64_t rows = 0;
  for (const Job* j : queue_)
    if (j->model == model) rows += j->rows;
  return rows;
}

void Executor::pass_loop() {
  // Without batching a pass takes the oldest request alone; with it, the oldest requests for
  // the oldest one's model that fit in max_batch rows.
  const int64_t limit = options_.enabled() ? options_.max_batch : 0;
  std::unique_lock lk(mu_);
  while (true) {
    queued_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and nothing left to run
    Model* model = queue_.front()->model;
    if (options_.enabled()) {
      const auto deadline = queue_.front()->arrived + options_.timeout;
      queued_.wait_until(lk, deadline, [&] {
        return stopping_ || queued_rows(model) >= options_.max_batch ||
               int64_t(queue_.size()) + unbatched_ >= announced_;
      });
    }
    // Oldest first; a job that does not fit waits for the next pass.
    std::vector<Job*> batch;
    int64_t rows = 0;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->model == model && (batch.empty() || rows + (*it)->rows <= limit)) {
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
      run_batch(*model, batch, rows);
    } catch (...) {
      error = std::current_exception();
    }
    lk.lock();
    for (Job* j : batch) {
      j->done = true;
      j->error = error;
      j->finished.notify_one();
    }
  }
}

void Executor::run_batch(Model& model, const std::vector<Job*>& batch, int64_t rows) {
  if (batch.size() == 1) {  // nothing to merge: straight from the request's rows to its answer
    std::lock_guard pass(pass_mu_);
    forward(model, batch[0]->x, rows, batch[0]->probs);
    return;
  }
  const int64_t in = model.arch().input.numel(), out = model.classes();
  xs_.resize(size_t(rows * in));
  ps_.resize(size_t(rows * out));
  int64_t r = 0;
  for (const Job* j : batch) {
    std::memcpy(xs_.data() + r * in, j->x, size_t(j->rows * in) * sizeof(float));
    r += j->rows;
  }
  {
    std::lock_guard pass(pass_mu_);
    forward(model, xs_.data(), rows, ps_.data());
  }
  r = 0;
  for (Job* j : batch) {
    std::memcpy(j->probs, ps_.data() + r * out, size_t(j->rows * out) * sizeof(float));
    r += j->rows;
  }
}

}  // namespace strand::serve
