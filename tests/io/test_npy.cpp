#include <gtest/gtest.h>

#include <chrono>
#include <cstring>

#include <strand/io/npy.hpp>
#include "io_test_util.hpp"

namespace strand::io {
namespace {
using testing::le;
using testing::npy_dict;
using testing::npy_file;
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

// What numpy 1.24 np.save writes: the 10-byte v1.0 prefix (header length 0x76 = 118 or
// 0xb6 = 182), the dict, the given number of pad spaces, '\n'. Generated with
//   np.save(buf, a); hdr = v[10:10+hlen]; print(hdr.rstrip(), len(pad)).
std::string numpy_header(char hlen, const std::string& dict_text, size_t pad) {
  return std::string("\x93NUMPY\x01\x00", 8) + hlen + '\0' + dict_text + std::string(pad, ' ') + "\n";
}

std::string hex(const std::string& s) {
  std::string out;
  char buf[4];
  for (unsigned char c : s) {
    std::snprintf(buf, sizeof buf, "%02x", c);
    out += buf;
  }
  return out;
}

class Npy : public ::testing::Test {
 protected:
  std::filesystem::path file(const std::string& bytes) {
    auto p = dir_ / "f.npy";
    write_bytes(p, bytes);
    return p;
  }
  TempDir dir_;
};

TEST_F(Npy, WriterMatchesNumpyByteForByte) {
  // np.save(np.array([[1.5,-2,0],[3,4,5]], dtype='<f4'))
  const float f[] = {1.5f, -2.0f, 0.0f, 3.0f, 4.0f, 5.0f};
  write_npy(dir_ / "a.npy", Shape{2, 3}, f);
  EXPECT_EQ(hex(read_bytes(dir_ / "a.npy")),
            hex(numpy_header('v', "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 58)) +
                "0000c03f000000c00000000000004040000080400000a040");

  // np.save(np.array([7, -1, 2**31-1], dtype='<i4'))
  const int32_t i[] = {7, -1, 2147483647};
  write_npy(dir_ / "b.npy", Shape{3}, i);
  EXPECT_EQ(hex(read_bytes(dir_ / "b.npy")),
            hex(numpy_header('v', "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", 60)) +
                "07000000ffffffffffffff7f");

  // np.save(np.float32(3.0).reshape(())): a 0-d array, no growth padding.
  const float s[] = {3.0f};
  write_npy(dir_ / "c.npy", Shape{}, s);
  EXPECT_EQ(
      hex(read_bytes(dir_ / "c.npy")),
      hex(numpy_header('v', "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 62)) + "00004040");

  // np.save(np.zeros((0, 784), dtype='<f4')): header only.
  write_npy(dir_ / "d.npy", Shape{0, 784}, static_cast<const float*>(nullptr));
  EXPECT_EQ(hex(read_bytes(dir_ / "d.npy")),
            hex(numpy_header('v', "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 784), }", 56)));

  // A header whose unpadded length is already a multiple of 64: numpy then pads a full 64.
  // np.save(np.zeros((0,10,10,10,10,10,10,10,10,1,1,1), dtype='<i4'))
  write_npy(dir_ / "e.npy", Shape{0, 10, 10, 10, 10, 10, 10, 10, 10, 1, 1, 1},
            static_cast<const int32_t*>(nullptr));
  EXPECT_EQ(hex(read_bytes(dir_ / "e.npy")),
            hex(numpy_header('\xb6',
                             "{'descr': '<i4', 'fortran_order': False, 'shape': (0, 10, 10, 10, "
                             "10, 10, 10, 10, 10, 1, 1, 1), }",
                             84)));
}

TEST_F(Npy, RoundTrip) {
  std::vector<float> f(2 * 3 * 5);
  for (size_t k = 0; k < f.size(); ++k) f[k] = static_cast<float>(k) * 0.37f - 4.0f;
  write_npy(dir_ / "f.npy", Shape{2, 3, 5}, f.data());
  Array<float> a = read_npy_f32(dir_ / "f.npy", Shape{-1, 3, 5});
  EXPECT_EQ(a.shape, (Shape{2, 3, 5}));
  EXPECT_EQ(a.data, f);

  const std::vector<int32_t> i = {0, -5, 9, 2147483647, -2147483647 - 1};
  write_npy(dir_ / "i.npy", Shape{5}, i.data());
  Array<int32_t> b = read_npy_i32(dir_ / "i.npy");
  EXPECT_EQ(b.shape, (Shape{5}));
  EXPECT_EQ(b.data, i);
  NpyArray raw = read_npy(dir_ / "i.npy");
  EXPECT_EQ(raw.dtype, NpyDtype::I4);
}

TEST_F(Npy, ReadsVersions2And3) {
  for (int major : {2, 3}) {
    const auto p = file(npy_file(npy_dict("<f4", "(2,)"), le<float>({1.0f, 2.5f}), major));
    EXPECT_EQ(read_npy_f32(p).data, (std::vector<float>{1.0f, 2.5f})) << "version " << major;
  }
}

TEST_F(Npy, ParsesHeaderVariants) {
  const std::string data = le<int32_t>({1, 2, 3, 4, 5, 6});
  for (const std::string& d : {
           std::string("{\"descr\": \"<i4\", \"fortran_order\": False, \"shape\": (2, 3)}"),
           std::string("{'shape':(2,3),'fortran_order':False,'descr':'<i4'}"),
           std::string("  { 'descr' : '<i4' ,\n 'fortran_order' : False , 'shape' : ( 2 , 3 , ) , }  "),
           std::string("{'descr': '<i4', 'fortran_order': False, 'shape': (2L, 3L), }"),
       }) {
    const auto p = file(npy_file(d, data));
    Array<int32_t> a = read_npy_i32(p);
    EXPECT_EQ(a.shape, (Shape{2, 3})) << d;
    EXPECT_EQ(a.data, (std::vector<int32_t>{1, 2, 3, 4, 5, 6})) << d;
  }
}

TEST_F(Npy, ConvertsDtypesToFloat) {
  auto p = file(npy_file(npy_dict("<f8", "(2,)"), le<double>({0.25, -1e10})));
  EXPECT_EQ(read_npy_f32(p).data, (std::vector<float>{0.25f, -1e10f}));
  p = file(npy_file(npy_dict("|u1", "(3,)"), std::string("\x00\x80\xff", 3)));
  EXPECT_EQ(read_npy_f32(p).data, (std::vector<float>{0.0f, 128.0f, 255.0f}));  // as-is, not scaled
  p = file(npy_file(npy_dict("|i1", "(1,)"), "\xfe"));
  EXPECT_EQ(read_npy_f32(p).data, (std::vector<float>{-2.0f}));
  p = file(npy_file(npy_dict("<i8", "(2,)"), le<int64_t>({16777216, -16777216})));
  EXPECT_EQ(read_npy_f32(p).data, (std::vector<float>{16777216.0f, -16777216.0f}));
}

TEST_F(Npy, ConvertsDtypesToInt32) {
  auto p = file(npy_file(npy_dict("<i8", "(2,)"), le<int64_t>({9, -2147483648LL})));
  EXPECT_EQ(read_npy_i32(p).data, (std::vector<int32_t>{9, -2147483647 - 1}));
  p = file(npy_file(npy_dict("|u1", "(2,)"), "\x03\xff"));
  EXPECT_EQ(read_npy_i32(p).data, (std::vector<int32_t>{3, 255}));
  p = file(npy_file(npy_dict("<f4", "(3,)"), le<float>({0.0f, 7.0f, -3.0f})));
  EXPECT_EQ(read_npy_i32(p).data, (std::vector<int32_t>{0, 7, -3}));
  p = file(npy_file(npy_dict("<u2", "(1,)"), le<uint16_t>({65535})));
  EXPECT_EQ(read_npy_i32(p).data, (std::vector<int32_t>{65535}));
}

TEST_F(Npy, LossyConversionsAreRejected) {
  auto p = file(npy_file(npy_dict("<f4", "(3,)"), le<float>({1.0f, 2.0f, 1.5f})));
  EXPECT_STRAND_ERROR(read_npy_i32(p), Format, p.string(), "value 1.5 at index 2 is not an integer");
  p = file(npy_file(npy_dict("<f8", "(2,)"), le<double>({1.0, 3e9})));
  EXPECT_STRAND_ERROR(read_npy_i32(p), Format, p.string(), "at index 1 is outside the int32 range");
  p = file(npy_file(npy_dict("<i8", "(1,)"), le<int64_t>({1LL << 40})));
  EXPECT_STRAND_ERROR(read_npy_i32(p), Format, p.string(), "value 1099511627776 at index 0");
  p = file(npy_file(npy_dict("<i4", "(2,)"), le<int32_t>({0, 16777217})));
  EXPECT_STRAND_ERROR(read_npy_f32(p), Format, p.string(), "not exactly representable as float32");
  p = file(npy_file(npy_dict("<f8", "(1,)"), le<double>({1e300})));
  EXPECT_STRAND_ERROR(read_npy_f32(p), Format, p.string(), "outside the float32 range");
}

TEST_F(Npy, ExpectedShape) {
  const auto p = file(npy_file(npy_dict("<f4", "(2, 3)"), std::string(24, '\0')));
  EXPECT_EQ(read_npy_f32(p, Shape{2, -1}).shape, (Shape{2, 3}));
  EXPECT_STRAND_ERROR(read_npy_f32(p, Shape{-1, 784}), Shape, p.string(), "found [2,3]");
  EXPECT_STRAND_ERROR(read_npy_i32(p, Shape{6}), Shape, p.string(), "expected shape [6]");
}

TEST_F(Npy, FortranOrder) {
  auto p = file(npy_file(npy_dict("<f4", "(2, 3)", "True"), std::string(24, '\0')));
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "fortran_order is True");
  // Same bytes in both orders: accepted.
  p = file(npy_file(npy_dict("<f4", "(1, 3)", "True"), le<float>({1, 2, 3})));
  EXPECT_EQ(read_npy_f32(p).data, (std::vector<float>{1, 2, 3}));
}

TEST_F(Npy, BigEndianDtype) {
  const auto p = file(npy_file(npy_dict(">f4", "(1,)"), std::string("\x3f\x80\x00\x00", 4)));
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "big-endian dtype '>f4'");
}

TEST_F(Npy, UnsupportedDtypesAreNamed) {
  const std::pair<const char*, const char*> cases[] = {{"<f2", "float16"},       {"|b1", "bool"},
                                                       {"<c8", "complex"},       {"<U5", "strings"},
                                                       {"|O", "Python objects"}, {"<M8[s]", "datetime"}};
  for (const auto& [descr, name] : cases) {
    const auto p = file(npy_file(npy_dict(descr, "(1,)"), std::string(8, '\0')));
    EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(),
                        std::string("unsupported dtype '") + descr + "' (" + name);
  }
  const auto p = file(
      npy_file("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", std::string(4, '\0')));
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "structured dtypes");
}

TEST_F(Npy, MalformedHeaderDicts) {
  const std::pair<std::string, const char*> cases[] = {
      {"{'descr': '<f4', 'shape': (1,), }", "lacks the key 'fortran_order'"},
      {"{'descr': '<f4', 'fortran_order': False, }", "lacks the key 'shape'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", "unexpected key 'x'"},
      {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", "appears twice"},
      {"{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", "expected ',' or '}'"},
      {"{'descr': '<f4', 'fortran_order': false, 'shape': (1,)}", "expected True or False"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", "non-negative integer"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [1]}", "to open the 'shape' tuple"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk", "unexpected text after"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", "64 bits"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,", "in 'shape'"},
      {"{'descr", "unterminated string"},
      {"descr: <f4", "expected '{'"},
      {"", "expected '{'"},
  };
  for (const auto& [d, needle] : cases) {
    const auto p = file(npy_file(d, std::string(4, '\0')));
    EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), needle);
    EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "malformed .npy header");
  }
}

TEST_F(Npy, MissingAndEmptyFiles) {
  const auto missing = dir_ / "none.npy";
  EXPECT_STRAND_ERROR(read_npy(missing), Io, missing.string(), "No such file");
  const auto p = file("");
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "empty");
}

TEST_F(Npy, WrongMagic) {
  auto p = file("just some text, not numpy");
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "expected the magic \\x93NUMPY");
  p = file(std::string("\x1f\x8b\x08\x00\x00\x00\x00\x00", 8));
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "gzip");
  p = file(std::string("PK\x03\x04\x14\x00\x00\x00", 8));
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), ".npz");
  p = file(std::string("\x93NUM", 4));
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "expected the magic");
}

