#include <gtest/gtest.h>

#include <ctime>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include <strand/core/error.hpp>
#include <strand/io/record.hpp>
#include "io_test_util.hpp"

namespace strand::io {
namespace {
using testing::TempDir;

TEST(Record, StampSaysWhatRanWhere) {
  const RecordStamp s = make_stamp({.threads = 3, .command = {"strand", "bench", "train", "--data", "a b"}});
  EXPECT_FALSE(s.version.empty());
  EXPECT_FALSE(s.commit.empty());  // "unknown" outside git, never empty
  EXPECT_FALSE(s.host.empty());
  EXPECT_FALSE(s.cpu.empty());
  EXPECT_TRUE(s.gpu.empty());  // not asked for: not a GPU benchmark
  EXPECT_EQ(s.threads, 3);
  EXPECT_GE(s.cpus, 1);
  EXPECT_TRUE(std::regex_match(s.date, std::regex(R"(20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ)"))) << s.date;
  // Within a minute of now, in UTC.
  std::tm tm{};
  ASSERT_NE(strptime(s.date.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm), nullptr);
  EXPECT_LT(std::abs(std::difftime(timegm(&tm), std::time(nullptr))), 60.0);
  EXPECT_EQ(s.command, "strand bench train --data 'a b'");
}

TEST(Record, CommandDefaultsToThisProcess) {
  const RecordStamp s = make_stamp();
  EXPECT_NE(s.command.find("test_io"), std::string::npos) << s.command;
  EXPECT_EQ(to_json(s).count("threads"), 0u);  // rows give their own when the stamp has none
}

TEST(Record, GpuGivenOrLookedUp) {
  EXPECT_EQ(make_stamp({.on_gpu = true, .gpu = "NVIDIA H200"}).gpu, "NVIDIA H200");
  // Without the NVIDIA driver the model is not known, but the record still says a GPU ran it.
  EXPECT_FALSE(make_stamp({.on_gpu = true}).gpu.empty());
}

TEST(Record, ShellQuoting) {
  EXPECT_EQ(shell_quote("--batch-size=100"), "--batch-size=100");
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_quote("a;b"), "'a;b'");
}

TEST(Record, WritesTheBodyWithItsStamp) {
  const RecordStamp s = make_stamp({.threads = 2, .gpu = "GPU X", .command = {"bench_x", "--fast"}});
  std::ostringstream out;
  write_record(out, {{"images_per_sec", 123.5}, {"rows", {1, 2}}}, s);
  const std::string text = out.str();
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(text.find('\n'), text.size() - 1) << "one line";
  const nlohmann::json j = nlohmann::json::parse(text);
  EXPECT_EQ(j["images_per_sec"], 123.5);
  EXPECT_EQ(j["rows"], nlohmann::json({1, 2}));
  const nlohmann::json& st = j["stamp"];
  EXPECT_EQ(st["strand_version"], s.version);
  EXPECT_EQ(st["commit"], s.commit);
  EXPECT_EQ(st["host"], s.host);
  EXPECT_EQ(st["cpu"], s.cpu);
  EXPECT_EQ(st["gpu"], "GPU X");
  EXPECT_EQ(st["threads"], 2);
  EXPECT_EQ(st["cpus"], s.cpus);
  EXPECT_EQ(st["date"], s.date);
  EXPECT_EQ(st["command"], "bench_x --fast");

  TempDir dir;
  write_record(dir / "r.json", {{"x", 1}}, s);
  std::ifstream in(dir / "r.json");
  const nlohmann::json back = nlohmann::json::parse(in);
  EXPECT_EQ(back["x"], 1);
  EXPECT_EQ(back["stamp"], to_json(s));
}

TEST(Record, RejectsBodiesThatAreNotFreshObjects) {
  const RecordStamp s = make_stamp();
  for (const nlohmann::json& bad : {nlohmann::json::array({1}), nlohmann::json{{"stamp", 1}}}) {
    try {
      stamped(bad, s);
      ADD_FAILURE() << bad.dump() << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage) << e.what();
    }
  }
}

}  // namespace
}  // namespace strand::io
