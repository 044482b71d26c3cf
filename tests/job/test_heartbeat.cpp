// Heartbeats (job/heartbeat.hpp): the environment's target and the datagram parsed strictly,
// and a sender's beats received on loopback with what the rank is doing, ending with a leaving
// beat; a sender whose process dies is reported at once by its lifeline, one that exits is not.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <strand/core/error.hpp>
#include <strand/job/heartbeat.hpp>

namespace strand::job {
namespace {

TEST(HeartbeatTarget, RoundTripsThroughItsText) {
  const HeartbeatTarget t = parse_heartbeat_target("10.77.0.1:4242/0.5/beef");
  EXPECT_EQ(t.address, "10.77.0.1");
  EXPECT_EQ(t.port, 4242);
  EXPECT_DOUBLE_EQ(t.period_s, 0.5);
  EXPECT_EQ(t.job, 0xbeefu);
  EXPECT_EQ(parse_heartbeat_target(t.str()).str(), t.str());
}

TEST(HeartbeatTarget, RefusesMalformedText) {
  for (const char* bad : {"", "10.77.0.1", "10.77.0.1:4242", "10.77.0.1:4242/2", "host:4242/2/ab",
                          "10.77.0.1:0/2/ab", "10.77.0.1:70000/2/ab", "10.77.0.1:4242/0/ab",
                          "10.77.0.1:4242/x/ab", "10.77.0.1:4242/2/xyz", "10.77.0.1:4242/2/"}) {
    try {
      parse_heartbeat_target(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << bad;
      EXPECT_NE(std::string(e.what()).find(kHeartbeatEnv), std::string::npos) << e.what();
    }
  }
}

Beat sample() {
  Beat b{.job = 0xabc, .rank = 2, .world = 4, .pid = 77, .host = "host-c", .leaving = false, .activity = {}};
  b.activity = {.phase = Phase::Reduce,
                .epoch = 1,
                .step_in_epoch = 39,
                .steps_per_epoch = 94,
                .global_step = 133,
                .bucket = 2};
  return b;
}

TEST(Beat, RoundTripsAndDescribesItself) {
  const Beat b = decode_beat(sample().encode());
  EXPECT_EQ(b.encode(), sample().encode());
  EXPECT_EQ(b.describe(), "rank 2 (host-c, pid 77) at epoch 2 step 40/94 (global step 134), reduce bucket 2");
}

TEST(Beat, RefusesWhatIsNotOne) {
  const std::string good = sample().encode();
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  for (const std::string& bad :
       {std::string(""), std::string("hello"), good.substr(0, good.size() / 2),
        replaced("strand-beat/1", "strand-beat/2"), replaced("rank=2", "rank=4"),
        replaced("rank=2", "rank=-1"), replaced("phase=reduce", "phase=dancing"),
        replaced("pid=77", "pid=7x"), replaced("leaving=0", "leaving=2"), replaced(" world=4", ""),
        replaced("job=abc", "job=zz"), replaced("step=39", "step39")}) {
    try {
      decode_beat(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Format) << bad;
    }
  }
}

TEST(Heartbeat, SenderBeatsUntilItLeaves) {
  HeartbeatReceiver rx("127.0.0.1");
  ASSERT_GT(rx.port(), 0);
  Activity activity;
  const HeartbeatTarget target{.address = "127.0.0.1", .port = rx.port(), .period_s = 0.05, .job = 0x5};
  {
    HeartbeatSender tx(target, {.rank = 1, .world = 2, .host = "host-b"}, activity);
    auto first = rx.receive(std::chrono::seconds(5));
    ASSERT_TRUE(first);
    EXPECT_EQ(first->from, "127.0.0.1");
    EXPECT_EQ(first->beat.job, 0x5u);
    EXPECT_EQ(first->beat.rank, 1);
    EXPECT_EQ(first->beat.host, "host-b");
    EXPECT_EQ(first->beat.activity.phase, Phase::Starting);
    EXPECT_FALSE(first->beat.leaving);
    activity.at_step(0, 3, 10, 3);
    activity.enter(Phase::Backward);
    bool seen = false;
    for (int i = 0; i < 100 && !seen; ++i) {
      auto b = rx.receive(std::chrono::seconds(5));
      ASSERT_TRUE(b);
      seen = b->beat.activity.phase == Phase::Backward && b->beat.activity.step_in_epoch == 3;
    }
    EXPECT_TRUE(seen) << "no beat showed the new phase";
  }
  bool left = false;
  for (int i = 0; i < 100 && !left; ++i) {
    auto b = rx.receive(std::chrono::seconds(5));
    ASSERT_TRUE(b);
    left = b->beat.leaving;
  }
  EXPECT_TRUE(left);
  EXPECT_FALSE(rx.receive(std::chrono::milliseconds(200))) << "a beat after the leaving one";
}

// Waits for the next report that is not a plain beat.
std::optional<HeartbeatReceiver::Received> next_death(HeartbeatReceiver& rx,
                                                      std::chrono::milliseconds within) {
  const auto until = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < until)
    if (auto r = rx.receive(std::chrono::milliseconds(50)); r && r->died) return r;
  return std::nullopt;
}

TEST(Heartbeat, ALifelineReportsAProcessThatDied) {
  HeartbeatReceiver rx("127.0.0.1");
  const HeartbeatTarget target{.address = "127.0.0.1", .port = rx.port(), .period_s = 10, .job = 0x9};
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Activity activity;
    auto* tx = new HeartbeatSender(target, {.rank = 3, .world = 4, .host = "host-d"}, activity);
    (void)tx;
    ::pause();  // killed below: no goodbye
    ::_exit(0);
  }
  // Its first beat says it runs; then it is killed.
  auto first = rx.receive(std::chrono::seconds(5));
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->died);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  const auto dead = next_death(rx, std::chrono::seconds(2));
  ASSERT_TRUE(dead) << "no report of the killed sender";
  EXPECT_EQ(dead->beat.rank, 3);
  EXPECT_EQ(dead->beat.host, "host-d");
  EXPECT_EQ(dead->beat.job, 0x9u);
  EXPECT_EQ(dead->from, "127.0.0.1");
}

TEST(Heartbeat, ASenderThatExitsIsNotReportedDead) {
  HeartbeatReceiver rx("127.0.0.1");
  const HeartbeatTarget target{.address = "127.0.0.1", .port = rx.port(), .period_s = 10, .job = 0x9};
  Activity activity;
  { HeartbeatSender tx(target, {.rank = 0, .world = 1, .host = "host-a"}, activity); }
  EXPECT_FALSE(next_death(rx, std::chrono::milliseconds(500))) << "a sender that exited was reported dead";
}

TEST(Heartbeat, ATakenPortIsAnErrorNamingIt) {
  HeartbeatReceiver rx("127.0.0.1");
  try {
    HeartbeatReceiver again("127.0.0.1", rx.port());
    ADD_FAILURE() << "a second receiver bound port " << rx.port();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
    EXPECT_NE(std::string(e.what()).find(":" + std::to_string(rx.port())), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace strand::job
