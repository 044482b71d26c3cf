#include <strand/elastic/hosts.hpp>

#include <algorithm>
#include <charconv>

#include <strand/core/error.hpp>

namespace strand::elastic {

namespace {
std::string_view trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == s.npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}
}  // namespace

std::vector<HostSlots> parse_hosts(std::string_view text, const std::string& where) {
  std::vector<HostSlots> out;
  if (trim(text).empty()) return out;  // nothing up
  const char sep = text.find('\n') != text.npos ? '\n' : ',';
  for (size_t i = 0; i <= text.size();) {
    const size_t j = std::min(text.find(sep, i), text.size());
    std::string_view item = text.substr(i, j - i);
    i = j + 1;
    if (const size_t hash = item.find('#'); hash != item.npos) item = item.substr(0, hash);
    item = trim(item);
    if (item.empty()) {
      STRAND_CHECK(sep == '\n', Usage, "an empty entry in '" + std::string(text) + "'", where);
      continue;
    }
    HostSlots h;
    const size_t colon = item.rfind(':');
    h.host = std::string(item.substr(0, colon));
    if (colon != item.npos) {
      const std::string_view n = item.substr(colon + 1);
      const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), h.slots);
      STRAND_CHECK(ec == std::errc() && end == n.data() + n.size() && h.slots >= 1, Usage,
                   "'" + std::string(item) + "': the slots after ':' must be a whole number >= 1", where);
    }
    STRAND_CHECK(!h.host.empty() && h.host.find_first_of(" \t,") == std::string::npos, Usage,
                 "'" + std::string(item) + "' is not HOST or HOST:SLOTS", where);
    STRAND_CHECK(std::none_of(out.begin(), out.end(), [&](const HostSlots& o) { return o.host == h.host; }),
                 Usage, "host '" + h.host + "' is listed twice", where);
    out.push_back(h);
  }
  return out;
}

std::string to_string(const std::vector<HostSlots>& hosts) {
  std::string s;
  for (const HostSlots& h : hosts) s += (s.empty() ? "" : ",") + h.host + ":" + std::to_string(h.slots);
  return s.empty() ? "(none)" : s;
}

int total_slots(const std::vector<HostSlots>& hosts) {
  int n = 0;
  for (const HostSlots& h : hosts) n += h.slots;
  return n;
}

std::vector<HostSlots> take_ranks(const std::vector<HostSlots>& hosts, int ranks) {
  std::vector<HostSlots> out;
  for (const HostSlots& h : hosts) {
    if (ranks <= 0) break;
    out.push_back({h.host, std::min(h.slots, ranks)});
    ranks -= out.back().slots;
  }
  return out;
}

std::vector<HostSlots> slots_beyond(const std::vector<HostSlots>& more, const std::vector<HostSlots>& hosts) {
  std::vector<HostSlots> out;
  for (const HostSlots& m : more) {
    int have = 0;
    for (const HostSlots& h : hosts)
      if (h.host == m.host) have = h.slots;
    if (m.slots > have) out.push_back({m.host, m.slots - have});
  }
  return out;
}

}  // namespace strand::elastic