TEST_F(Npy, TruncatedHeader) {
  const std::string full = npy_file(npy_dict("<f4", "(1,)"), le<float>({1}));
  auto p = file(full.substr(0, 8));
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "too short for a .npy header");
  p = file(full.substr(0, 30));
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "runs past the end of the file");
  p = file(npy_file(npy_dict("<f4", "(1,)"), "", 2).substr(0, 11));
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "too short for a .npy 2.0 header");
}

TEST_F(Npy, UnsupportedVersion) {
  const auto p = file(npy_file(npy_dict("<f4", "(1,)"), le<float>({1}), 4));
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "version 4.0");
}

TEST_F(Npy, HugeHeaderLength) {
  std::string s = npy_file(npy_dict("<f4", "(1,)"), le<float>({1}), 2);
  s[8] = s[9] = s[10] = s[11] = '\xff';
  const auto p = file(s);
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "header length 4294967295");
}

TEST_F(Npy, TruncatedData) {
  const auto p = file(npy_file(npy_dict("<f4", "(2, 3)"), std::string(20, '\0')));
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "24 bytes of data, but the file has 20");
}

TEST_F(Npy, TrailingBytes) {
  const auto p = file(npy_file(npy_dict("<i4", "(1,)"), le<int32_t>({1}) + "x"));
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "trailing bytes");
}

TEST_F(Npy, AbsurdShapesFailFastWithoutAllocating) {
  const auto start = std::chrono::steady_clock::now();
  auto p = file(npy_file(npy_dict("<f8", "(4294967295, 4294967295, 4294967295)"), "abc"));
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "more than 2^64");
  p = file(npy_file(npy_dict("<f4", "(1000000, 1000000)"), "abc"));
  EXPECT_STRAND_ERROR(read_npy(p), Format, p.string(), "4000000000000 bytes");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST_F(Npy, WriterRejectsNegativeDims) {
  const float f[] = {1};
  const auto p = dir_ / "neg.npy";
  EXPECT_STRAND_ERROR(write_npy(p, Shape{-1}, f), Usage, p.string(), "negative dimension");
  EXPECT_FALSE(std::filesystem::exists(p));
}

}  // namespace
}  // namespace strand::io
