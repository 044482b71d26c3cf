#include <strand/serve/request.hpp>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

#include <simdjson.h>

#include <strand/core/error.hpp>
#include <strand/core/text.hpp>

namespace strand::serve {

namespace dom = simdjson::dom;

namespace {

// Instances are at most 3 levels deep ([H,W,C]); a list of them 4, a request object 6.
// Anything deeper is refused by simdjson before we look at it.
constexpr size_t kMaxDepth = 16;

[[noreturn]] void fail(const std::string& message) {
  throw Error(ErrorKind::Format, message, "request body");
}

std::string shape_str(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

const char* type_name(dom::element_type t) {
  switch (t) {
    case dom::element_type::ARRAY:
      return "a list";
    case dom::element_type::OBJECT:
      return "an object";
    case dom::element_type::STRING:
      return "a string";
    case dom::element_type::BOOL:
      return "a boolean";
    case dom::element_type::NULL_VALUE:
      return "null";
    default:
      return "a number";
  }
}

// The shape found by following first elements down (a number has shape []).
std::vector<int64_t> leading_shape(dom::element e) {
  std::vector<int64_t> dims;
  while (e.type() == dom::element_type::ARRAY) {
    dom::array a = e.get_array().value_unsafe();
    dims.push_back(int64_t(a.size()));
    if (a.size() == 0) break;
    e = *a.begin();
  }
  return dims;
}

// The float value of a number in an instance; a non-number or a value beyond float range is
// refused naming the instance and the value's flat index.
float to_float(dom::element v, const std::string& where, int64_t index) {
  double d = 0;
  if (v.get_double().get(d))
    fail(where + ", value " + std::to_string(index) + ": " + type_name(v.type()) + ", not a number");
  if (!(std::fabs(d) <= double(std::numeric_limits<float>::max()))) {
    char buf[32];
    fail(where + ", value " + std::to_string(index) + ": " +
         std::string(buf, std::to_chars(buf, buf + sizeof(buf), d).ptr) + " is out of float range");
  }
  return float(d);
}

// The fast path for the body nearly every client sends: simplified JSON that is a list of
// flat instances ([[n, ...], ...]) or one flat instance ([n, ...]). It scans the text once and
// writes floats straight into the batch, which costs a fraction of building simdjson's DOM and
// walking it (most of a 50-image request's overhead). It gives the same floats as the general
// path, bit for bit: a number is converted only where the result is exactly simdjson's
// (<= 2^53 mantissa, power-of-ten exponent within +-22: one correctly rounded IEEE operation,
// Clinger's fast path); for anything else -- another shape, a wrong count, invalid JSON, a
// number it cannot convert exactly -- it returns false and the general path parses the body,
// with its error messages.
class FastSimplified {
 public:
  FastSimplified(std::string_view text, int64_t size)
      : p_(text.data()), end_(text.data() + text.size()), size_(size) {}

  bool parse(Instances& out) {
    if (size_ < 1) return false;
    ws();
    if (!eat('[')) return false;
    ws();
    if (p_ < end_ && *p_ != '[') {  // one flat instance
      out.x.resize(size_t(size_));
      if (!numbers(out.x.data())) return false;
      out.rows = 1;
      return end();
    }
    // A list of instances.
    reserve_rows(out);
    while (true) {
      if (!row(out)) return false;
      ws();
      if (eat(']')) return end();
      if (!eat(',')) return false;
    }
  }

  // A run of flat instances with no enclosing brackets, "[n, ...], [n, ...]" (a piece of a
  // list cut at a row boundary): at least one, and nothing after the last.
  bool rows(Instances& out) {
    if (size_ < 1) return false;
    reserve_rows(out);
    while (true) {
      if (!row(out)) return false;
      if (end()) return true;
      if (!eat(',')) return false;
    }
  }

  static bool space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

 private:
  static bool digit(char c) { return c >= '0' && c <= '9'; }
  // Eight digits at s as a number, or -1 if they are not all digits (SWAR: a float's fraction
  // is usually 8 or 9 digits, and a byte at a time is most of the scan).
  static int64_t eight_digits(const char* s) {
    static_assert(std::endian::native == std::endian::little, "the first digit must be the low byte");
    uint64_t v;
    std::memcpy(&v, s, 8);
    if ((v & 0xF0F0F0F0F0F0F0F0) != 0x3030303030303030 ||
        ((v + 0x0606060606060606) & 0xF0F0F0F0F0F0F0F0) != 0x3030303030303030)
      return -1;
    v -= 0x3030303030303030;
    v = v * 10 + (v >> 8);
    v = (((v & 0x000000FF000000FF) * (100 + (1000000ULL << 32))) +
         (((v >> 16) & 0x000000FF000000FF) * (1 + (10000ULL << 32)))) >>
        32;
    return int64_t(v);
  }
  // Appends the digits at s to m; returns the end of the run.
  const char* digits_into(const char* s, uint64_t& m, int& count) const {
    for (int64_t eight; end_ - s >= 8 && (eight = eight_digits(s)) >= 0; s += 8, count += 8)
      m = m * 100000000 + uint64_t(eight);
    for (; s < end_ && digit(*s); ++s, ++count) m = m * 10 + uint64_t(*s - '0');
    return s;
  }
  void ws() {
    while (p_ < end_ && space(*p_)) ++p_;
  }
  bool eat(char c) {
    if (p_ == end_ || *p_ != c) return false;
    ++p_;
    return true;
  }
  // Each number takes at least two bytes (a digit and ',' or ']'), which bounds the rows, so
  // the batch is allocated once.
  void reserve_rows(Instances& out) const {
    out.x.reserve((size_t(end_ - p_) / size_t(2 * size_) + 1) * size_t(size_));
  }
  // One flat instance, "[n, ...]", appended to the batch.
  bool row(Instances& out) {
    ws();
    if (!eat('[')) return false;
    ws();
    out.x.resize(out.x.size() + size_t(size_));
    if (!numbers(out.x.data() + out.x.size() - size_t(size_))) return false;
    ++out.rows;
    return true;
  }
  // After the closing ']' of the body: only whitespace may follow.
  bool end() {
    ws();
    return p_ == end_;
  }

  // Exactly size_ numbers, then ']' (the '[' is already read).
  bool numbers(float* dst) {
    static constexpr char kZeros[] = "0,0,0,0,";
    for (int64_t i = 0;;) {
      // Runs of zeros (most of an image's background) four at a time; the comma after the
      // fourth means a fifth number follows.
      while (i + 4 < size_ && end_ - p_ >= 8 && std::memcmp(p_, kZeros, 8) == 0) {
        std::fill_n(dst + i, 4, 0.0f);
        i += 4;
        p_ += 8;
      }
      if (!number(dst[i])) return false;
      ws();
      if (++i == size_) return eat(']');
      if (!eat(',')) return false;
      ws();
    }
  }

  // One JSON number, converted as simdjson converts it (integers via int64, others correctly
  // rounded to double), then to float as the general path does.
  bool number(float& out) {
    static constexpr double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                        1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                        1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char* s = p_;
    const bool negative = s < end_ && *s == '-';
    if (negative) ++s;
    if (s == end_) return false;
    uint64_t m = 0;
    int digits = 0, exp10 = 0;
    if (*s == '0') {
      ++s;
    } else if (digit(*s)) {
      s = digits_into(s, m, digits);
    } else {
      return false;
    }
    bool integer = true;
    if (s < end_ && *s == '.') {
      integer = false;
      const char* first = ++s;
      s = digits_into(s, m, digits);
      if (s == first) return false;
      exp10 = -int(s - first);
    }
    if (s < end_ && (*s == 'e' || *s == 'E')) {
      integer = false;
      ++s;
      const bool minus = s < end_ && *s == '-';
      if (s < end_ && (*s == '-' || *s == '+')) ++s;
      const char* first = s;
      int e = 0;
      for (; s < end_ && digit(*s) && s - first < 4; ++s) e = e * 10 + (*s - '0');
      if (s == first || (s < end_ && digit(*s))) return false;
      exp10 += minus ? -e : e;
    }
    // More than 19 digits may have wrapped m; beyond 2^53 the conversion is not exact.
    if (digits > 19 || m > (uint64_t(1) << 53)) return false;
    double d = 0;
    if (integer) {
      d = double(negative ? -int64_t(m) : int64_t(m));
    } else {
      if (exp10 < -22 || exp10 > 22) return false;
      d = exp10 < 0 ? double(m) / kPow10[-exp10] : double(m) * kPow10[exp10];
      if (negative) d = -d;
    }
    out = float(d);  // |d| < 1e38: within float range by construction
    p_ = s;
    return true;
  }

  const char* p_;
  const char* end_;
  int64_t size_;
};

class JsonReader {
 public:
  JsonReader(const InstanceSpec& spec, dom::parser& parser) : spec_(spec), parser_(parser) {}

  dom::element parse(std::string_view text, const std::string& where) {
    if (parser_.capacity() < text.size() || parser_.max_depth() != kMaxDepth) {
      if (parser_.allocate(std::max<size_t>(text.size(), 4096), kMaxDepth))
        fail("out of memory parsing " + where);
    }
    dom::element doc;
    if (const auto err = parser_.parse(text.data(), text.size()).get(doc)) {
      if (err == simdjson::DEPTH_ERROR)
        fail(where + ": JSON nested deeper than " + std::to_string(kMaxDepth) + " levels");
      if (err == simdjson::EMPTY) fail(where + " is empty");
      fail(where + " is not valid JSON: " + simdjson::error_message(err));
    }
    return doc;
  }

  // One instance: a flat list, a nested list of an accepted shape, or {"<input>": either}.
  void instance(dom::element e, const std::string& where) {
    if (e.type() == dom::element_type::OBJECT) {
      dom::element value;
      bool found = false;
      for (auto kv : dom::object(e.get_object().value_unsafe())) {
        if (kv.key != spec_.input_name)
          fail(where + ": unknown input '" + std::string(kv.key) + "' (the signature's input is '" +
               spec_.input_name + "')");
        value = kv.value;
        found = true;
      }
      if (!found) fail(where + ": empty object, expected {\"" + spec_.input_name + "\": [...]}");
      e = value;
    }
    const std::vector<int64_t> dims = leading_shape(e);
    const bool flat = dims.size() == 1 && dims[0] == spec_.size;
    const InstanceShape* form = flat ? nullptr : nested_form(dims);
    if (!flat && !form) {
      std::string want = "expected a list of " + std::to_string(spec_.size) + " numbers";
      for (size_t i = 0; i < spec_.shapes.size(); ++i)
        want += (i ? " or " : " or a nested list of shape ") + spec_.shapes[i].dims.str();
      const std::string got = dims.empty()       ? std::string(type_name(e.type()))
                              : dims.size() == 1 ? "a list of " + std::to_string(dims[0])
                                                 : "nested lists of shape " + shape_str(dims);
      fail(where + ": " + want + ", got " + got);
    }
    const size_t start = out_.x.size();
    out_.x.resize(start + size_t(spec_.size));  // the form fixed the count; copy() checks every level
    int64_t index = 0;
    if (form && form->channels_last) {
      scratch_.resize(size_t(spec_.size));
      float* dst = scratch_.data();
      copy(e, dims, 0, where, dst, index);
      to_channels_first(scratch_.data(), dims[0], dims[1], dims[2], out_.x.data() + start);
    } else {
      float* dst = out_.x.data() + start;
      copy(e, dims, 0, where, dst, index);
    }
    ++out_.rows;
  }

  // A list whose elements are instances.
  void instances(dom::element e, const std::string& what) {
    if (e.type() != dom::element_type::ARRAY)
      fail("'" + what + "' must be a list of instances, got " + type_name(e.type()));
    dom::array a = e.get_array().value_unsafe();
    if (a.size() == 0) fail("'" + what + "' is an empty list");
    out_.x.reserve(out_.x.size() + a.size() * size_t(spec_.size));
    for (dom::element i : a) instance(i, "instance " + std::to_string(out_.rows));
  }

  // The simplified form: one instance if its shape is an instance's, else a list of them.
  void simplified(dom::element e) {
    if (e.type() == dom::element_type::OBJECT) return instance(e, "instance " + std::to_string(out_.rows));
    if (e.type() != dom::element_type::ARRAY)
      fail("expected a list of instances or one instance, got " + std::string(type_name(e.type())));
    // [784 numbers] or [[28 numbers] x 28] is one instance; so is a list of numbers of any
    // length (refused as one instance of the wrong size); otherwise a list of instances.
    dom::array a = e.get_array().value_unsafe();
    const bool one =
        accepted(leading_shape(e)) || a.size() == 0 ||
        ((*a.begin()).type() != dom::element_type::ARRAY && (*a.begin()).type() != dom::element_type::OBJECT);
    if (one) return instance(e, "instance " + std::to_string(out_.rows));
    instances(e, "body");
  }

  // {"instances": [...]} or {"inputs": ...}, with an optional "signature_name".
  void tfs(dom::object o) {
    bool seen = false;
    for (auto kv : o) {
      if (kv.key == "signature_name") {
        if (kv.value.type() != dom::element_type::STRING) fail("'signature_name' must be a string");
        out_.signature_name = std::string(kv.value.get_string().value_unsafe());
      } else if (kv.key == "instances" || kv.key == "inputs") {
        if (seen)
          fail("a request has either 'instances' (row format) or 'inputs' (columnar format), not both");
        seen = true;
        if (kv.key == "instances") {
          out_.layout = Layout::Row;
          instances(kv.value, "instances");
        } else {
          out_.layout = Layout::Columnar;
          columnar(kv.value);
        }
      } else {
        fail("unknown key '" + std::string(kv.key) +
             "' (expected 'instances' or 'inputs', and optionally 'signature_name')");
      }
    }
    if (!seen) fail("the JSON object has neither 'instances' (row format) nor 'inputs' (columnar format)");
  }

  static bool is_request(dom::element e) {
    dom::object o;
    if (e.get_object().get(o)) return false;
    for (auto kv : o)
      if (kv.key == "instances" || kv.key == "inputs") return true;
    return false;
  }

  Instances take() { return std::move(out_); }

 private:
  // "inputs": the batch tensor, or {"<input>": the batch tensor}.
  void columnar(dom::element e) {
    if (e.type() == dom::element_type::OBJECT) {
      bool found = false;
      for (auto kv : dom::object(e.get_object().value_unsafe())) {
        if (kv.key != spec_.input_name)
          fail("inputs: unknown input '" + std::string(kv.key) + "' (the signature's input is '" +
               spec_.input_name + "')");
        found = true;
        e = kv.value;
      }
      if (!found) fail("inputs: empty object, expected {\"" + spec_.input_name + "\": [...]}");
    }
    instances(e, "inputs");
  }

  bool accepted(const std::vector<int64_t>& dims) const {
    return (dims.size() == 1 && dims[0] == spec_.size) || nested_form(dims);
  }
  const InstanceShape* nested_form(const std::vector<int64_t>& dims) const {
    for (const InstanceShape& s : spec_.shapes)
      if (s.dims.dims() == dims) return &s;
    return nullptr;
  }

  // [H][W][C] as read -> [C][H][W].
  static void to_channels_first(const float* hwc, int64_t h, int64_t w, int64_t c, float* chw) {
    for (int64_t i = 0; i < h * w; ++i)
      for (int64_t k = 0; k < c; ++k) chw[k * h * w + i] = hwc[i * c + k];
  }

  // Copies a list of shape dims[depth:] to dst (checked at every level: ragged lists are
  // refused). The innermost lists, where nearly all the time goes, are a flat loop.
  void copy(dom::element e, const std::vector<int64_t>& dims, size_t depth, const std::string& where,
            float*& dst, int64_t& index) {
    if (e.type() != dom::element_type::ARRAY)
      fail(where + ", value " + std::to_string(index) + ": " + type_name(e.type()) + " where a list of " +
           std::to_string(dims[depth]) + " was expected");
    dom::array a = e.get_array().value_unsafe();
    if (int64_t(a.size()) != dims[depth])
      fail(where + ", value " + std::to_string(index) + ": a list of " + std::to_string(a.size()) +
           " where " + std::to_string(dims[depth]) + " were expected (ragged nesting)");
    if (depth + 1 == dims.size()) {
      for (dom::element c : a) *dst++ = to_float(c, where, index++);
      return;
    }
    for (dom::element c : a) copy(c, dims, depth + 1, where, dst, index);
  }

  const InstanceSpec& spec_;
  dom::parser& parser_;
  Instances out_;
  std::vector<float> scratch_;  // a channels-last instance as sent, before the transpose
};

// Calls f(line, number) for each line (1-based), without the trailing '\n'.
template <class F>
void for_each_line(std::string_view body, F f) {
  int64_t n = 0;
  while (!body.empty()) {
    const size_t end = body.find('\n');
    f(body.substr(0, end), ++n);
    if (end == std::string_view::npos) break;
    body.remove_prefix(end + 1);
  }
}

// A printable excerpt of a bad field: at most 20 bytes, non-ASCII bytes shown as '?'.
std::string excerpt(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 20))
    out += (static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f) ? c : '?';
  return s.size() > 20 ? out + "..." : out;
}

}  // namespace

