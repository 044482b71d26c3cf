// Hosts and their slots, as `strand launch --hosts` and a host discovery script give them
// (Horovod's contract: the script prints one "host:slots" line per host that is up).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace strand::elastic {

struct HostSlots {
  std::string host;
  int slots = 1;
  bool operator==(const HostSlots&) const = default;
};

// "h1:2,h2:4" or one "host[:slots]" per line (blank lines and # comments skipped; nothing at all
// is no host); slots
// default to 1. Usage error naming `where` and the entry when one is malformed or repeated.
std::vector<HostSlots> parse_hosts(std::string_view text, const std::string& where);
// "h1:2,h2:4": mpirun's -H form.
std::string to_string(const std::vector<HostSlots>& hosts);
int total_slots(const std::vector<HostSlots>& hosts);
// The first hosts in order, their slots cut so that they hold at most `ranks` ranks.
std::vector<HostSlots> take_ranks(const std::vector<HostSlots>& hosts, int ranks);
// The slots of `more` that `hosts` does not have (a host's extra slots, hosts it lacks), in order.
std::vector<HostSlots> slots_beyond(const std::vector<HostSlots>& more, const std::vector<HostSlots>& hosts);

}  // namespace strand::elastic
