// Child processes for the launcher: each in a process group of its own, so stopping one stops
// everything it started on this machine (mpirun, its ranks, its rsh agents). RAII: a Child that
// goes out of scope is killed and reaped.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace strand::elastic {

class Child {
 public:
  // Starts argv[0] (found on PATH) with the environment plus `env` ("NAME=VALUE"). With
  // `pipe_stderr`, the child's stderr is a pipe read from stderr_fd(); with `capture_stdout`,
  // its stdout likewise from stdout_fd(). Io error naming the program when it cannot start.
  Child(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
        bool pipe_stderr = false, bool capture_stdout = false);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  int pid() const { return pid_; }
  int stderr_fd() const { return err_fd_; }
  int stdout_fd() const { return out_fd_; }
  // The wait status once it has exited (reaped then), else nothing; never blocks.
  std::optional<int> poll();
  // SIGTERM to its group, then SIGKILL to the group after `grace_s`; reaps it; the status.
  int stop(double grace_s);

 private:
  int pid_ = -1;
  int err_fd_ = -1, out_fd_ = -1;
  std::optional<int> status_;
};

// "exited with status 3", "was killed by signal 9 (Killed)".
std::string describe_status(int wait_status);
// True when the wait status is a clean exit 0.
bool succeeded(int wait_status);

// Runs argv to its end or for at most timeout_s (then stopped); its stdout, and its wait
// status (nothing when it timed out).
struct Ran {
  std::optional<int> status;
  std::string out;
};
Ran run_for(const std::vector<std::string>& argv, double timeout_s, const std::vector<std::string>& env = {});

}  // namespace strand::elastic