InstanceSpec instance_spec(const Shape& input, const std::string& input_name) {
  InstanceSpec spec;
  spec.input_name = input_name;
  spec.size = input.numel();
  // A form already listed keeps its meaning: this is where channels-last wins over
  // channels-first when C = H = W.
  auto add = [&](Shape dims, bool channels_last) {
    if (dims.rank() < 2) return;
    for (const InstanceShape& s : spec.shapes)
      if (s.dims == dims) return;
    spec.shapes.push_back({std::move(dims), channels_last});
  };
  std::vector<int64_t> squeezed;
  for (int64_t d : input.dims())
    if (d != 1) squeezed.push_back(d);
  if (squeezed.size() != input.rank()) add(Shape(squeezed), false);  // size-1 dims dropped: same order
  if (input.rank() == 3) add(input.channels_last(), input[0] > 1);
  add(input, false);
  return spec;
}

struct JsonParser::Impl {
  dom::parser parser;
};

JsonParser::JsonParser() : impl_(std::make_unique<Impl>()) {}
JsonParser::~JsonParser() = default;
size_t JsonParser::capacity() const { return impl_->parser.capacity(); }

JsonParsers::Lease JsonParsers::acquire() {
  std::unique_ptr<JsonParser> p;
  {
    std::lock_guard lk(mu_);
    if (!free_.empty()) {
      p = std::move(free_.back());
      free_.pop_back();
    }
  }
  return Lease(*this, p ? std::move(p) : std::make_unique<JsonParser>());
}

