// libFuzzer target for the PS header decoder (ps/header.cpp), the first code that sees what
// arrives from the network. Any input must either decode or raise a Format error; a decoded
// header must re-encode to bytes that decode to the same header. Crashes, leaks, overflows and
// other exceptions are findings (built with ASan and UBSan by run_fuzz.sh).
#include <cstdlib>
#include <cstring>

#include <strand/core/error.hpp>
#include <strand/ps/header.hpp>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strand::ps;
  Header h;
  try {
    h = decode_header({reinterpret_cast<const std::byte*>(data), size});
  } catch (const strand::Error& e) {
    if (e.kind() != strand::ErrorKind::Format) std::abort();
    return 0;
  }
  const std::string again = encode_header(h);
  const Header d = decode_header({reinterpret_cast<const std::byte*>(again.data()), again.size()});
  // Floats by their bits: a NaN must come back as itself.
  const auto same_optimizer = [](const auto& a, const auto& b) {
    if (!a || !b) return !a && !b;
    return a->kind == b->kind && std::memcmp(&a->momentum, &b->momentum, 4) == 0 &&
           std::memcmp(&a->beta1, &b->beta1, 4) == 0 && std::memcmp(&a->beta2, &b->beta2, 4) == 0 &&
           std::memcmp(&a->eps, &b->eps, 4) == 0;
  };
  const bool same = d.token == h.token && d.type == h.type && d.sender == h.sender &&
                    d.request == h.request && d.step == h.step && std::memcmp(&d.lr, &h.lr, 4) == 0 &&
                    std::memcmp(&d.value, &h.value, 8) == 0 && same_optimizer(d.optimizer, h.optimizer) &&
                    d.chunks == h.chunks && d.text == h.text;
  if (!same) std::abort();
  return 0;
}
