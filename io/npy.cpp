#include <strand/io/npy.hpp>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>

#include <strand/core/error.hpp>
#include <strand/io/atomic_file.hpp>
#include <strand/io/input_file.hpp>

namespace strand::io {
namespace fs = std::filesystem;

// .npy data is stored little-endian by every writer we accept; reading and writing it
// with memcpy is only right on a little-endian host (all platforms strand targets).
static_assert(std::endian::native == std::endian::little, "strand's .npy I/O assumes a little-endian host");

const char* to_string(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::I1:
      return "|i1";
    case NpyDtype::U1:
      return "|u1";
    case NpyDtype::I2:
      return "<i2";
    case NpyDtype::U2:
      return "<u2";
    case NpyDtype::I4:
      return "<i4";
    case NpyDtype::U4:
      return "<u4";
    case NpyDtype::I8:
      return "<i8";
    case NpyDtype::U8:
      return "<u8";
    case NpyDtype::F4:
      return "<f4";
    case NpyDtype::F8:
      return "<f8";
  }
  return "?";
}

size_t itemsize(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::I1:
    case NpyDtype::U1:
      return 1;
    case NpyDtype::I2:
    case NpyDtype::U2:
      return 2;
    case NpyDtype::I4:
    case NpyDtype::U4:
    case NpyDtype::F4:
      return 4;
    case NpyDtype::I8:
    case NpyDtype::U8:
    case NpyDtype::F8:
      return 8;
  }
  return 0;
}

namespace {

constexpr std::string_view kMagic = "\x93NUMPY";
constexpr const char* kSupported = "<f4 <f8 |i1 |u1 <i2 <u2 <i4 <u4 <i8 <u8";
// np.load refuses headers over 10000 bytes by default; 1 MiB leaves ample room while
// keeping a corrupt length field from costing a large allocation.
constexpr uint64_t kMaxHeaderLen = 1 << 20;

struct Header {
  std::optional<std::string> descr;
  std::optional<bool> fortran_order;
  std::optional<std::vector<int64_t>> shape;
};

// Parser for the Python dict literal numpy writes, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// It accepts either quote style, any whitespace, trailing commas and Python 2 "3L" ints.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& where) : t_(text), where_(where) {}

  Header parse() {
    Header h;
    skip_ws();
    expect('{', "at the start of the header dict");
    for (;;) {
      skip_ws();
      if (eat('}')) break;
      const std::string key = string_literal("a key");
      skip_ws();
      expect(':', ("after key '" + key + "'").c_str());
      skip_ws();
      if (key == "descr") {
        if (peek() == '[') fail("structured dtypes (a list of fields in 'descr') are not supported");
        set(h.descr, string_literal("the 'descr' string"), key);
      } else if (key == "fortran_order") {
        set(h.fortran_order, boolean(), key);
      } else if (key == "shape") {
        set(h.shape, tuple(), key);
      } else {
        fail("unexpected key '" + key + "' (a .npy header holds exactly 'descr', 'fortran_order', 'shape')");
      }
      skip_ws();
      if (eat(',')) continue;
      if (eat('}')) break;
      fail("expected ',' or '}' after the value of '" + key + "'");
    }
    skip_ws();
    if (pos_ != t_.size()) fail("unexpected text after the closing '}'");
    if (!h.descr) fail("the header lacks the key 'descr'");
    if (!h.fortran_order) fail("the header lacks the key 'fortran_order'");
    if (!h.shape) fail("the header lacks the key 'shape'");
    return h;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    std::string shown(t_.substr(0, 200));
    while (!shown.empty() && (shown.back() == '\n' || shown.back() == ' ')) shown.pop_back();
    throw Error(ErrorKind::Format,
                "malformed .npy header: " + what + " (at character " + std::to_string(pos_) +
                    " of: " + shown + (t_.size() > 200 ? "..." : "") + ")",
                where_);
  }
  template <class T, class V>
  void set(std::optional<T>& slot, V&& value, const std::string& key) const {
    if (slot) fail("key '" + key + "' appears twice");
    slot = std::forward<V>(value);
  }
  char peek() const { return pos_ < t_.size() ? t_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < t_.size() && (t_[pos_] == ' ' || t_[pos_] == '\t' || t_[pos_] == '\n' || t_[pos_] == '\r'))
      ++pos_;
  }
  bool eat(char c) {
    if (peek() != c) return false;
    ++pos_;
    return true;
  }
  void expect(char c, const char* context) {
    if (!eat(c)) fail(std::string("expected '") + c + "' " + context);
  }
  std::string string_literal(const char* what) {
    const char q = peek();
    if (q != '\'' && q != '"') fail(std::string("expected ") + what + " in quotes");
    const size_t end = t_.find(q, pos_ + 1);
    if (end == std::string_view::npos) fail(std::string("unterminated string for ") + what);
    std::string s(t_.substr(pos_ + 1, end - pos_ - 1));
    if (s.find('\\') != std::string::npos) fail("escape sequences in strings are not supported");
    pos_ = end + 1;
    return s;
  }
  bool boolean() {
    if (t_.substr(pos_, 4) == "True") return pos_ += 4, true;
    if (t_.substr(pos_, 5) == "False") return pos_ += 5, false;
    fail("expected True or False for 'fortran_order'");
  }
  int64_t integer() {
    if (peek() < '0' || peek() > '9') fail("expected a non-negative integer in 'shape'");
    int64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      if (__builtin_mul_overflow(v, int64_t{10}, &v) || __builtin_add_overflow(v, int64_t{peek() - '0'}, &v))
        fail("dimension in 'shape' does not fit in 64 bits");
      ++pos_;
    }
    eat('L');
    return v;
  }
  std::vector<int64_t> tuple() {
    expect('(', "to open the 'shape' tuple");
    std::vector<int64_t> dims;
    skip_ws();
    if (eat(')')) return dims;
    for (;;) {
      skip_ws();
      dims.push_back(integer());
      skip_ws();
      if (eat(',')) {
        skip_ws();
        if (eat(')')) break;
        continue;
      }
      if (eat(')')) break;
      fail("expected ',' or ')' in 'shape'");
    }
    return dims;
  }

  std::string_view t_;
  size_t pos_ = 0;
  const std::string& where_;
};

