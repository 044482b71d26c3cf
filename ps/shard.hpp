// ps/shard — how a model's flat parameter buffer is cut into chunks and spread over servers.
// Every worker and server computes the same ShardMap from (floats, chunk size, servers), so
// the map itself never travels.
//
// Chunks are fixed ranges [begin, end) of the flat buffer, chunk_floats long (the last may be
// shorter); they are the unit of a push, a pull and of the server's optimizer state. Greedy
// assignment: chunks in order of decreasing size, each to the server holding the fewest bytes
// so far (ties: the lower index). Deterministic, and no server holds more than one chunk
// beyond any other.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace strand::ps {

// 1 MiB: a loopback/LAN send of 1 MiB takes a few hundred microseconds, so the per-message
// cost (tens of microseconds) stays under ~10% (see bench/results/ps.md); mnist_cnn's 13 MB
// of parameters form 13 chunks, so the first pushes leave while backward computes the earlier
// layers, and two servers hold 7 and 6 chunks.
inline constexpr int64_t kDefaultChunkBytes = int64_t(1) << 20;

struct Chunk {
  int64_t begin = 0, end = 0;  // floats in the flat buffer
  int server = 0;
  int64_t size() const { return end - begin; }
};

struct ShardMap {
  int64_t floats = 0;
  int64_t chunk_floats = 0;
  int servers = 0;
  std::vector<Chunk> chunks;          // in buffer order; chunk id = index
  std::vector<int64_t> server_bytes;  // per server

  // Usage error unless floats >= 1, chunk_bytes is a positive multiple of 4 and servers >= 1.
  static ShardMap build(int64_t floats, int64_t chunk_bytes, int servers);
  std::vector<uint32_t> chunks_of(int server) const;
  int64_t max_chunk_floats() const;
  // "5 chunks of 1048576 bytes over 2 servers: server 0 3 chunks 3145728 bytes, ..."
  std::string describe() const;
};

}  // namespace strand::ps
