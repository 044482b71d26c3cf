// CheckpointWriter: writes checkpoints on a background thread, so a training step pays only for
// the snapshot (a copy in memory), never for serialising or the disk. Files are written with
// io::write_checkpoint (atomic, the newest `keep` kept). A failed write is rethrown by the next
// submit() or flush(); the destructor still finishes what was queued, so a run that ends by
// an error loses no checkpoint it had taken.
#pragma once

#include <condition_variable>
#include <exception>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <strand/io/model_file.hpp>

namespace strand {

class CheckpointWriter {
 public:
  struct Written {
    std::filesystem::path path;
    double seconds = 0;  // serialising and writing it, on the background thread
  };

  explicit CheckpointWriter(std::filesystem::path dir, int keep = 2);
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Queues `ck` to be written. A checkpoint still waiting (its write not begun) is replaced:
  // the newer one holds everything the older did.
  void submit(io::Checkpoint ck);
  // Waits until every queued checkpoint is on disk.
  void flush();
  // The checkpoints written since the last call, in order (for the caller's log: the background
  // thread never logs itself).
  std::vector<Written> take_written();

 private:
  void run();
  void rethrow_failure();  // with mu_ held

  const std::filesystem::path dir_;
  const int keep_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<io::Checkpoint> queued_;
  bool writing_ = false, stop_ = false;
  std::exception_ptr failure_;
  std::vector<Written> written_;
  std::thread thread_;  // last: starts once the members above exist
};

}  // namespace strand