NpyDtype parse_descr(const std::string& descr, const std::string& where) {
  auto unsupported = [&](const std::string& what) {
    return Error(ErrorKind::Format,
                 "unsupported dtype '" + descr + "' (" + what + "); supported: " + kSupported, where);
  };
  std::string body = descr;
  char order = '=';
  if (!body.empty() && (body[0] == '<' || body[0] == '>' || body[0] == '|' || body[0] == '=')) {
    order = body[0];
    body.erase(0, 1);
  }
  struct Known {
    const char* code;
    NpyDtype dtype;
  };
  static constexpr Known kKnown[] = {{"i1", NpyDtype::I1}, {"u1", NpyDtype::U1}, {"i2", NpyDtype::I2},
                                     {"u2", NpyDtype::U2}, {"i4", NpyDtype::I4}, {"u4", NpyDtype::U4},
                                     {"i8", NpyDtype::I8}, {"u8", NpyDtype::U8}, {"f4", NpyDtype::F4},
                                     {"f8", NpyDtype::F8}};
  for (const Known& k : kKnown) {
    if (body != k.code) continue;
    if (itemsize(k.dtype) > 1 && order == '>')
      throw Error(ErrorKind::Format,
                  "big-endian dtype '" + descr + "' is not supported; convert it with " + "a.astype('<" +
                      body + "') before saving",
                  where);
    return k.dtype;
  }
  if (body.empty()) throw unsupported("empty type code");
  switch (body[0]) {
    case 'b':
      throw unsupported("bool; save it as uint8");
    case 'f':
      throw unsupported(body == "f2" ? "float16" : "float of that size");
    case 'e':
      throw unsupported("float16");
    case 'g':
      throw unsupported("long double");
    case 'c':
      throw unsupported("complex");
    case 'U':
    case 'S':
    case 'a':
      throw unsupported("strings");
    case 'O':
      throw unsupported("Python objects");
    case 'M':
    case 'm':
      throw unsupported("datetime");
    case 'V':
      throw unsupported("raw bytes / structured");
    default:
      throw unsupported("unknown type code");
  }
}

std::string hex_bytes(const unsigned char* p, size_t n) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, "%02x", p[i]);
    s += (i ? " " : "");
    s += buf;
  }
  return s;
}

// Calls f(T{}) with T the C++ type of a's dtype.
template <class F>
void visit_dtype(NpyDtype dtype, F&& f) {
  switch (dtype) {
    case NpyDtype::I1:
      return f(int8_t{});
    case NpyDtype::U1:
      return f(uint8_t{});
    case NpyDtype::I2:
      return f(int16_t{});
    case NpyDtype::U2:
      return f(uint16_t{});
    case NpyDtype::I4:
      return f(int32_t{});
    case NpyDtype::U4:
      return f(uint32_t{});
    case NpyDtype::I8:
      return f(int64_t{});
    case NpyDtype::U8:
      return f(uint64_t{});
    case NpyDtype::F4:
      return f(float{});
    case NpyDtype::F8:
      return f(double{});
  }
}

template <class T>
std::string show(T v) {
  if constexpr (std::is_floating_point_v<T>) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
    return buf;
  } else {
    return std::to_string(v);
  }
}

