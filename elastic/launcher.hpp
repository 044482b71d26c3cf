// elastic — `strand launch`: runs a training command under mpirun (torchrun's and horovodrun's
// counterpart, on top of the MPI launcher people already run), watches its ranks' heartbeats
// (job/heartbeat.hpp), and when the job fails (a rank dies, hangs or is cut off) restarts it
// from the newest checkpoint on the hosts that are up; when more hosts come up it grows the
// job at its next checkpoint. Every restart is logged with its cause, the hosts before and
// after, and the steps lost. A resume keeps the global batch (train/trainer.hpp), so the
// continued job follows the uninterrupted one.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <strand/elastic/hosts.hpp>

namespace strand::elastic {

struct LaunchConfig {
  std::vector<std::string> command;  // run by every rank: `strand train ...`
  // Where the hosts come from: a fixed list, or a script printing "host:slots" lines (run
  // again at every restart and every discovery_interval_s).
  std::vector<HostSlots> hosts;
  std::string discovery_script;
  int min_ranks = 1;
  int max_ranks = 0;     // 0: every slot
  int max_restarts = 3;  // after failures; growing the job is not a failure
  // The command's checkpoints (what restarts resume from; the steps lost are counted from it).
  std::filesystem::path checkpoint_dir;
  double heartbeat_period_s = 2;  // a rank silent for two periods has failed
  double start_timeout_s = 120;   // for each rank's first heartbeat
  double discovery_interval_s = 5;
  double wait_for_hosts_s = 300;  // for min_ranks to be up, before giving up
  double host_cooldown_s = 60;    // a host where a rank failed is left out this long, then probed
  std::string mpirun = "mpirun";
  std::vector<std::string> mpirun_args;  // before the command (e.g. --mca options)
  std::string bind;  // the heartbeats' listening address (as --ps-bind); default: the first host's
  std::filesystem::path events;  // when set, one JSON line per event (start, failure, restart, ...)
};

// Usage error naming the setting when the config contradicts itself.
void validate(const LaunchConfig& config);

// The checkpoint directory of a `strand train` command line: its --checkpoint-dir, else its
// --model-dir (or SM_MODEL_DIR) + /checkpoints; Usage error when it has neither.
std::filesystem::path checkpoint_dir_of(const std::vector<std::string>& command, const char* sm_model_dir);

// Runs the job to its end: returns when an attempt exits 0. Throws the last failure (an Error
// saying what failed and that no restarts are left) when restarts run out, or when fewer than
// min_ranks are up for wait_for_hosts_s. `log` gets one line per decision.
void launch(const LaunchConfig& config, const std::function<void(const std::string&)>& log);

}  // namespace strand::elastic
