// Helpers shared by the io tests: a self-deleting temp directory, raw file I/O, an IDX
// file builder, and a check that a statement throws strand::Error of a given kind, at a
// given place, whose text contains a needle.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <string>
#include <vector>

#include <strand/core/error.hpp>

namespace strand::io::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "strand-io-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("cannot write test file " + p.string());
}

inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Big-endian u32, as in IDX headers.
inline std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// An IDX file: magic {0, 0, type, ndims}, the dims, then `data` verbatim.
inline std::string idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, const std::string& data) {
  std::string s{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) s += be32(d);
  return s + data;
}

// Little-endian bytes of `values` (the host is little-endian).
template <class T>
inline std::string le(std::initializer_list<T> values) {
  std::string s(values.size() * sizeof(T), '\0');
  std::memcpy(s.data(), values.begin(), s.size());
  return s;
}

// A .npy file with the given header dict (no alignment padding: readers must not need it).
inline std::string npy_file(const std::string& dict, const std::string& data, int major = 1) {
  const std::string header = dict + "\n";
  std::string s = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
  const size_t n = header.size();
  s += static_cast<char>(n & 0xFF);
  s += static_cast<char>((n >> 8) & 0xFF);
  if (major >= 2) {
    s += static_cast<char>((n >> 16) & 0xFF);
    s += static_cast<char>((n >> 24) & 0xFF);
  }
  return s + header + data;
}

inline std::string npy_dict(const std::string& descr, const std::string& shape,
                            const char* fortran = "False") {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
}

}  // namespace strand::io::testing

// Expects `stmt` to throw strand::Error of kind KIND, with `where` equal to WHERE and the
// full message containing NEEDLE.
#define EXPECT_STRAND_ERROR(stmt, KIND, WHERE, NEEDLE)                  \
  do {                                                                  \
    try {                                                               \
      stmt;                                                             \
      ADD_FAILURE() << "expected strand::Error from: " #stmt;           \
    } catch (const ::strand::Error& e_) {                               \
      EXPECT_EQ(e_.kind(), ::strand::ErrorKind::KIND) << e_.what();     \
      EXPECT_EQ(e_.where(), std::string(WHERE)) << e_.what();           \
      EXPECT_NE(std::string(e_.what()).find(NEEDLE), std::string::npos) \
          << "message lacks \"" << (NEEDLE) << "\": " << e_.what();     \
    }                                                                   \
  } while (0)
