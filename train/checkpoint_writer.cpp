#include <strand/train/checkpoint_writer.hpp>

#include <chrono>
#include <utility>

namespace strand {

CheckpointWriter::CheckpointWriter(std::filesystem::path dir, int keep)
    : dir_(std::move(dir)), keep_(keep), thread_([this] { run(); }) {}

CheckpointWriter::~CheckpointWriter() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();  // run() writes what is queued before it returns
}

void CheckpointWriter::submit(io::Checkpoint ck) {
  {
    std::lock_guard lock(mu_);
    rethrow_failure();
    queued_ = std::move(ck);
  }
  cv_.notify_all();
}

void CheckpointWriter::flush() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !queued_ && !writing_; });
  rethrow_failure();
}

std::vector<CheckpointWriter::Written> CheckpointWriter::take_written() {
  std::lock_guard lock(mu_);
  return std::exchange(written_, {});
}

void CheckpointWriter::rethrow_failure() {
  if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
}

void CheckpointWriter::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return queued_ || stop_; });
    if (!queued_) return;  // stopping with nothing left to write
    io::Checkpoint ck = std::move(*queued_);
    queued_.reset();
    writing_ = true;
    lock.unlock();
    const auto t0 = std::chrono::steady_clock::now();
    std::exception_ptr failure;
    std::filesystem::path path;
    try {
      path = io::write_checkpoint(dir_, ck, keep_);
    } catch (...) {
      failure = std::current_exception();
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    lock.lock();
    writing_ = false;
    if (failure) {
      failure_ = failure;
    } else {
      written_.push_back({path, seconds});
    }
    cv_.notify_all();
  }
}

}  // namespace strand
