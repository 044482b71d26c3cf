#include <strand/job/heartbeat.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <vector>

#include <strand/core/error.hpp>
#include <strand/job/launch.hpp>

namespace strand::job {

namespace {

constexpr std::string_view kMagic = "strand-beat/1";
constexpr std::string_view kBye = "bye";  // a lifeline's last line: the rank exits on purpose

std::string errno_text() { return std::strerror(errno); }

template <class T>
bool parse_number(std::string_view s, T& out, int base = 10) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

std::optional<Phase> parse_phase(std::string_view name) {
  for (int p = 0; p <= int(Phase::Finishing); ++p)
    if (name == to_string(Phase(p))) return Phase(p);
  return std::nullopt;
}

sockaddr_in ipv4(const std::string& address, int port, const char* where) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  STRAND_CHECK(inet_pton(AF_INET, address.c_str(), &a.sin_addr) == 1, Usage,
               "'" + address + "' is not an IPv4 address", where);
  return a;
}

std::string ip_text(const sockaddr_in& a) {
  char ip[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
  return ip;
}

void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the launcher is gone: nothing to tell
    s.remove_prefix(size_t(n));
  }
}

}  // namespace

std::string HeartbeatTarget::str() const {
  char job_hex[17];
  std::snprintf(job_hex, sizeof job_hex, "%llx", (unsigned long long)job);
  char period[32];
  std::snprintf(period, sizeof period, "%g", period_s);
  return address + ":" + std::to_string(port) + "/" + period + "/" + job_hex;
}

HeartbeatTarget parse_heartbeat_target(std::string_view text) {
  const auto bad = [&](const std::string& what) {
    return Error(ErrorKind::Usage,
                 std::string(kHeartbeatEnv) + "='" + std::string(text) + "': " + what +
                     " (want ADDRESS:PORT/PERIOD_SECONDS/JOB_ID, as strand launch sets it)",
                 "environment");
  };
  const size_t slash1 = text.find('/'), colon = text.rfind(':', slash1);
  const size_t slash2 = slash1 == text.npos ? text.npos : text.find('/', slash1 + 1);
  if (colon == text.npos || slash2 == text.npos) throw bad("malformed");
  HeartbeatTarget t;
  t.address = std::string(text.substr(0, colon));
  sockaddr_in probe{};
  if (inet_pton(AF_INET, t.address.c_str(), &probe.sin_addr) != 1) throw bad("not an IPv4 address");
  if (!parse_number(text.substr(colon + 1, slash1 - colon - 1), t.port) || t.port <= 0 || t.port > 65535)
    throw bad("the port is not 1..65535");
  const std::string period(text.substr(slash1 + 1, slash2 - slash1 - 1));
  char* end = nullptr;
  t.period_s = std::strtod(period.c_str(), &end);
  if (period.empty() || *end != '\0' || !(t.period_s > 0 && t.period_s <= 3600))
    throw bad("the period is not a number of seconds in (0, 3600]");
  if (!parse_number(text.substr(slash2 + 1), t.job, 16)) throw bad("the job id is not hexadecimal");
  return t;
}

std::string Beat::encode() const {
  char line[512];
  std::snprintf(
      line, sizeof line,
      "%s job=%llx rank=%d world=%d pid=%d host=%s phase=%s epoch=%lld step=%lld steps=%lld global=%lld "
      "bucket=%lld leaving=%d",
      kMagic.data(), (unsigned long long)job, rank, world, pid, host.empty() ? "-" : host.c_str(),
      to_string(activity.phase), (long long)activity.epoch, (long long)activity.step_in_epoch,
      (long long)activity.steps_per_epoch, (long long)activity.global_step, (long long)activity.bucket,
      leaving ? 1 : 0);
  return line;
}

