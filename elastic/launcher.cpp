#include <strand/elastic/launcher.hpp>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <optional>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include <strand/core/error.hpp>
#include <strand/elastic/process.hpp>
#include <strand/io/model_file.hpp>
#include <strand/job/heartbeat.hpp>
#include <strand/job/launch.hpp>

namespace strand::elastic {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}
std::string compact_seconds(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%g s", s);
  return b;
}
constexpr const char* kWhere = "strand launch";
// How long mpirun gets to end its ranks (it forwards SIGTERM, and continues stopped ones)
// before its process group is killed.
constexpr double kStopGrace = 10;

// The value of `--name V` or `--name=V` in a command line.
std::optional<std::string> option_value(const std::vector<std::string>& command, const std::string& name) {
  for (size_t i = 0; i < command.size(); ++i) {
    if (command[i] == name && i + 1 < command.size()) return command[i + 1];
    if (command[i].rfind(name + "=", 0) == 0) return command[i].substr(name.size() + 1);
  }
  return std::nullopt;
}
bool has_option(const std::vector<std::string>& command, const std::string& name) {
  for (const std::string& a : command)
    if (a == name || a.rfind(name + "=", 0) == 0) return true;
  return false;
}

// One JSON line per event, for benchmarks and tools; times are the wall clock (Unix seconds).
class EventLog {
 public:
  explicit EventLog(const std::filesystem::path& path) {
    if (path.empty()) return;
    out_.open(path, std::ios::app);
    STRAND_CHECK(out_.good(), Io, "cannot open the events file for writing", path.string());
  }
  void write(nlohmann::json event) {
    if (!out_.is_open()) return;
    event["time"] =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    out_ << event.dump() << std::endl;
  }

 private:
  std::ofstream out_;
};

// Copies mpirun's stderr to ours as it comes, and picks out of it what names a failure: Open
// MPI's line for a rank that died on a signal, and the first error a rank printed.
class StderrScan {
 public:
  explicit StderrScan(int fd) : thread_([this, fd] { run(fd); }) {}
  ~StderrScan() {
    if (thread_.joinable()) finish();
  }
  struct Found {
    int signaled_rank = -1, signal = 0;
    std::string first_error;
  };
  // What it has seen so far.
  Found found() {
    std::lock_guard<std::mutex> lock(mu_);
    return found_;
  }
  // Once mpirun has exited: reads its stderr to the end, or for at most 2 s more (a process
  // it left behind, out of reach, may hold the pipe open).
  Found finish() {
    closing_ = Clock::now() + std::chrono::seconds(2);
    closing_set_ = true;
    thread_.join();
    return found_;
  }

 private:
  void run(int fd) {
    char buf[4096];
    std::string line;
    for (;;) {
      if (closing_set_ && Clock::now() > closing_) return;
      pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, 100) == 0) continue;
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      [[maybe_unused]] ssize_t w = ::write(2, buf, size_t(n));
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] != '\n' && buf[i] != '\r') {
          line += buf[i];
          continue;
        }
        scan(line);
        line.clear();
      }
    }
  }
  // "mpirun noticed that process rank 1 with PID 4242 on node host-b exited on signal 9 (Killed)."
  void scan(const std::string& line) {
    std::lock_guard<std::mutex> lock(mu_);
    if (const size_t r = line.find("process rank "), s = line.find("exited on signal ");
        r != line.npos && s != line.npos && found_.signaled_rank < 0) {
      found_.signaled_rank = std::atoi(line.c_str() + r + 13);
      found_.signal = std::atoi(line.c_str() + s + 17);
    }
    if (const size_t e = line.find("strand: "); e != line.npos && found_.first_error.empty())
      found_.first_error = line.substr(e + 8);
  }
  std::mutex mu_;
  Found found_;
  std::atomic<bool> closing_set_{false};
  Clock::time_point closing_;
  std::thread thread_;
};

