#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <stdexcept>

#include <strand/io/atomic_file.hpp>
#include "io_test_util.hpp"

namespace strand::io {
namespace {
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

// Number of entries in a directory: shows that no temporary file was left behind.
size_t entries(const std::filesystem::path& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

TEST(AtomicFile, CreatesFile) {
  TempDir dir;
  write_file_atomic(dir / "a.bin", std::string_view("hello"));
  EXPECT_EQ(read_bytes(dir / "a.bin"), "hello");
  EXPECT_EQ(entries(dir.path()), 1u);
}

TEST(AtomicFile, ReplacesExistingFile) {
  TempDir dir;
  write_bytes(dir / "a.bin", "old content that is longer");
  const std::byte bytes[] = {std::byte{1}, std::byte{0}, std::byte{255}};
  write_file_atomic(dir / "a.bin", std::span<const std::byte>(bytes));
  EXPECT_EQ(read_bytes(dir / "a.bin"), std::string("\x01\x00\xff", 3));
  EXPECT_EQ(entries(dir.path()), 1u);
}

TEST(AtomicFile, StreamingMixesSmallAndLargeWrites) {
  TempDir dir;
  std::string big(300000, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  write_file_atomic(dir / "s.bin", [&](std::ostream& os) {
    os << "head:";
    os.write(big.data(), static_cast<std::streamsize>(big.size()));
    os << ":tail";
  });
  EXPECT_EQ(read_bytes(dir / "s.bin"), "head:" + big + ":tail");
}

TEST(AtomicFile, ParentIsARegularFile) {
  // Root bypasses permission bits, but not ENOTDIR.
  TempDir dir;
  write_bytes(dir / "plain", "x");
  const auto target = dir / "plain" / "out.bin";
  EXPECT_STRAND_ERROR(write_file_atomic(target, std::string_view("data")), Io, target.string(),
                      "Not a directory");
  EXPECT_EQ(read_bytes(dir / "plain"), "x");
  EXPECT_EQ(entries(dir.path()), 1u);
}

TEST(AtomicFile, WriterExceptionKeepsOldFile) {
  TempDir dir;
  write_bytes(dir / "a.bin", "old");
  EXPECT_THROW(write_file_atomic(dir / "a.bin",
                                 [](std::ostream& os) {
                                   os << std::string(100000, 'n');
                                   throw std::logic_error("writer failed");
                                 }),
               std::logic_error);
  EXPECT_EQ(read_bytes(dir / "a.bin"), "old");
  EXPECT_EQ(entries(dir.path()), 1u);
}

TEST(AtomicFile, WriteErrorKeepsOldFileAndRemovesTemp) {
  // A real write(2) failure that root cannot bypass: the file size limit (EFBIG).
  TempDir dir;
  write_bytes(dir / "a.bin", "old");
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  try {
    write_file_atomic(dir / "a.bin", std::string_view(std::string(1 << 20, 'z')));
    ADD_FAILURE() << "write beyond RLIMIT_FSIZE succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
    EXPECT_EQ(e.where(), (dir / "a.bin").string());
    EXPECT_NE(std::string(e.what()).find("File too large"), std::string::npos) << e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(read_bytes(dir / "a.bin"), "old");
  EXPECT_EQ(entries(dir.path()), 1u);
}

TEST(AtomicFile, TargetIsADirectory) {
  TempDir dir;
  std::filesystem::create_directory(dir / "sub");
  EXPECT_STRAND_ERROR(write_file_atomic(dir / "sub", std::string_view("x")), Io, (dir / "sub").string(),
                      "rename");
  EXPECT_TRUE(std::filesystem::is_directory(dir / "sub"));
  EXPECT_EQ(entries(dir.path()), 1u);
}

TEST(AtomicFile, PathWithoutFileName) {
  TempDir dir;
  const auto p = dir.path() / "";
  EXPECT_STRAND_ERROR(write_file_atomic(p, std::string_view("x")), Usage, p.string(), "names no file");
}

}  // namespace
}  // namespace strand::io