void JsonParsers::give_back(std::unique_ptr<JsonParser> p) {
  if (p->capacity() > keep_capacity_) return;
  std::lock_guard lk(mu_);
  if (free_.size() < keep_) free_.push_back(std::move(p));
}

Instances parse_tfs_json(std::string_view body, const InstanceSpec& spec, JsonParser& parser) {
  JsonReader r(spec, parser.impl().parser);
  dom::element doc = r.parse(body, "the body");
  if (doc.type() != dom::element_type::OBJECT)
    fail("the body must be a JSON object with 'instances' or 'inputs', got " +
         std::string(type_name(doc.type())));
  r.tfs(doc.get_object().value_unsafe());
  return r.take();
}

// A list of flat instances as two halves, cut at the row boundary ("]" "," "[", spaces between
// allowed) nearest after the middle, parsed at once; false when there is no such boundary or a
// half is not a run of flat instances (the caller then parses the body whole).
bool parse_halves(std::string_view body, int64_t size, const ParseThreads& threads, Instances& out) {
  size_t b = 0, e = body.size();
  while (b < e && FastSimplified::space(body[b])) ++b;
  while (e > b && FastSimplified::space(body[e - 1])) --e;
  if (e - b < 4 || body[b] != '[' || body[e - 1] != ']') return false;
  const std::string_view rows = body.substr(b + 1, e - b - 2);
  size_t cut = std::string_view::npos;
  for (size_t i = rows.find(']', rows.size() / 2);
       i != std::string_view::npos && cut == std::string_view::npos; i = rows.find(']', i + 1)) {
    size_t j = i + 1;
    while (j < rows.size() && FastSimplified::space(rows[j])) ++j;
    if (j == rows.size() || rows[j] != ',') continue;
    size_t k = j + 1;
    while (k < rows.size() && FastSimplified::space(rows[k])) ++k;
    if (k < rows.size() && rows[k] == '[') cut = j;
  }
  if (cut == std::string_view::npos) return false;
  const std::string_view halves[2] = {rows.substr(0, cut), rows.substr(cut + 1)};
  Instances parsed[2];
  bool ok[2] = {false, false};
  threads.run(2, [&](int h) { ok[h] = FastSimplified(halves[h], size).rows(parsed[h]); });
  if (!ok[0] || !ok[1]) return false;
  out.rows = parsed[0].rows + parsed[1].rows;
  out.x = std::move(parsed[0].x);
  out.x.insert(out.x.end(), parsed[1].x.begin(), parsed[1].x.end());
  return true;
}

