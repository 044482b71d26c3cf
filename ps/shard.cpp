#include <strand/ps/shard.hpp>

#include <algorithm>
#include <numeric>

#include <strand/core/error.hpp>

namespace strand::ps {

ShardMap ShardMap::build(int64_t floats, int64_t chunk_bytes, int servers) {
  const std::string where = "PS shard map";
  STRAND_CHECK(floats >= 1, Usage, "nothing to shard (" + std::to_string(floats) + " parameters)", where);
  STRAND_CHECK(chunk_bytes >= 4 && chunk_bytes % 4 == 0, Usage,
               "chunk size must be a positive multiple of 4 bytes, got " + std::to_string(chunk_bytes),
               where);
  STRAND_CHECK(servers >= 1, Usage, "at least one server is needed, got " + std::to_string(servers), where);
  ShardMap m;
  m.floats = floats;
  m.chunk_floats = chunk_bytes / 4;
  m.servers = servers;
  const int64_t count = (floats + m.chunk_floats - 1) / m.chunk_floats;
  STRAND_CHECK(count <= int64_t(UINT32_MAX), Usage,
               std::to_string(count) + " chunks are too many; use larger chunks", where);
  for (int64_t i = 0; i < count; ++i)
    m.chunks.push_back({i * m.chunk_floats, std::min(floats, (i + 1) * m.chunk_floats), 0});
  std::vector<size_t> order(m.chunks.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return m.chunks[a].size() > m.chunks[b].size(); });
  m.server_bytes.assign(size_t(servers), 0);
  for (size_t c : order) {
    const auto least = std::min_element(m.server_bytes.begin(), m.server_bytes.end());
    m.chunks[c].server = int(least - m.server_bytes.begin());
    *least += m.chunks[c].size() * 4;
  }
  return m;
}

std::vector<uint32_t> ShardMap::chunks_of(int server) const {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < chunks.size(); ++i)
    if (chunks[i].server == server) out.push_back(uint32_t(i));
  return out;
}

int64_t ShardMap::max_chunk_floats() const { return chunks.empty() ? 0 : chunks.front().size(); }

std::string ShardMap::describe() const {
  std::string s = std::to_string(chunks.size()) + " chunks of " + std::to_string(chunk_floats * 4) +
                  " bytes over " + std::to_string(servers) + (servers == 1 ? " server:" : " servers:");
  for (int i = 0; i < servers; ++i)
    s += std::string(i ? "," : "") + " server " + std::to_string(i) + " " +
         std::to_string(chunks_of(i).size()) + " chunks " + std::to_string(server_bytes[size_t(i)]) +
         " bytes";
  return s;
}

}  // namespace strand::ps