// SIGINT and SIGTERM (a Ctrl-C, a scheduler ending the launch) as a file descriptor: the
// launcher then stops the job it runs (in a process group of its own, mpirun would not see
// them) before it ends. Blocks them for this thread and the threads it starts.
class SignalWatch {
 public:
  SignalWatch() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &set_, &old_);
    fd_ = ::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK);
    STRAND_CHECK(fd_ >= 0, Io, std::string("cannot watch for signals: ") + std::strerror(errno), kWhere);
  }
  ~SignalWatch() {
    ::close(fd_);
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SignalWatch(const SignalWatch&) = delete;
  SignalWatch& operator=(const SignalWatch&) = delete;
  // The signal that came, if one did.
  int pending() const {
    signalfd_siginfo info{};
    return ::read(fd_, &info, sizeof info) == sizeof info ? int(info.ssi_signo) : 0;
  }

 private:
  sigset_t set_, old_;
  int fd_ = -1;
};

struct Discovered {
  std::vector<HostSlots> up;         // discovered, not cooling down, probed when due
  std::vector<std::string> back;     // cooled down and answering: no longer left out
  std::vector<std::string> refused;  // cooled down and not answering: left out again
  std::string error;                 // the discovery script failed (then `up` is empty)
};

class Launcher {
 public:
  Launcher(const LaunchConfig& c, const std::function<void(const std::string&)>& log)
      : c_(c), log_(log), events_(c.events) {}
  void run();

 private:
  struct Failure {
    std::string cause;
    std::string host;  // where it happened, when known: left out for the cooldown
  };
  struct RankSeen {
    job::Beat beat;
    std::string from;
    Clock::time_point last;
    std::optional<Clock::time_point> died;  // its lifeline closed without a goodbye
  };
  enum class End { Finished, Failed, Grow };

  Discovered discover(std::map<std::string, Clock::time_point> cooling) const;
  void apply(const Discovered& d);
  std::vector<HostSlots> wait_for_hosts();
  End attempt(const std::vector<HostSlots>& hosts, Failure& failure, std::vector<HostSlots>& grow_to);
  bool probe(const std::string& host) const;
  static const RankSeen* first_death(const std::map<int, RankSeen>& seen);
  static std::string died(const RankSeen& r, const std::string& then);
  std::string host_of(const RankSeen& r, const std::vector<HostSlots>& hosts) const;
  int64_t checkpoint_step(std::optional<std::filesystem::path>& path) const;

  const LaunchConfig& c_;
  SignalWatch signals_;
  std::function<void(const std::string&)> log_;
  EventLog events_;
  std::map<std::string, Clock::time_point> cooling_;  // host -> when it may be probed again
  std::optional<job::HeartbeatReceiver> receiver_;
  std::string beat_address_;
  int number_ = 0;         // attempts started
  int64_t last_step_ = 0;  // rank 0's progress in the last attempt (global steps done)
  int64_t resumed_step_ = 0;
};

// The rank whose process died first, if it died before any rank chose to exit (a rank that
// exits on an error says so, and mpirun then ends the others: those deaths follow).
const Launcher::RankSeen* Launcher::first_death(const std::map<int, RankSeen>& seen) {
  const RankSeen* first = nullptr;
  std::optional<Clock::time_point> first_exit;
  for (const auto& [rank, r] : seen) {
    if (r.died && (!first || *r.died < *first->died)) first = &r;
    if (r.beat.leaving && (!first_exit || r.last < *first_exit)) first_exit = r.last;
  }
  return first && (!first_exit || *first->died < *first_exit) ? first : nullptr;
}

std::string Launcher::died(const RankSeen& r, const std::string& then) {
  return r.beat.describe() + " died: its process ended abruptly (killed or crashed)" +
         (then.empty() ? "" : "; then " + then);
}