Instances parse_sagemaker_json(std::string_view body, const InstanceSpec& spec, JsonParser& parser,
                               const ParseThreads* threads) {
  if (threads && body.size() >= threads->min_bytes) {
    if (Instances fast; parse_halves(body, spec.size, *threads, fast)) return fast;
  }
  if (Instances fast; FastSimplified(body, spec.size).parse(fast)) return fast;
  JsonReader r(spec, parser.impl().parser);
  dom::element doc = r.parse(body, "the body");
  if (JsonReader::is_request(doc))
    r.tfs(doc.get_object().value_unsafe());
  else
    r.simplified(doc);
  return r.take();
}

Instances parse_json_lines(std::string_view body, const InstanceSpec& spec, JsonParser& parser) {
  JsonReader r(spec, parser.impl().parser);
  for_each_line(body, [&](std::string_view line, int64_t n) {
    if (trim(line).empty()) return;
    const std::string where = "line " + std::to_string(n);
    dom::element doc = r.parse(line, where);  // its errors name the line
    try {
      if (JsonReader::is_request(doc))
        r.tfs(doc.get_object().value_unsafe());
      else
        r.simplified(doc);
    } catch (const Error& e) {
      fail(where + ": " + e.message());
    }
  });
  Instances out = r.take();
  out.layout = Layout::Row;
  if (out.rows == 0) fail("the body has no JSON lines");
  return out;
}