Beat decode_beat(std::string_view datagram) {
  const auto bad = [&](const std::string& what) {
    return Error(ErrorKind::Format, "not a heartbeat: " + what, "heartbeat");
  };
  std::vector<std::string_view> words;
  for (size_t i = 0; i <= datagram.size();) {
    const size_t j = std::min(datagram.find(' ', i), datagram.size());
    if (j > i) words.push_back(datagram.substr(i, j - i));
    i = j + 1;
  }
  if (words.empty() || words[0] != kMagic) throw bad("it does not begin with '" + std::string(kMagic) + "'");
  std::map<std::string_view, std::string_view> fields;
  for (size_t i = 1; i < words.size(); ++i) {
    const size_t eq = words[i].find('=');
    if (eq == std::string_view::npos) throw bad("'" + std::string(words[i]) + "' is not KEY=VALUE");
    fields[words[i].substr(0, eq)] = words[i].substr(eq + 1);
  }
  const auto field = [&](std::string_view key) {
    const auto it = fields.find(key);
    if (it == fields.end()) throw bad("no " + std::string(key) + "=");
    return it->second;
  };
  const auto number = [&](std::string_view key, auto& out, int base = 10) {
    if (!parse_number(field(key), out, base)) throw bad(std::string(key) + "= is not a number");
  };
  Beat b;
  number("job", b.job, 16);
  number("rank", b.rank);
  number("world", b.world);
  number("pid", b.pid);
  if (b.world < 1 || b.rank < 0 || b.rank >= b.world) throw bad("rank outside the world");
  b.host = std::string(field("host"));
  const std::optional<Phase> phase = parse_phase(field("phase"));
  if (!phase) throw bad("unknown phase '" + std::string(field("phase")) + "'");
  b.activity.phase = *phase;
  number("epoch", b.activity.epoch);
  number("step", b.activity.step_in_epoch);
  number("steps", b.activity.steps_per_epoch);
  number("global", b.activity.global_step);
  number("bucket", b.activity.bucket);
  int leaving = 0;
  number("leaving", leaving);
  if (leaving != 0 && leaving != 1) throw bad("leaving= is not 0 or 1");
  b.leaving = leaving == 1;
  return b;
}

std::string Beat::describe() const {
  const Activity::Snapshot& a = activity;
  std::string s = "rank " + std::to_string(rank) + " (" + host + ", pid " + std::to_string(pid) + ")";
  if (a.steps_per_epoch == 0) return s + " " + to_string(a.phase);
  s += " at epoch " + std::to_string(a.epoch + 1) + " step " + std::to_string(a.step_in_epoch + 1) + "/" +
       std::to_string(a.steps_per_epoch) + " (global step " + std::to_string(a.global_step + 1) + "), " +
       to_string(a.phase);
  if (a.bucket >= 0) s += " bucket " + std::to_string(a.bucket);
  return s;
}

HeartbeatSender::HeartbeatSender(const HeartbeatTarget& target, const Identity& id, const Activity& activity)
    : target_(target), id_(id), activity_(activity) {
  fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  STRAND_CHECK(fd_ >= 0, Io, "cannot open a heartbeat socket: " + errno_text(), id.where());
  const sockaddr_in to = ipv4(target.address, target.port, kHeartbeatEnv);
  if (::connect(fd_, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
    const std::string why = errno_text();
    ::close(fd_);
    throw Error(ErrorKind::Io, "cannot reach the heartbeat address " + target.str() + ": " + why, id.where());
  }
  // Without a lifeline (-1) the launcher still has the beats.
  std::string no_lifeline;
  lifeline_fd_ = tcp_connect(target.address, target.port, 3, no_lifeline);
  if (lifeline_fd_ >= 0) write_all(lifeline_fd_, beat(false).encode() + "\n");
  // A beat every period, and one at once when the rank's first step is done: the launcher
  // learns without a period's delay that a restarted job trains again.
  thread_ = std::thread([this] {
    using Clock = std::chrono::steady_clock;
    const auto period =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(target_.period_s));
    const auto tick = std::min<Clock::duration>(period, std::chrono::milliseconds(100));
    std::optional<int64_t> first_step;  // the global step of its first step
    bool stepped = false;
    auto next = Clock::now();
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      const Activity::Snapshot a = activity_.read();
      if (!first_step && a.phase != Phase::Starting) first_step = a.global_step;
      const bool first_done = !stepped && first_step && a.global_step > *first_step;
      if (first_done || Clock::now() >= next) {
        stepped = stepped || first_done;
        send(false);
        next = Clock::now() + period;
      }
      cv_.wait_for(lock, tick, [&] { return stop_; });
    }
  });
}

HeartbeatSender::~HeartbeatSender() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  send(true);
  ::close(fd_);
  if (lifeline_fd_ >= 0) {
    write_all(lifeline_fd_, std::string(kBye) + "\n");
    ::close(lifeline_fd_);
  }
}

