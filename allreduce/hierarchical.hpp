// The hierarchical allreduce, composed from rings over the groups of a multi-host job:
// 1) reduce within the host (a ring reduce-scatter over the host's ranks, then each rank's
// reduced segment goes to the host's leader, local rank 0), 2) a ring among the hosts'
// leaders, 3) a broadcast from the leader within the host. Internal to the allreduce module.
#pragma once

#include <cstdint>
#include <vector>

#include <strand/allreduce/group.hpp>
#include <strand/allreduce/shm_channel.hpp>

namespace strand::allreduce {

// The groups one rank takes part in; the channels are null where the ring runs over MPI.
struct HostGroups {
  Group& local;                 // this host's ranks; local rank 0 leads
  ShmChannel* local_channel;    // over `local`
  Group* leaders;               // one rank per host: only on a host's leader, else null
  ShmChannel* leaders_channel;  // over `leaders`
};

// Collective over every rank of the job: data[0, n) becomes the sum over all of them.
// `chunk_bytes` and `scratch` as for Ring.
void hierarchical_allreduce(const HostGroups& g, float* data, int64_t n, size_t chunk_bytes,
                            std::vector<float>& scratch);

}  // namespace strand::allreduce