bool Launcher::probe(const std::string& host) const {
  std::vector<std::string> argv{c_.mpirun, "-np", "1", "-H", host + ":1"};
  argv.insert(argv.end(), c_.mpirun_args.begin(), c_.mpirun_args.end());
  argv.push_back("true");
  const Ran r = run_for(argv, 15);
  return r.status && succeeded(*r.status);
}

Discovered Launcher::discover(std::map<std::string, Clock::time_point> cooling) const {
  Discovered d;
  std::vector<HostSlots> all = c_.hosts;
  if (!c_.discovery_script.empty()) {
    const Ran r = run_for({"/bin/sh", "-c", c_.discovery_script}, 30);
    if (!r.status || !succeeded(*r.status)) {
      d.error = "the host discovery script " +
                (r.status ? describe_status(*r.status) : std::string("did not end within 30 s"));
      return d;
    }
    try {
      all = parse_hosts(r.out, "the host discovery script's output");
    } catch (const Error& e) {
      d.error = e.what();
      return d;
    }
  }
  for (const HostSlots& h : all) {
    const auto it = cooling.find(h.host);
    if (it != cooling.end() && Clock::now() < it->second) continue;
    if (it != cooling.end()) {
      if (!probe(h.host)) {
        d.refused.push_back(h.host);
        continue;
      }
      d.back.push_back(h.host);
    }
    d.up.push_back(h);
  }
  return d;
}

void Launcher::apply(const Discovered& d) {
  for (const std::string& h : d.back) {
    cooling_.erase(h);
    log_("host " + h + " answers again: it may be taken in");
    events_.write({{"event", "host_back"}, {"host", h}});
  }
  for (const std::string& h : d.refused) {
    cooling_[h] = Clock::now() + seconds(c_.host_cooldown_s);
    log_("host " + h + " does not answer: left out for another " + std::to_string(int(c_.host_cooldown_s)) +
         " s");
  }
}