Instances parse_tfs_json(std::string_view body, const InstanceSpec& spec) {
  JsonParser p;
  return parse_tfs_json(body, spec, p);
}
Instances parse_sagemaker_json(std::string_view body, const InstanceSpec& spec) {
  JsonParser p;
  return parse_sagemaker_json(body, spec, p);
}
Instances parse_json_lines(std::string_view body, const InstanceSpec& spec) {
  JsonParser p;
  return parse_json_lines(body, spec, p);
}

Instances parse_csv(std::string_view body, const InstanceSpec& spec) {
  Instances out;
  out.x.reserve(size_t(spec.size) * size_t(1 + std::count(body.begin(), body.end(), '\n')));
  for_each_line(body, [&](std::string_view line, int64_t n) {
    line = trim(line);
    if (line.empty()) return;  // blank lines (a trailing newline) carry no row
    const std::string where = "row " + std::to_string(n);
    int64_t column = 0;
    while (true) {
      const size_t comma = line.find(',');
      const std::string_view field = trim(line.substr(0, comma));
      ++column;
      if (column > spec.size) fail(where + " has more than " + std::to_string(spec.size) + " values");
      float v = 0;
      const auto [ptr, ec] = std::from_chars(field.data(), field.data() + field.size(), v);
      if (field.empty() || ec == std::errc::invalid_argument || ptr != field.data() + field.size())
        fail(where + ", column " + std::to_string(column) + ": '" + excerpt(field) + "' is not a number");
      if (ec == std::errc::result_out_of_range || !std::isfinite(v))
        fail(where + ", column " + std::to_string(column) + ": '" + excerpt(field) +
             "' is not a finite float");
      out.x.push_back(v);
      if (comma == std::string_view::npos) break;
      line.remove_prefix(comma + 1);
    }
    if (column != spec.size)
      fail(where + " has " + std::to_string(column) + " values, expected " + std::to_string(spec.size));
    ++out.rows;
  });
  if (out.rows == 0) fail("the CSV body has no rows");
  return out;
}

}  // namespace strand::serve
