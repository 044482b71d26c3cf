// libFuzzer target for the request parsers (tests/serve/fuzz_request.sh builds and runs it).
// The first byte picks the parser (bits 0-1) and the instance spec (bit 2: one channel, or
// three, whose channels-last form is transposed); the rest is the body. Any input must either
// parse into a batch of exactly rows * size finite floats or be refused with
// strand::Error(Format).
// A simplified-JSON list (which may take the parser's fast path) must also give the same floats,
// bit for bit, as the general path gives for the same list inside {"instances": ...}, and the
// same answer (floats or error message) when parsed in two halves on lent threads.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>

#include <strand/core/error.hpp>
#include <strand/serve/request.hpp>

namespace {

// The simplified-JSON parse as "rows:floats" or the error message, with or without two halves.
std::string simplified(std::string_view body, const strand::serve::InstanceSpec& spec, bool halves) {
  static const strand::serve::ParseThreads serial{[](int parts, const std::function<void(int)>& f) {
                                                    for (int p = 0; p < parts; ++p) f(p);
                                                  },
                                                  0};
  strand::serve::JsonParser parser;
  try {
    const auto in = strand::serve::parse_sagemaker_json(body, spec, parser, halves ? &serial : nullptr);
    return std::to_string(in.rows) + ":" +
           std::string(reinterpret_cast<const char*>(in.x.data()), in.x.size() * sizeof(float));
  } catch (const strand::Error& e) {
    return e.message();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // Small instances so the fuzzer reaches valid bodies: 6 numbers, or [2,3], [2,3,1], [1,2,3];
  // 12 numbers, or [2,2,3] (channels-last), [3,2,2].
  static const strand::serve::InstanceSpec specs[2] = {
      strand::serve::instance_spec(strand::Shape{1, 2, 3}, "x"),
      strand::serve::instance_spec(strand::Shape{3, 2, 2}, "x")};
  const strand::serve::InstanceSpec& spec = specs[(data[0] >> 2) & 1];
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    strand::serve::Instances in;
    switch (data[0] % 4) {
      case 0:
        in = strand::serve::parse_tfs_json(body, spec);
        break;
      case 1:
        in = strand::serve::parse_sagemaker_json(body, spec);
        break;
      case 2:
        in = strand::serve::parse_json_lines(body, spec);
        break;
      default:
        in = strand::serve::parse_csv(body, spec);
        break;
    }
    if (in.rows < 1 || in.x.size() != size_t(in.rows * spec.size)) std::abort();
    for (float v : in.x)
      if (!std::isfinite(v)) std::abort();
    const size_t first = body.find_first_not_of(" \t\r\n");
    if (data[0] % 4 == 1 && first != std::string_view::npos && body[first] == '[') {
      // The body is a list of instances or one instance: one of the two wrappings must match.
      bool same = false;
      for (const std::string& list : {std::string(body), "[" + std::string(body) + "]"}) {
        try {
          const auto general = strand::serve::parse_tfs_json("{\"instances\": " + list + "}", spec);
          same = same || (general.rows == in.rows &&
                          std::memcmp(general.x.data(), in.x.data(), in.x.size() * sizeof(float)) == 0);
        } catch (const strand::Error&) {
        }
      }
      if (!same) std::abort();
    }
  } catch (const strand::Error& e) {
    if (e.kind() != strand::ErrorKind::Format) std::abort();
  }
  if (data[0] % 4 == 1 && simplified(body, spec, false) != simplified(body, spec, true)) std::abort();
  return 0;
}