void check_shape(const Shape& got, const std::optional<Shape>& expect, const std::string& where) {
  if (!expect) return;
  bool ok = got.rank() == expect->rank();
  for (size_t i = 0; ok && i < got.rank(); ++i) ok = (*expect)[i] == -1 || (*expect)[i] == got[i];
  STRAND_CHECK(ok, Shape, "expected shape " + expect->str() + " (-1: any size), found " + got.str(), where);
}

template <class T>
void write_impl(const fs::path& path, const Shape& shape, const T* data, const char* descr) {
  const std::string where = path.string();
  for (int64_t d : shape.dims())
    STRAND_CHECK(d >= 0, Usage, "cannot write a negative dimension in shape " + shape.str(), where);
  const int64_t n = shape.numel();
  STRAND_CHECK(n == 0 || data != nullptr, Usage, "no data for shape " + shape.str(), where);

  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < shape.rank(); ++i) dict += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.rank() == 1) dict += ",";  // Python's one-element tuple
  dict += "), }";
  // np.save leaves room for the first axis to grow to 21 digits (so files can be appended
  // to in place) and pads so that the data starts at a multiple of 64; we copy both rules
  // exactly, which makes our files byte-identical to numpy's.
  if (shape.rank() > 0) {
    const size_t digits = std::to_string(shape[0]).size();
    if (digits < 21) dict.append(21 - digits, ' ');
  }
  const size_t hlen = dict.size() + 1;
  dict.append(64 - (10 + hlen) % 64, ' ');
  dict += '\n';
  STRAND_CHECK(dict.size() <= 0xFFFF, Usage,
               "shape " + shape.str() + " makes the header too long for .npy version 1.0", where);

  std::string prefix(kMagic);
  prefix += '\x01';
  prefix += '\x00';
  prefix += static_cast<char>(dict.size() & 0xFF);
  prefix += static_cast<char>(dict.size() >> 8);
  write_file_atomic(path, [&](std::ostream& os) {
    os << prefix << dict;
    os.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * sizeof(T)));
  });
}

}  // namespace

NpyArray read_npy(const fs::path& path) {
  InputFile f(path);
  const std::string& where = f.where();
  STRAND_CHECK(f.size() > 0, Format, "file is empty", where);
  unsigned char b[12] = {};
  f.read(0, b, std::min<uint64_t>(f.size(), sizeof b));
  if (f.size() < kMagic.size() || std::memcmp(b, kMagic.data(), kMagic.size()) != 0) {
    std::string hint;
    if (b[0] == 0x1f && b[1] == 0x8b)
      hint = " (is it gzip-compressed? decompress it first, e.g. with gunzip)";
    if (b[0] == 'P' && b[1] == 'K')
      hint = " (this is a zip archive, e.g. an .npz: extract the .npy files from it)";
    if (b[0] == 0 && b[1] == 0 && b[2] >= 0x08 && b[2] <= 0x0E) hint = " (this looks like an IDX file)";
    throw Error(ErrorKind::Format,
                "not a .npy file: expected the magic \\x93NUMPY, found bytes " +
                    hex_bytes(b, std::min<uint64_t>(f.size(), 6)) + hint,
                where);
  }
  STRAND_CHECK(f.size() >= 10, Format,
               "file is only " + std::to_string(f.size()) + " bytes, too short for a .npy header", where);
  const unsigned major = b[6], minor = b[7];
  STRAND_CHECK(minor == 0 && major >= 1 && major <= 3, Format,
               "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                   " (strand reads 1.0, 2.0 and 3.0)",
               where);
  uint64_t prefix = 10, hlen = b[8] | (uint64_t{b[9]} << 8);
  if (major >= 2) {
    STRAND_CHECK(f.size() >= 12, Format,
                 "file is only " + std::to_string(f.size()) + " bytes, too short for a .npy " +
                     std::to_string(major) + ".0 header",
                 where);
    prefix = 12;
    hlen |= (uint64_t{b[10]} << 16) | (uint64_t{b[11]} << 24);
  }
  STRAND_CHECK(hlen <= f.size() - prefix, Format,
               "header length " + std::to_string(hlen) + " runs past the end of the file (" +
                   std::to_string(f.size()) + " bytes; truncated?)",
               where);
  STRAND_CHECK(hlen <= kMaxHeaderLen, Format,
               "header length " + std::to_string(hlen) + " is implausibly large (corrupt file?)", where);
  std::string text(hlen, '\0');
  f.read(prefix, text.data(), hlen);
  const Header h = HeaderParser(text, where).parse();

  NpyArray out;
  out.dtype = parse_descr(*h.descr, where);
  out.shape = Shape(*h.shape);
  if (*h.fortran_order) {
    // Column-major data is laid out like C order only if at most one dimension exceeds 1.
    int big = 0;
    for (int64_t d : *h.shape) big += d > 1;
    STRAND_CHECK(big <= 1, Format,
                 "fortran_order is True (column-major data of shape " + out.shape.str() +
                     "), which strand does not read; re-save it with "
                     "np.save(path, np.ascontiguousarray(a))",
                 where);
  }

  // Size check before allocating: a corrupt shape must not make us allocate terabytes.
  const uint64_t data_offset = prefix + hlen;
  const uint64_t have = f.size() - data_offset;
  uint64_t need = itemsize(out.dtype);
  bool overflow = false;
  if (std::find(h.shape->begin(), h.shape->end(), 0) != h.shape->end()) {
    need = 0;
  } else {
    for (int64_t d : *h.shape) overflow = overflow || __builtin_mul_overflow(need, uint64_t(d), &need);
  }
  if (overflow || need != have) {
    throw Error(ErrorKind::Format,
                "header declares shape " + out.shape.str() + " of " + to_string(out.dtype) + " = " +
                    (overflow ? std::string("more than 2^64") : std::to_string(need)) +
                    " bytes of data, but the file has " + std::to_string(have) + " bytes after the header" +
                    (overflow || need > have ? " (file truncated, or header corrupt)"
                                             : " (trailing bytes after the data)"),
                where);
  }
  out.data.resize(need);
  f.read(data_offset, out.data.data(), need);
  return out;
}