Beat HeartbeatSender::beat(bool leaving) const {
  return {.job = target_.job,
          .rank = id_.rank,
          .world = id_.world,
          .pid = int(::getpid()),
          .host = id_.host,
          .leaving = leaving,
          .activity = activity_.read()};
}

// A beat that cannot be sent (the network is down) is lost, as a datagram would be: the
// launcher's deadline is what notices.
void HeartbeatSender::send(bool leaving) {
  const std::string d = beat(leaving).encode();
  [[maybe_unused]] const ssize_t n = ::send(fd_, d.data(), d.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

HeartbeatReceiver::HeartbeatReceiver(const std::string& address, int port) {
  const auto fail = [&](const std::string& what) {
    const std::string why = errno_text();
    if (fd_ >= 0) ::close(fd_);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    return Error(
        ErrorKind::Io,
        "cannot listen for heartbeats on " + address + ":" + std::to_string(port) + " (" + what + "): " + why,
        "strand launch");
  };
  // The TCP port first, then UDP on the same number; with port 0, another try while that
  // number is taken for UDP.
  for (int attempt = 0;; ++attempt) {
    fd_ = listen_fd_ = -1;
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw fail("tcp");
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a = ipv4(address, port, "strand launch");
    if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 256) != 0)
      throw fail("tcp");
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw fail("udp");
    if (::bind(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) {
      port_ = ntohs(a.sin_port);
      return;
    }
    if (port != 0 || errno != EADDRINUSE || attempt == 50) throw fail("udp");
    ::close(fd_);
    ::close(listen_fd_);
  }
}

HeartbeatReceiver::~HeartbeatReceiver() {
  ::close(fd_);
  ::close(listen_fd_);
  for (const Lifeline& l : lifelines_) ::close(l.fd);
}

bool HeartbeatReceiver::read_lifeline(Lifeline& l, std::optional<Received>& died) {
  char buf[1024];
  const ssize_t n = ::recv(l.fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
  if (n <= 0) {  // closed (or reset: the process is gone either way)
    if (l.hello && !l.bye) died = Received{*l.hello, l.from, true};
    return false;
  }
  l.pending.append(buf, size_t(n));
  for (size_t nl; (nl = l.pending.find('\n')) != std::string::npos; l.pending.erase(0, nl + 1)) {
    const std::string_view line(l.pending.data(), nl);
    if (!l.hello) {
      try {
        l.hello = decode_beat(line);
      } catch (const Error&) {
        return false;  // not a rank of ours
      }
    } else if (line == kBye) {
      l.bye = true;
    }
  }
  return l.pending.size() <= 4096;
}

std::optional<HeartbeatReceiver::Received> HeartbeatReceiver::receive(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    // [lifelines..., listener, beats]
    std::vector<pollfd> p;
    for (const Lifeline& l : lifelines_) p.push_back({.fd = l.fd, .events = POLLIN, .revents = 0});
    p.push_back({.fd = listen_fd_, .events = POLLIN, .revents = 0});
    p.push_back({.fd = fd_, .events = POLLIN, .revents = 0});
    const int ready = ::poll(p.data(), p.size(), int(std::max<int64_t>(0, left.count())));
    if (ready < 0 && errno == EINTR) continue;
    STRAND_CHECK(ready >= 0, Io, "waiting for heartbeats: " + errno_text(), "strand launch");
    if (ready == 0) return std::nullopt;
    std::optional<Received> died;
    for (size_t i = lifelines_.size(); i-- > 0;) {
      if (!p[i].revents || read_lifeline(lifelines_[i], died)) continue;
      ::close(lifelines_[i].fd);
      lifelines_.erase(lifelines_.begin() + std::ptrdiff_t(i));
      if (died) return died;
    }
    if (p[p.size() - 2].revents) {
      sockaddr_in from{};
      socklen_t len = sizeof from;
      const int c = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&from), &len, SOCK_CLOEXEC);
      if (c >= 0)
        lifelines_.push_back({.fd = c, .from = ip_text(from), .pending = {}, .hello = {}, .bye = false});
    }
    if (!p.back().revents) continue;
    char buf[1024];
    sockaddr_in from{};
    socklen_t len = sizeof from;
    const ssize_t n = ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) continue;
    try {
      return Received{decode_beat(std::string_view(buf, size_t(n))), ip_text(from), false};
    } catch (const Error&) {
      // Something else on the port: not ours to act on.
    }
  }
}

}  // namespace strand::job
