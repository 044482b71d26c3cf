// libFuzzer target for the PS header decoder (ps/header.cpp), the first code that sees what
// arrives from the network. Any input must either decode or raise a Format error; a decoded
// header must re-encode to bytes that decode to the same header. Crashes, leaks, overflows and
// other exceptions are findings (built with ASan and UBSan by run_fuzz.sh).
#include <cstdlib>
#include <cstring>

#include "core/error.hpp"
#include "ps/header.hpp"

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
  const bool same = d.token == h.token && d.type == h.type && d.sender == h.sender && d.request == h.request &&
                    d.step == h.step && std::memcmp(&d.lr, &h.lr, 4) == 0 &&
                    std::memcmp(&d.value, &h.value, 8) == 0 && d.optimizer == h.optimizer &&
                    std::memcmp(d.hyper.data(), h.hyper.data(), 16) == 0 && d.chunks == h.chunks && d.text == h.text;
  if (!same) std::abort();
  return 0;
}
