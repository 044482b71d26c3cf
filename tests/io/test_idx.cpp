#include <gtest/gtest.h>

#include <chrono>
#include <cstring>

#include <strand/io/idx.hpp>
#include "io_test_util.hpp"

namespace strand::io {
namespace {
using testing::be32;
using testing::idx_bytes;
using testing::TempDir;
using testing::write_bytes;

std::string ramp(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i * 7 % 256);
  return s;
}

class Idx : public ::testing::Test {
 protected:
  std::filesystem::path file(const std::string& bytes) {
    auto p = dir_ / "f.idx";
    write_bytes(p, bytes);
    return p;
  }
  TempDir dir_;
};

TEST_F(Idx, ReadsImagesAsBytes) {
  const std::string pixels = ramp(2 * 3 * 4);
  const auto p = file(idx_bytes(0x08, {2, 3, 4}, pixels));
  Array<uint8_t> a = read_idx_images(p);
  EXPECT_EQ(a.shape, (Shape{2, 3, 4}));
  ASSERT_EQ(a.data.size(), 24u);
  for (size_t i = 0; i < 24; ++i) EXPECT_EQ(a.data[i], static_cast<uint8_t>(pixels[i]));
}

TEST_F(Idx, ReadsLabels) {
  const auto p = file(idx_bytes(0x08, {4}, std::string("\x05\x00\x09\xff", 4)));
  Array<int32_t> a = read_idx_labels(p);
  EXPECT_EQ(a.shape, (Shape{4}));
  EXPECT_EQ(a.data, (std::vector<int32_t>{5, 0, 9, 255}));
}

TEST_F(Idx, ReadsMultiByteTypesBigEndian) {
  auto p = file(idx_bytes(0x0B, {2}, std::string("\x01\x02\xff\xfe", 4)));
  IdxArray a = read_idx(p);
  EXPECT_EQ(a.type, IdxType::I16);
  EXPECT_EQ(a.value(0), 0x0102);
  EXPECT_EQ(a.value(1), -2);

  p = file(idx_bytes(0x0C, {1, 1}, be32(0xFFFFFF85)));
  EXPECT_EQ(read_idx(p).value(0), -123);

  p = file(idx_bytes(0x0D, {1}, be32(0x3FC00000)));  // 1.5f
  EXPECT_EQ(read_idx(p).value(0), 1.5);

  p = file(idx_bytes(0x0E, {1}, be32(0x40090000) + be32(0)));  // 3.125
  EXPECT_EQ(read_idx(p).value(0), 3.125);

  p = file(idx_bytes(0x09, {2}, std::string("\x80\x7f", 2)));
  IdxArray b = read_idx(p);
  EXPECT_EQ(b.value(0), -128);
  EXPECT_EQ(b.value(1), 127);
  EXPECT_STRAND_ERROR(b.value(2), Usage, "IdxArray::value", "out of range");
}

TEST_F(Idx, AcceptsZeroItems) {
  const auto p = file(idx_bytes(0x08, {0, 28, 28}, ""));
  EXPECT_EQ(read_idx_images(p).shape, (Shape{0, 28, 28}));
}

TEST_F(Idx, MissingFile) {
  const auto p = dir_ / "nope";
  EXPECT_STRAND_ERROR(read_idx(p), Io, p.string(), "No such file");
}

TEST_F(Idx, DirectoryInsteadOfFile) {
  EXPECT_STRAND_ERROR(read_idx(dir_.path()), Io, dir_.path().string(), "directory");
}

TEST_F(Idx, EmptyFile) {
  const auto p = file("");
  EXPECT_STRAND_ERROR(read_idx_images(p), Format, p.string(), "empty");
}

TEST_F(Idx, TruncatedMagic) {
  const auto p = file(std::string("\0\0", 2));
  EXPECT_STRAND_ERROR(read_idx(p), Format, p.string(), "only 2 bytes");
}

TEST_F(Idx, TruncatedHeader) {
  const auto p = file(std::string("\0\0\x08\x03", 4) + be32(10));
  EXPECT_STRAND_ERROR(read_idx(p), Format, p.string(), "too short for the header");
}

TEST_F(Idx, TruncatedData) {
  const auto p = file(idx_bytes(0x08, {2, 28, 28}, std::string(28 * 28 + 5, '\0')));
  EXPECT_STRAND_ERROR(read_idx_images(p), Format, p.string(), "truncated");
}

TEST_F(Idx, TrailingBytes) {
  const auto p = file(idx_bytes(0x08, {3}, "\x01\x02\x03junk"));
  EXPECT_STRAND_ERROR(read_idx_labels(p), Format, p.string(), "trailing bytes");
}

TEST_F(Idx, ShapeNotMatchingFileSizeForWideTypes) {
  // 3 int32 values need 12 bytes; 6 bytes hold only 1.5 of them.
  const auto p = file(idx_bytes(0x0C, {3}, std::string(6, '\0')));
  EXPECT_STRAND_ERROR(read_idx(p), Format, p.string(), "12 bytes");
}

TEST_F(Idx, GzipFileGetsAHint) {
  const auto p = file(std::string("\x1f\x8b\x08\x08\x00\x00\x00\x00", 8));
  EXPECT_STRAND_ERROR(read_idx_images(p), Format, p.string(),
                      "expected magic 0x00000803 for an IDX image file");
  EXPECT_STRAND_ERROR(read_idx_images(p), Format, p.string(), "found 0x1f8b0808");
  EXPECT_STRAND_ERROR(read_idx_images(p), Format, p.string(), "gzip");
  EXPECT_STRAND_ERROR(read_idx(p), Format, p.string(), "gzip");
}

TEST_F(Idx, LabelFileGivenAsImages) {
  const auto p = file(idx_bytes(0x08, {2}, "\x01\x02"));
  EXPECT_STRAND_ERROR(read_idx_images(p), Format, p.string(),
                      "found 0x00000801 (an IDX file of ubyte with 1 dimension)");
}

TEST_F(Idx, ImagesGivenAsLabels) {
  const auto p = file(idx_bytes(0x08, {1, 1, 1}, "\x01"));
  EXPECT_STRAND_ERROR(read_idx_labels(p), Format, p.string(), "expected magic 0x00000801");
}

TEST_F(Idx, WrongNdimsForImages) {
  const auto p = file(idx_bytes(0x08, {2, 2}, "\x01\x02\x03\x04"));
  EXPECT_STRAND_ERROR(read_idx_images(p), Format, p.string(), "found 0x00000802");
}

TEST_F(Idx, WrongTypeForImages) {
  const auto p = file(idx_bytes(0x0D, {1, 1, 1}, be32(0)));
  EXPECT_STRAND_ERROR(read_idx_images(p), Format, p.string(), "found 0x00000d03");
}

TEST_F(Idx, NotAnIdxFile) {
  const auto p = file("P5\n28 28\n255\n");
  EXPECT_STRAND_ERROR(read_idx(p), Format, p.string(), "not an IDX file");
}

TEST_F(Idx, UnknownElementType) {
  const auto p = file(idx_bytes(0x07, {1}, "\x01"));
  EXPECT_STRAND_ERROR(read_idx(p), Format, p.string(), "unknown IDX element type 0x07");
}

TEST_F(Idx, ZeroDimensions) {
  const auto p = file(std::string("\0\0\x08\0", 4));
  EXPECT_STRAND_ERROR(read_idx(p), Format, p.string(), "0 dimensions");
}

TEST_F(Idx, AbsurdSizesFailFastWithoutAllocating) {
  // Product overflows 64 bits.
  auto p = file(idx_bytes(0x0E, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, "abc"));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_STRAND_ERROR(read_idx(p), Format, p.string(), "more than 2^64");
  // Fits 64 bits but would need ~1 TB: rejected by the size check, not by a failed
  // allocation (which would escape as std::bad_alloc and fail this test).
  p = file(idx_bytes(0x08, {1000000, 1000, 1000}, "abc"));
  EXPECT_STRAND_ERROR(read_idx(p), Format, p.string(), "1000000000000 bytes");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

}  // namespace
}  // namespace strand::io
