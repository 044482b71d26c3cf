// Heartbeats: each rank of a job started by `strand launch` (elastic/launcher.hpp) sends, on a
// side channel (UDP), a beat every period saying who it is and what it is doing (its Activity:
// step, phase, bucket), so the launcher tells a rank that hangs (stopped, deadlocked in the
// kernel, cut off) from a slow one within two periods, and names it with its host and step.
// Beside the beats, each rank holds a TCP connection to the launcher (its lifeline) and says
// goodbye on it as it exits: a connection that closes without one is a process that died (killed,
// crashed), known at once and in order, even when mpirun itself fails before naming it.
// The launcher hands its ranks the channel in the environment (kHeartbeatEnv); a job started
// without one sends nothing.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <strand/core/context.hpp>
#include <strand/train/activity.hpp>

namespace strand::job {

// "ADDRESS:PORT/PERIOD_SECONDS/JOB_ID" (JOB_ID: hex, the launch and its attempt, so beats of an
// earlier attempt are told apart).
inline constexpr const char* kHeartbeatEnv = "STRAND_HEARTBEAT";

struct HeartbeatTarget {
  std::string address;  // IPv4
  int port = 0;
  double period_s = 2;
  uint64_t job = 0;
  std::string str() const;  // the kHeartbeatEnv form
};
// Usage error naming kHeartbeatEnv and what is wrong.
HeartbeatTarget parse_heartbeat_target(std::string_view text);

struct Beat {
  uint64_t job = 0;
  int rank = 0, world = 1;
  int pid = 0;
  std::string host;      // the rank's host name
  bool leaving = false;  // the rank's last beat: it is exiting (for any reason)
  Activity::Snapshot activity;
  std::string encode() const;
  // "rank 1 (host-b, pid 123) at epoch 1 step 40/94 (global step 133), reduce bucket 2"
  std::string describe() const;
};
// Format error naming what is wrong (a datagram from anything else on the port).
Beat decode_beat(std::string_view datagram);

// Sends a beat to `target` every period from a thread of its own, from the moment it is
// constructed until it is destroyed (then one last, leaving beat).
class HeartbeatSender {
 public:
  HeartbeatSender(const HeartbeatTarget& target, const Identity& id, const Activity& activity);
  ~HeartbeatSender();
  HeartbeatSender(const HeartbeatSender&) = delete;
  HeartbeatSender& operator=(const HeartbeatSender&) = delete;

 private:
  void send(bool leaving);
  Beat beat(bool leaving) const;
  HeartbeatTarget target_;
  Identity id_;
  const Activity& activity_;
  int fd_ = -1;
  int lifeline_fd_ = -1;  // -1: the launcher could not be reached over TCP (beats still go)
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// The launcher's end: a UDP socket for the beats and a TCP listener for the lifelines, both on
// `address` and one port (port 0: any port free for both).
class HeartbeatReceiver {
 public:
  explicit HeartbeatReceiver(const std::string& address, int port = 0);
  ~HeartbeatReceiver();
  HeartbeatReceiver(const HeartbeatReceiver&) = delete;
  HeartbeatReceiver& operator=(const HeartbeatReceiver&) = delete;
  int port() const { return port_; }
  // The next beat within `timeout` (datagrams that are not beats are skipped), or the news
  // that a rank's lifeline closed without a goodbye (`died`; `beat` is then the one it sent as
  // it connected); with the sender's IPv4 address.
  struct Received {
    Beat beat;
    std::string from;
    bool died = false;
  };
  std::optional<Received> receive(std::chrono::milliseconds timeout);

 private:
  struct Lifeline {
    int fd = -1;
    std::string from, pending;  // pending: what came after the last newline
    std::optional<Beat> hello;
    bool bye = false;
  };
  // What a lifeline's bytes tell; false once it has closed (then `died` may be set).
  bool read_lifeline(Lifeline& l, std::optional<Received>& died);
  int fd_ = -1, listen_fd_ = -1;
  int port_ = 0;
  std::vector<Lifeline> lifelines_;
};

}  // namespace strand::job
