// The launcher's pieces (elastic/): host lists as --hosts and discovery scripts give them, the
// checkpoint directory found in a training command, and child processes (status, output,
// timeouts, a program that does not exist). The launcher itself is tested on namespace hosts
// (test_launch_netns.sh) and by the CLI tests.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include <strand/core/error.hpp>
#include <strand/elastic/hosts.hpp>
#include <strand/elastic/launcher.hpp>
#include <strand/elastic/process.hpp>

namespace strand::elastic {
namespace {

TEST(Hosts, ParsesCommasAndLines) {
  const std::vector<HostSlots> want{{"h1", 2}, {"h2", 1}, {"10.0.0.3", 4}};
  EXPECT_EQ(parse_hosts("h1:2,h2,10.0.0.3:4", "--hosts"), want);
  EXPECT_EQ(parse_hosts("# up now\nh1:2\n\n h2 \n10.0.0.3:4  # big\n", "script"), want);
  EXPECT_EQ(to_string(want), "h1:2,h2:1,10.0.0.3:4");
  EXPECT_EQ(total_slots(want), 7);
  EXPECT_TRUE(parse_hosts("", "script").empty());
}

TEST(Hosts, RefusesMalformedEntriesNamingThem) {
  for (const char* bad : {"h1:0", "h1:-1", "h1:x", "h1:2x", ":2", "h1,,h2", "h1,h1:2", "a b:1\n"}) {
    try {
      parse_hosts(bad, "--hosts");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << bad;
      EXPECT_EQ(e.where(), "--hosts");
    }
  }
}

TEST(Hosts, TakeRanksCutsTheLastHosts) {
  const std::vector<HostSlots> hosts{{"a", 2}, {"b", 2}, {"c", 2}};
  EXPECT_EQ(take_ranks(hosts, 3), (std::vector<HostSlots>{{"a", 2}, {"b", 1}}));
  EXPECT_EQ(take_ranks(hosts, 9), hosts);
  EXPECT_TRUE(take_ranks(hosts, 0).empty());
}

TEST(Launcher, FindsTheCommandsCheckpoints) {
  EXPECT_EQ(checkpoint_dir_of({"strand", "train", "--model-dir", "m"}, nullptr), "m/checkpoints");
  EXPECT_EQ(checkpoint_dir_of({"strand", "train", "--model-dir=m"}, nullptr), "m/checkpoints");
  EXPECT_EQ(checkpoint_dir_of({"strand", "train", "--model-dir", "m", "--checkpoint-dir", "c"}, nullptr),
            "c");
  EXPECT_EQ(checkpoint_dir_of({"strand", "train"}, "/opt/ml/model"), "/opt/ml/model/checkpoints");
  EXPECT_THROW(checkpoint_dir_of({"strand", "train"}, nullptr), Error);
}

TEST(Launcher, ValidateRefusesContradictions) {
  LaunchConfig c{.command = {"true"}, .hosts = {{"a", 1}}, .checkpoint_dir = "c"};
  EXPECT_NO_THROW(validate(c));
  auto refused = [](LaunchConfig x) { EXPECT_THROW(validate(x), Error); };
  LaunchConfig both = c;
  both.discovery_script = "echo a";
  refused(both);
  LaunchConfig neither = c;
  neither.hosts.clear();
  refused(neither);
  LaunchConfig ranks = c;
  ranks.min_ranks = 3;
  ranks.max_ranks = 2;
  refused(ranks);
  LaunchConfig no_command = c;
  no_command.command.clear();
  refused(no_command);
  LaunchConfig period = c;
  period.heartbeat_period_s = 0;
  refused(period);
}

TEST(Process, ReportsStatusAndOutput) {
  const Ran ok = run_for({"/bin/sh", "-c", "echo hello; echo $STRAND_X"}, 10, {"STRAND_X=42"});
  ASSERT_TRUE(ok.status);
  EXPECT_TRUE(succeeded(*ok.status));
  EXPECT_EQ(ok.out, "hello\n42\n");
  const Ran bad = run_for({"/bin/sh", "-c", "exit 3"}, 10);
  ASSERT_TRUE(bad.status);
  EXPECT_EQ(describe_status(*bad.status), "exited with status 3");
  const Ran killed = run_for({"/bin/sh", "-c", "kill -9 $$"}, 10);
  ASSERT_TRUE(killed.status);
  EXPECT_EQ(describe_status(*killed.status).rfind("was killed by signal 9", 0), 0u);
}

TEST(Process, StopsWhatRunsTooLongWithItsChildren) {
  const auto t0 = std::chrono::steady_clock::now();
  const Ran r = run_for({"/bin/sh", "-c", "sleep 60 & sleep 60"}, 0.3);
  EXPECT_FALSE(r.status);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST(Process, NamesAProgramThatCannotRun) {
  try {
    Child c({"/nonexistent/strand-launch-test"});
    ADD_FAILURE() << "started";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
    EXPECT_EQ(e.where(), "/nonexistent/strand-launch-test");
  }
}

TEST(Process, StopEndsAStoppedChild) {
  Child c({"/bin/sh", "-c", "kill -STOP $$; sleep 60"});
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(c.poll());
  const int st = c.stop(1);
  EXPECT_FALSE(succeeded(st));
}

}  // namespace
}  // namespace strand::elastic
