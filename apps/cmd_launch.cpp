// strand launch: parses argv into an elastic::LaunchConfig and runs it (elastic/launcher.hpp).
#include <cstdlib>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <strand/core/error.hpp>
#include <strand/elastic/launcher.hpp>
#include "apps/commands.hpp"

namespace strand::cli {

namespace {

struct LaunchArgs {
  elastic::LaunchConfig config;
  std::string hosts, mpirun_args, checkpoint_dir;
};

void run_launch(const LaunchArgs& a) {
  elastic::LaunchConfig c = a.config;
  if (!a.hosts.empty()) c.hosts = elastic::parse_hosts(a.hosts, "--hosts");
  std::istringstream words(a.mpirun_args);
  for (std::string w; words >> w;) c.mpirun_args.push_back(w);
  c.checkpoint_dir = a.checkpoint_dir.empty()
                         ? elastic::checkpoint_dir_of(c.command, std::getenv("SM_MODEL_DIR"))
                         : std::filesystem::path(a.checkpoint_dir);
  const auto log = [](const std::string& line) { std::cerr << "[strand launch] " << line << std::endl; };
  elastic::launch(c, log);
}

}  // namespace

void add_launch_command(CLI::App& app) {
  auto a = std::make_shared<LaunchArgs>();
  elastic::LaunchConfig& c = a->config;
  CLI::App* cmd = app.add_subcommand(
      "launch",
      "Run a training command under mpirun and restart it from its newest checkpoint when a rank dies, "
      "hangs or is cut off, on the hosts that are up: strand launch --hosts h1:2,h2:2 -- strand train ...");
  cmd->add_option("--hosts", a->hosts, "The hosts and their slots (ranks): h1:2,h2:2 (slots default to 1)");
  cmd->add_option("--host-discovery-script", c.discovery_script,
                  "A command printing one host:slots line per host that is up (Horovod's contract), run at "
                  "the start, at every restart and every --discovery-interval");
  cmd->add_option("--min-ranks", c.min_ranks, "Fewest ranks to run on (below it, wait for hosts)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-ranks", c.max_ranks, "Most ranks to run on (default: every slot)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-restarts", c.max_restarts,
                  "Restarts after failures before giving up with the last one (growing the job is not one)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--heartbeat-period", c.heartbeat_period_s,
                  "Seconds between a rank's heartbeats; a rank silent for two periods has failed")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--start-timeout", c.start_timeout_s, "Seconds for every rank's first heartbeat")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--discovery-interval", c.discovery_interval_s,
                  "Seconds between looks for more hosts while the job runs")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--wait-for-hosts", c.wait_for_hosts_s, "Seconds to wait for --min-ranks to be up")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--host-cooldown", c.host_cooldown_s,
                  "Seconds a host where a rank failed is left out; then it is probed and, if it answers, "
                  "taken in again at the next checkpoint")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--mpirun", c.mpirun, "The mpirun to run")->capture_default_str();
  cmd->add_option("--mpirun-args", a->mpirun_args,
                  "More mpirun options, one string (e.g. \"--mca btl_tcp_if_include eth0\")");
  cmd->add_option("--bind", c.bind,
                  "Where the launcher listens for heartbeats: an address, network or interface, as "
                  "--ps-bind (default: the first host's address if it is this machine's)");
  cmd->add_option("--checkpoint-dir", a->checkpoint_dir,
                  "The command's checkpoints (default: its --checkpoint-dir, else --model-dir/checkpoints)");
  cmd->add_option("--events", c.events,
                  "Append one JSON line per event (start, training, failure, restart, grow, finished) here");
  cmd->add_option("command", c.command, "The training command, after --")->required();
  cmd->callback([a] { run_launch(*a); });
}

}  // namespace strand::cli
