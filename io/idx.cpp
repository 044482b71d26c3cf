#include <strand/io/idx.hpp>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <string>

#include <strand/core/error.hpp>
#include <strand/io/input_file.hpp>

namespace strand::io {
namespace fs = std::filesystem;

const char* to_string(IdxType type) {
  switch (type) {
    case IdxType::U8:
      return "ubyte";
    case IdxType::I8:
      return "byte";
    case IdxType::I16:
      return "short";
    case IdxType::I32:
      return "int";
    case IdxType::F32:
      return "float";
    case IdxType::F64:
      return "double";
  }
  return "?";
}

size_t itemsize(IdxType type) {
  switch (type) {
    case IdxType::U8:
    case IdxType::I8:
      return 1;
    case IdxType::I16:
      return 2;
    case IdxType::I32:
    case IdxType::F32:
      return 4;
    case IdxType::F64:
      return 8;
  }
  return 0;
}

namespace {

bool known_type(uint8_t t) {
  return t == 0x08 || t == 0x09 || t == 0x0B || t == 0x0C || t == 0x0D || t == 0x0E;
}

std::string hex(uint32_t v, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%0*x", digits, v);
  return buf;
}
std::string hex32(uint32_t v) { return hex(v, 8); }

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// A guess at what the file really is, appended to magic-number errors.
std::string magic_hint(const uint8_t m[4]) {
  if (m[0] == 0x1f && m[1] == 0x8b) return " (is it gzip-compressed? decompress it first, e.g. with gunzip)";
  if (m[0] == 0x93 && m[1] == 'N' && m[2] == 'U' && m[3] == 'M') return " (this is a .npy file)";
  if (m[0] == 0 && m[1] == 0 && known_type(m[2]))
    return std::string(" (an IDX file of ") + to_string(static_cast<IdxType>(m[2])) + " with " +
           std::to_string(m[3]) + " dimension" + (m[3] == 1 ? "" : "s") + ")";
  return "";
}

struct Expect {
  uint32_t magic;
  const char* what;
};

IdxArray read_impl(const fs::path& path, const Expect* expect) {
  InputFile f(path);
  const std::string& where = f.where();
  STRAND_CHECK(f.size() > 0, Format, "file is empty", where);
  STRAND_CHECK(
      f.size() >= 4, Format,
      "file is only " + std::to_string(f.size()) + " bytes; an IDX file starts with a 4-byte magic number",
      where);
  uint8_t m[4];
  f.read(0, m, 4);
  const uint32_t magic = be32(m);
  if (expect && magic != expect->magic)
    throw Error(ErrorKind::Format,
                "expected magic " + hex32(expect->magic) + " for " + expect->what + ", found " +
                    hex32(magic) + magic_hint(m),
                where);
  STRAND_CHECK(m[0] == 0 && m[1] == 0, Format,
               "found magic " + hex32(magic) +
                   ", not an IDX file (an IDX magic number is 0x0000TTNN: two zero bytes, the "
                   "element type, the number of dimensions)" +
                   magic_hint(m),
               where);
  STRAND_CHECK(known_type(m[2]), Format,
               "unknown IDX element type " + hex(m[2], 2) +
                   " (known: 0x08 ubyte, 0x09 byte, 0x0b short, 0x0c int, 0x0d float, 0x0e double)",
               where);
  const auto type = static_cast<IdxType>(m[2]);
  const unsigned ndims = m[3];
  STRAND_CHECK(ndims > 0, Format, "IDX header declares 0 dimensions", where);
  const uint64_t header = 4 + 4 * uint64_t{ndims};
  STRAND_CHECK(f.size() >= header, Format,
               "file is " + std::to_string(f.size()) + " bytes, too short for the header of a " +
                   std::to_string(ndims) + "-dimensional IDX array (" + std::to_string(header) + " bytes)",
               where);

  std::vector<uint8_t> raw_dims(4 * ndims);
  f.read(4, raw_dims.data(), raw_dims.size());
  std::vector<int64_t> dims(ndims);
  for (unsigned i = 0; i < ndims; ++i) dims[i] = be32(&raw_dims[4 * i]);
  const Shape shape(dims);

  // Size check before allocating: a corrupt header must not make us allocate terabytes.
  const size_t isz = itemsize(type);
  uint64_t need = isz;
  bool overflow = false;
  if (std::find(dims.begin(), dims.end(), 0) != dims.end()) {
    need = 0;
  } else {
    for (int64_t d : dims) overflow = overflow || __builtin_mul_overflow(need, uint64_t(d), &need);
  }
  const uint64_t have = f.size() - header;
  if (overflow || need != have) {
    std::string msg = "header declares shape " + shape.str() + " of " + to_string(type) + " = " +
                      (overflow ? std::string("more than 2^64") : std::to_string(need)) +
                      " bytes of data after the " + std::to_string(header) +
                      "-byte header, but the file has " + std::to_string(have) + " bytes after it";
    msg +=
        overflow || need > have ? " (file truncated, or header corrupt)" : " (trailing bytes after the data)";
    throw Error(ErrorKind::Format, msg, where);
  }

  IdxArray out;
  out.type = type;
  out.shape = shape;
  out.data.resize(need);
  f.read(header, out.data.data(), need);
  if (isz > 1 && std::endian::native == std::endian::little) {
    for (size_t i = 0; i < need; i += isz)
      std::reverse(out.data.begin() + static_cast<ptrdiff_t>(i),
                   out.data.begin() + static_cast<ptrdiff_t>(i + isz));
  }
  return out;
}

template <class T>
double load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return static_cast<double>(v);
}

}  // namespace

double IdxArray::value(int64_t i) const {
  STRAND_CHECK(i >= 0 && i < numel(), Usage,
               "index " + std::to_string(i) + " out of range for an IDX array of shape " + shape.str(),
               "IdxArray::value");
  const std::byte* p = data.data() + static_cast<size_t>(i) * itemsize(type);
  switch (type) {
    case IdxType::U8:
      return load<uint8_t>(p);
    case IdxType::I8:
      return load<int8_t>(p);
    case IdxType::I16:
      return load<int16_t>(p);
    case IdxType::I32:
      return load<int32_t>(p);
    case IdxType::F32:
      return load<float>(p);
    case IdxType::F64:
      return load<double>(p);
  }
  return 0;
}

IdxArray read_idx(const fs::path& path) { return read_impl(path, nullptr); }

Array<uint8_t> read_idx_images(const fs::path& path) {
  const Expect expect{0x00000803, "an IDX image file (ubyte, 3 dimensions)"};
  IdxArray a = read_impl(path, &expect);
  Array<uint8_t> out{a.shape, std::vector<uint8_t>(a.data.size())};
  std::memcpy(out.data.data(), a.data.data(), a.data.size());
  return out;
}

Array<int32_t> read_idx_labels(const fs::path& path) {
  const Expect expect{0x00000801, "an IDX label file (ubyte, 1 dimension)"};
  IdxArray a = read_impl(path, &expect);
  Array<int32_t> out{a.shape, std::vector<int32_t>(a.data.size())};
  for (size_t i = 0; i < a.data.size(); ++i) out.data[i] = static_cast<uint8_t>(a.data[i]);
  return out;
}

}  // namespace strand::io
