#include <strand/allreduce/hierarchical.hpp>

#include <algorithm>

#include <strand/allreduce/ring.hpp>

namespace strand::allreduce {

void hierarchical_allreduce(const HostGroups& g, float* data, int64_t n, size_t chunk_bytes,
                            std::vector<float>& scratch) {
  // 1) reduce within the host: a ring reduce-scatter, then each rank's reduced segment goes
  // to the host's leader.
  Group& local = g.local;
  if (local.size() > 1) {
    Ring ring(local, g.local_channel, data, n, chunk_bytes, scratch);
    ring.run(0, ring.reduce_steps(), "hierarchical allreduce (reduce within host)");
    std::vector<Pending> pending;
    auto transfer = [&](int member, bool send) {  // member's reduced segment, in chunks
      const int seg = (member + 1) % local.size();
      char* base = reinterpret_cast<char*>(data + ring.seg_offset(seg));
      const size_t bytes = size_t(ring.seg_len(seg)) * sizeof(float);
      for (size_t off = 0; off < bytes; off += chunk_bytes)
        pending.push_back(send ? local.isend(base + off, std::min(chunk_bytes, bytes - off), 0)
                               : local.irecv(base + off, std::min(chunk_bytes, bytes - off), member));
    };
    if (local.rank() == 0) {
      for (int q = 1; q < local.size(); ++q) transfer(q, false);
    } else {
      transfer(local.rank(), true);
    }
    local.wait_all(pending, "hierarchical allreduce (gather to the host leader)");
  }
  // 2) ring among the host leaders.
  if (g.leaders) {
    Ring ring(*g.leaders, g.leaders_channel, data, n, chunk_bytes, scratch);
    ring.allreduce("hierarchical allreduce (ring among hosts)");
  }
  // 3) broadcast within the host.
  send_from_root(local, data, size_t(n) * sizeof(float), 0, chunk_bytes,
                 "hierarchical allreduce (broadcast within host)");
}

}  // namespace strand::allreduce