std::vector<HostSlots> Launcher::wait_for_hosts() {
  const auto t0 = Clock::now();
  std::string last;
  for (;;) {
    const Discovered d = discover(cooling_);
    apply(d);
    const int cap = c_.max_ranks > 0 ? c_.max_ranks : total_slots(d.up);
    std::vector<HostSlots> hosts = take_ranks(d.up, cap);
    if (d.error.empty() && total_slots(hosts) >= c_.min_ranks) return hosts;
    const std::string now = d.error.empty()
                                ? std::to_string(total_slots(d.up)) + " slot(s) up (" + to_string(d.up) +
                                      "), --min-ranks is " + std::to_string(c_.min_ranks)
                                : d.error;
    STRAND_CHECK(
        since(t0) < c_.wait_for_hosts_s, Timeout,
        "gave up after " + std::to_string(int(c_.wait_for_hosts_s)) + " s (--wait-for-hosts): " + now,
        kWhere);
    if (now != last) log_("waiting for hosts: " + now);
    last = now;
    const auto slept = Clock::now();
    while (since(slept) < c_.discovery_interval_s) {
      if (const int sig = signals_.pending())
        throw Error(ErrorKind::Io,
                    std::string("interrupted by ") + strsignal(sig) + " while waiting for hosts", kWhere);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

std::string Launcher::host_of(const RankSeen& r, const std::vector<HostSlots>& hosts) const {
  for (const HostSlots& h : hosts) {
    if (h.host == r.beat.host || h.host == r.from) return h.host;
    try {
      if (job::resolve_ipv4(h.host) == r.from) return h.host;
    } catch (const Error&) {
      // A name that no longer resolves is not where the beat came from.
    }
  }
  return {};
}

int64_t Launcher::checkpoint_step(std::optional<std::filesystem::path>& path) const {
  path = io::latest_checkpoint(c_.checkpoint_dir);
  return path ? io::load_checkpoint(*path).global_step : 0;
}

Launcher::End Launcher::attempt(const std::vector<HostSlots>& hosts, Failure& failure,
                                std::vector<HostSlots>& grow_to) {
  ++number_;
  const int ranks = total_slots(hosts);
  std::random_device rd;
  const job::HeartbeatTarget target{.address = beat_address_,
                                    .port = receiver_->port(),
                                    .period_s = c_.heartbeat_period_s,
                                    .job = (uint64_t(rd()) << 32 | rd()) | 1};
  std::vector<std::string> argv{c_.mpirun,        "-np", std::to_string(ranks), "-H",
                                to_string(hosts), "-x",  job::kHeartbeatEnv};
  argv.insert(argv.end(), c_.mpirun_args.begin(), c_.mpirun_args.end());
  argv.insert(argv.end(), c_.command.begin(), c_.command.end());
  if (number_ > 1 && !has_option(c_.command, "--resume")) argv.push_back("--resume");
  log_("attempt " + std::to_string(number_) + ": " + std::to_string(ranks) + " rank(s) on " +
       to_string(hosts));
  events_.write({{"event", "start"},
                 {"attempt", number_},
                 {"ranks", ranks},
                 {"hosts", to_string(hosts)},
                 {"resume_step", resumed_step_}});

  const auto started = Clock::now();
  Child mpirun(argv, {std::string(job::kHeartbeatEnv) + "=" + target.str()}, true);
  std::optional<StderrScan> scan(std::in_place, mpirun.stderr_fd());
  std::map<int, RankSeen> seen;
  bool training = false;
  auto next_discovery = Clock::now() + seconds(c_.discovery_interval_s);
  std::future<Discovered> discovering;
  std::optional<std::optional<std::filesystem::path>> grow_after;  // growing: the checkpoint to pass
  // A parameter-server job grows without a restart: workers started on the new slots join it at
  // its next step (strand train --ps-join), under an mpirun of their own.
  const bool ps_job = option_value(c_.command, "--strategy") == "ps";
  std::optional<Child> joiners;
  std::optional<StderrScan> join_scan;
  std::vector<HostSlots> job_hosts = hosts;  // with the joiners'
  int joining = 0;                           // their ranks: ranks..ranks+joining-1
  Clock::time_point joiners_started;
  const double silent_limit = 2 * c_.heartbeat_period_s;
  last_step_ = resumed_step_;

  const auto fail = [&](std::string cause, std::string host) {
    failure = {std::move(cause), std::move(host)};
    return End::Failed;
  };
  // The rank mpirun saw die on a signal, named from its last beat.
  const auto killed = [&](const RankSeen& r, int signal) {
    return fail(r.beat.describe() + " was killed by signal " + std::to_string(signal) + " (" +
                    strsignal(signal) + ")",
                host_of(r, job_hosts));
  };
  const auto stop_all = [&] {
    if (joiners) {
      joiners->stop(kStopGrace);
      join_scan->finish();
      joiners.reset();
    }
    mpirun.stop(kStopGrace);
    scan->finish();
  };
  for (;;) {
    if (auto got = receiver_->receive(std::chrono::milliseconds(100));
        got && got->died && got->beat.job == target.job) {
      RankSeen& r =
          seen.try_emplace(got->beat.rank, RankSeen{got->beat, got->from, Clock::now(), {}}).first->second;
      r.died = Clock::now();
    } else if (got && got->beat.job == target.job) {
      RankSeen& r = seen[got->beat.rank];
      r = {got->beat, got->from, Clock::now(), r.died};
      if (r.beat.rank == 0) last_step_ = std::max(last_step_, r.beat.activity.global_step);
      if (!training && r.beat.rank == 0 && r.beat.activity.global_step > resumed_step_) {
        training = true;
        char after[64];
        std::snprintf(after, sizeof after, ", %.1f s after the start", since(started));
        log_("training: rank 0 is at global step " + std::to_string(r.beat.activity.global_step + 1) + after);
        events_.write({{"event", "training"}, {"attempt", number_}, {"step", r.beat.activity.global_step}});
      }
    }
    if (const int sig = signals_.pending()) {
      log_(std::string("got ") + strsignal(sig) + ": stopping the job");
      stop_all();
      events_.write({{"event", "interrupted"}, {"attempt", number_}, {"signal", sig}});
      throw Error(ErrorKind::Io, std::string("interrupted by ") + strsignal(sig) + " (the job was stopped)",
                  kWhere);
    }
    if (joiners) {
      if (const std::optional<int> st = joiners->poll()) {
        const StderrScan::Found f = join_scan->finish();
        joiners.reset();
        if (!succeeded(*st)) {
          events_.write({{"event", "detected"}, {"attempt", number_}, {"rank", f.signaled_rank}});
          mpirun.stop(kStopGrace);
          scan->finish();
          return fail("the workers joining on " + to_string(slots_beyond(job_hosts, hosts)) + ": " +
                          (f.first_error.empty() ? "mpirun " + describe_status(*st) : f.first_error),
                      slots_beyond(job_hosts, hosts).front().host);
        }
      }
    }
    if (const std::optional<int> st = mpirun.poll()) {
      const StderrScan::Found f = scan->finish();
      if (succeeded(*st)) {
        // The servers waited for the joiners to leave: theirs is ending too.
        if (joiners && !joiners->poll()) joiners->stop(kStopGrace);
        return End::Finished;
      }
      const RankSeen* dead = first_death(seen);
      events_.write({{"event", "detected"},
                     {"attempt", number_},
                     {"rank", f.signaled_rank >= 0 || !dead ? f.signaled_rank : dead->beat.rank}});
      if (const auto it = seen.find(f.signaled_rank); it != seen.end()) return killed(it->second, f.signal);
      if (f.signaled_rank >= 0)
        return fail(
            "rank " + std::to_string(f.signaled_rank) + " was killed by signal " + std::to_string(f.signal),
            "");
      // mpirun named no rank (it may itself have crashed as the job failed): a rank whose
      // process died before any rank chose to exit is the failure.
      if (dead) return fail(died(*dead, "mpirun " + describe_status(*st)), host_of(*dead, job_hosts));
      if (!f.first_error.empty()) return fail(f.first_error, "");
      return fail("mpirun " + describe_status(*st), "");
    }
    // A rank that died is the failure once mpirun has had a moment to name its signal; else the
    // rank silent the longest is: when mpirun ends a job, its other ranks fall silent too, later.
    const RankSeen* silent = first_death(seen);
    if (silent && since(*silent->died) < std::min(1.0, c_.heartbeat_period_s)) silent = nullptr;
    for (int r = 0; r < ranks + joining; ++r) {
      const auto it = seen.find(r);
      if (it == seen.end()) {
        if (since(r < ranks ? started : joiners_started) > c_.start_timeout_s) {
          stop_all();
          return fail("rank " + std::to_string(r) + " sent no heartbeat within " +
                          std::to_string(int(c_.start_timeout_s)) + " s of the start (--start-timeout)",
                      "");
        }
        continue;
      }
      if (!it->second.beat.leaving && since(it->second.last) > silent_limit &&
          (!silent || (!silent->died && it->second.last < silent->last)))
        silent = &it->second;
    }
    if (silent) {
      events_.write({{"event", "detected"}, {"attempt", number_}, {"rank", silent->beat.rank}});
      char what[64];
      std::snprintf(what, sizeof what, " sent no heartbeat for %.1f s", since(silent->last));
      const std::string cause = silent->died ? died(*silent, "")
                                             : silent->beat.describe() + what +
                                                   " (stopped, hung or cut off; a heartbeat is due every " +
                                                   compact_seconds(c_.heartbeat_period_s) + ")";
      // mpirun may have seen that a rank died rather than hung, also while it ends the job (a
      // rank that died on anything but the stop's SIGTERM died first).
      const StderrScan::Found before = scan->found();
      stop_all();
      const StderrScan::Found after = scan->found();
      const StderrScan::Found f = before.signaled_rank >= 0 || after.signal == SIGTERM ? before : after;
      if (const auto it = seen.find(f.signaled_rank); it != seen.end()) return killed(it->second, f.signal);
      return fail(cause, host_of(*silent, job_hosts));
    }
    if (!discovering.valid() && Clock::now() >= next_discovery && !grow_after)
      discovering = std::async(std::launch::async, [this, cooling = cooling_] { return discover(cooling); });
    if (discovering.valid() && discovering.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      const Discovered d = discovering.get();
      apply(d);
      next_discovery = Clock::now() + seconds(c_.discovery_interval_s);
      const int cap = c_.max_ranks > 0 ? c_.max_ranks : total_slots(d.up);
      std::vector<HostSlots> more = take_ranks(d.up, cap);
      if (d.error.empty() && ps_job && !joiners && joining == 0 && total_slots(more) > ranks) {
        const std::vector<HostSlots> extra = slots_beyond(more, hosts);
        joining = total_slots(extra);
        std::vector<std::string> join_argv{c_.mpirun,        "-np", std::to_string(joining), "-H",
                                           to_string(extra), "-x",  job::kHeartbeatEnv};
        join_argv.insert(join_argv.end(), c_.mpirun_args.begin(), c_.mpirun_args.end());
        join_argv.insert(join_argv.end(), c_.command.begin(), c_.command.end());
        join_argv.push_back("--ps-join");
        log_(std::to_string(joining) + " more worker(s) can run (" + to_string(extra) +
             "): they join the job at its next step (--ps-join)");
        events_.write(
            {{"event", "join"}, {"attempt", number_}, {"ranks", joining}, {"hosts", to_string(extra)}});
        joiners.emplace(join_argv,
                        std::vector<std::string>{std::string(job::kHeartbeatEnv) + "=" + target.str()}, true);
        join_scan.emplace(joiners->stderr_fd());
        joiners_started = Clock::now();
        job_hosts = more;
      } else if (d.error.empty() && !ps_job && total_slots(more) > ranks) {
        grow_to = more;
        grow_after = io::latest_checkpoint(c_.checkpoint_dir);
        log_(std::to_string(total_slots(more) - ranks) + " more rank(s) can run (" + to_string(more) +
             "): growing at the next checkpoint");
      }
    }
    if (grow_after && io::latest_checkpoint(c_.checkpoint_dir) != *grow_after) {
      stop_all();
      return End::Grow;
    }
  }
}

void Launcher::run() {
  validate(c_);
  if (!has_option(c_.command, "--checkpoint-every") && !has_option(c_.command, "--checkpoint-every-seconds"))
    log_(
        "the command checkpoints at epoch ends only: a restart repeats up to an epoch "
        "(add --checkpoint-every-seconds 60)");
  std::vector<HostSlots> hosts = wait_for_hosts();
  beat_address_ = job::ps_bind_address(c_.bind, hosts.front().host);
  receiver_.emplace(beat_address_);
  log_("heartbeats to " + beat_address_ + ":" + std::to_string(receiver_->port()) + ", every " +
       compact_seconds(c_.heartbeat_period_s) + "; checkpoints in " + c_.checkpoint_dir.string());
  int restarts = 0;
  for (;;) {
    Failure failure;
    std::vector<HostSlots> grow_to;
    const End end = attempt(hosts, failure, grow_to);
    if (end == End::Finished) {
      log_("the job finished (attempt " + std::to_string(number_) + ", " + std::to_string(restarts) +
           " restart(s))");
      events_.write({{"event", "finished"}, {"attempt", number_}, {"restarts", restarts}});
      return;
    }
    std::optional<std::filesystem::path> from;
    const int64_t step = checkpoint_step(from);
    const int64_t lost = std::max<int64_t>(0, last_step_ - step);
    const std::string resume =
        from ? "resuming from " + from->filename().string() + " (global step " + std::to_string(step) + ")"
             : "starting afresh (no checkpoint yet)";
    if (end == End::Grow) {
      log_("growing: hosts " + to_string(hosts) + " -> " + to_string(grow_to) + "; " + resume + ", " +
           std::to_string(lost) + " step(s) lost");
      events_.write({{"event", "grow"},
                     {"hosts_before", to_string(hosts)},
                     {"hosts_after", to_string(grow_to)},
                     {"resume_step", step},
                     {"steps_lost", lost}});
      hosts = grow_to;
      resumed_step_ = step;
      continue;
    }
    if (!failure.host.empty()) cooling_[failure.host] = Clock::now() + seconds(c_.host_cooldown_s);
    events_.write({{"event", "failure"},
                   {"attempt", number_},
                   {"cause", failure.cause},
                   {"host", failure.host},
                   {"last_step", last_step_},
                   {"resume_step", step},
                   {"steps_lost", lost}});
    if (restarts >= c_.max_restarts) {
      events_.write({{"event", "gave_up"}, {"cause", failure.cause}});
      throw Error(ErrorKind::Io,
                  "the job failed and no restarts are left (--max-restarts " +
                      std::to_string(c_.max_restarts) + "): " + failure.cause,
                  kWhere);
    }
    ++restarts;
    const std::vector<HostSlots> before = hosts;
    hosts = wait_for_hosts();
    log_("restart " + std::to_string(restarts) + " of at most " + std::to_string(c_.max_restarts) + ": " +
         failure.cause +
         (failure.host.empty() ? ""
                               : "; host " + failure.host + " left out for " +
                                     std::to_string(int(c_.host_cooldown_s)) + " s") +
         "; hosts " + to_string(before) + " -> " + to_string(hosts) + "; " + resume + ", " +
         std::to_string(lost) + " step(s) lost");
    events_.write({{"event", "restart"},
                   {"restart", restarts},
                   {"hosts_before", to_string(before)},
                   {"hosts_after", to_string(hosts)}});
    resumed_step_ = step;
  }
}

}  // namespace

void validate(const LaunchConfig& c) {
  STRAND_CHECK(!c.command.empty(), Usage, "no training command (after --)", kWhere);
  STRAND_CHECK(c.hosts.empty() != c.discovery_script.empty(), Usage,
               "give the hosts either as --hosts or as --host-discovery-script (one of them)", kWhere);
  STRAND_CHECK(c.min_ranks >= 1, Usage, "--min-ranks must be at least 1", kWhere);
  STRAND_CHECK(
      c.max_ranks == 0 || c.max_ranks >= c.min_ranks, Usage,
      "--max-ranks " + std::to_string(c.max_ranks) + " is below --min-ranks " + std::to_string(c.min_ranks),
      kWhere);
  STRAND_CHECK(c.max_restarts >= 0, Usage, "--max-restarts must be 0 or more", kWhere);
  STRAND_CHECK(c.heartbeat_period_s > 0 && c.start_timeout_s > 0 && c.discovery_interval_s > 0 &&
                   c.wait_for_hosts_s >= 0 && c.host_cooldown_s >= 0,
               Usage, "the periods and timeouts must be positive", kWhere);
  STRAND_CHECK(!c.checkpoint_dir.empty(), Usage, "no checkpoint directory", kWhere);
}

std::filesystem::path checkpoint_dir_of(const std::vector<std::string>& command, const char* sm_model_dir) {
  if (auto d = option_value(command, "--checkpoint-dir")) return *d;
  if (auto d = option_value(command, "--model-dir")) return std::filesystem::path(*d) / "checkpoints";
  if (sm_model_dir && *sm_model_dir) return std::filesystem::path(sm_model_dir) / "checkpoints";
  throw Error(ErrorKind::Usage,
              "the training command has no --model-dir or --checkpoint-dir: restarts need its checkpoints",
              kWhere);
}

void launch(const LaunchConfig& config, const std::function<void(const std::string&)>& log) {
  Launcher(config, log).run();
}

}  // namespace strand::elastic