Array<float> npy_to_f32(const NpyArray& a, const std::string& where) {
  Array<float> out{a.shape, std::vector<float>(static_cast<size_t>(a.numel()))};
  visit_dtype(a.dtype, [&]<class T>(T) {
    const std::byte* p = a.data.data();
    for (size_t i = 0; i < out.data.size(); ++i) {
      T v;
      std::memcpy(&v, p + i * sizeof(T), sizeof(T));
      if constexpr (std::is_same_v<T, double>) {
        STRAND_CHECK(!std::isfinite(v) || std::fabs(v) <= FLT_MAX, Format,
                     "value " + show(v) + " at index " + std::to_string(i) + " is outside the float32 range",
                     where);
      } else if constexpr (std::is_integral_v<T> && sizeof(T) >= 4) {
        // float32 holds every integer up to 2^24 exactly, and not all beyond it.
        constexpr T kMax = T{1} << 24;
        bool exact = v <= kMax;
        if constexpr (std::is_signed_v<T>) exact = exact && v >= -kMax;
        STRAND_CHECK(exact, Format,
                     "value " + show(v) + " at index " + std::to_string(i) +
                         " is not exactly representable as float32 (|v| > 2^24)",
                     where);
      }
      out.data[i] = static_cast<float>(v);
    }
  });
  return out;
}

Array<int32_t> npy_to_i32(const NpyArray& a, const std::string& where) {
  Array<int32_t> out{a.shape, std::vector<int32_t>(static_cast<size_t>(a.numel()))};
  visit_dtype(a.dtype, [&]<class T>(T) {
    const std::byte* p = a.data.data();
    for (size_t i = 0; i < out.data.size(); ++i) {
      T v;
      std::memcpy(&v, p + i * sizeof(T), sizeof(T));
      if constexpr (std::is_floating_point_v<T>) {
        STRAND_CHECK(std::isfinite(v) && v == std::trunc(v), Format,
                     "value " + show(v) + " at index " + std::to_string(i) +
                         " is not an integer, so it cannot be converted to int32",
                     where);
        STRAND_CHECK(v >= -2147483648.0 && v <= 2147483647.0, Format,
                     "value " + show(v) + " at index " + std::to_string(i) + " is outside the int32 range",
                     where);
      } else {
        STRAND_CHECK(std::in_range<int32_t>(v), Format,
                     "value " + show(v) + " at index " + std::to_string(i) + " is outside the int32 range",
                     where);
      }
      out.data[i] = static_cast<int32_t>(v);
    }
  });
  return out;
}

Array<float> read_npy_f32(const fs::path& path, const std::optional<Shape>& expect) {
  NpyArray a = read_npy(path);
  check_shape(a.shape, expect, path.string());
  return npy_to_f32(a, path.string());
}

Array<int32_t> read_npy_i32(const fs::path& path, const std::optional<Shape>& expect) {
  NpyArray a = read_npy(path);
  check_shape(a.shape, expect, path.string());
  return npy_to_i32(a, path.string());
}

void write_npy(const fs::path& path, const Shape& shape, const float* data) {
  write_impl(path, shape, data, "<f4");
}

void write_npy(const fs::path& path, const Shape& shape, const int32_t* data) {
  write_impl(path, shape, data, "<i4");
}

void write_npy(const fs::path& path, const Shape& shape, const uint8_t* data) {
  write_impl(path, shape, data, "|u1");
}

}  // namespace strand::io
