#include <strand/ps/consistency.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <vector>

namespace strand::ps {

Consistency Consistency::parse(const std::string& text) {
  Consistency c;
  if (text == "sync") return c;
  if (text == "async") {
    c.mode = Async;
    return c;
  }
  if (text.rfind("ssp:", 0) == 0) {
    const std::string n = text.substr(4);
    const bool digits = !n.empty() && n.size() <= 6 &&
                        std::all_of(n.begin(), n.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    if (digits) {
      c.mode = Ssp;
      c.staleness = std::stoi(n);
      return c;
    }
  }
  throw Error(ErrorKind::Usage,
              "unknown consistency mode '" + text + "' (choose sync, async or ssp:S with S >= 0)", "PS");
}

std::string Consistency::str() const {
  return mode == Sync ? "sync" : mode == Async ? "async" : "ssp:" + std::to_string(staleness);
}

namespace {

const float* floats(const Message& m) { return reinterpret_cast<const float*>(m.data()); }

class SyncPolicy final : public ConsistencyPolicy {
 public:
  SyncPolicy(const ShardMap& map, int server, int workers, PolicyHost& host)
      : host_(host), acc_(size_t(map.max_chunk_floats())) {
    for (uint32_t id : map.chunks_of(server)) rounds_[id].n = map.chunks[id].size();
    grow(workers);
  }

  void check_push(uint32_t id, int worker, int64_t step) const override {
    const Round& r = rounds_.at(id);
    const bool has = r.has[size_t(worker)];
    if (step != r.version || has)
      throw Refusal(ErrorKind::Usage, "push of step " + std::to_string(step) + " for chunk " +
                                          std::to_string(id) + ", which is collecting step " +
                                          std::to_string(r.version) +
                                          (has ? " and has this worker's gradient" : ""));
  }

  int64_t push(uint32_t id, int worker, Message grads, float lr) override {
    Round& r = rounds_.at(id);
    const size_t w = size_t(worker);
    r.pending[w] = std::move(grads);
    r.lr[w] = lr;
    r.has[w] = true;
    complete(id, r);
    return 0;
  }

  bool readable(uint32_t id, int64_t clock) const override { return rounds_.at(id).version >= clock; }
  std::optional<int64_t> clock(uint32_t, int) const override { return std::nullopt; }

  void reset(uint32_t id, int64_t step) override {
    Round& r = rounds_.at(id);
    r.version = step;
    std::fill(r.has.begin(), r.has.end(), false);
    for (auto& m : r.pending) m = Message();
  }

  void grow(int count) override {
    for (auto& [id, r] : rounds_) {
      if (r.has.size() >= size_t(count)) continue;
      r.pending.resize(size_t(count));
      r.lr.resize(size_t(count), 0.f);
      r.has.resize(size_t(count), false);
    }
  }

  void joined(int, int64_t) override {}

  int64_t frontier() const override {
    int64_t f = 0;
    for (const auto& [id, r] : rounds_) f = std::max(f, r.version + 1);
    return f;
  }

  void members_changed() override {
    for (auto& [id, r] : rounds_) complete(id, r);
  }

 private:
  struct Round {
    int64_t n = 0;
    int64_t version = 0;           // the step collected now (rounds applied, from the start step)
    std::vector<Message> pending;  // this round's gradient per worker
    std::vector<float> lr;
    std::vector<bool> has;
  };

  // Once every live worker's gradient is in, applies their mean (summed in rank order).
  void complete(uint32_t id, Round& r) {
    int contributors = 0, first = -1;
    for (size_t w = 0; w < r.has.size(); ++w) {
      if (host_.counts(int(w), r.version) && !r.has[w]) return;
      if (r.has[w]) {
        ++contributors;
        if (first < 0) first = int(w);
      }
    }
    if (contributors == 0) return;
    const float lr = r.lr[size_t(first)];
    if (contributors == 1) {
      // The mean of one gradient is itself: applied from the frame.
      host_.apply(id, floats(r.pending[size_t(first)]), lr);
    } else {
      float* acc = acc_.data();
      const int64_t n = r.n;
      std::memcpy(acc, r.pending[size_t(first)].data(), size_t(n) * 4);
      for (size_t w = size_t(first) + 1; w < r.has.size(); ++w) {
        if (!r.has[w]) continue;
        // ZeroMQ may place a received frame at any byte offset: read it through memcpy.
        const std::byte* g = r.pending[w].data();
        for (int64_t i = 0; i < n; ++i) {
          float x;
          std::memcpy(&x, g + i * 4, 4);
          acc[i] += x;
        }
      }
      const float scale = 1.0f / float(contributors);
      for (int64_t i = 0; i < n; ++i) acc[i] *= scale;
      host_.apply(id, acc, lr);
    }
    std::fill(r.has.begin(), r.has.end(), false);
    for (auto& m : r.pending) m = Message();
    ++r.version;
  }

  PolicyHost& host_;
  std::unordered_map<uint32_t, Round> rounds_;
  std::vector<float> acc_;
};

class AsyncPolicy : public ConsistencyPolicy {
 public:
  AsyncPolicy(const ShardMap& map, int server, int workers, PolicyHost& host) : host_(host) {
    for (uint32_t id : map.chunks_of(server)) clocks_[id].assign(size_t(workers), 0);
  }

  void check_push(uint32_t, int, int64_t) const override {}

  int64_t push(uint32_t id, int worker, Message grads, float lr) override {
    const int64_t ahead = clocks_.at(id)[size_t(worker)] - min_live_clock(id);
    host_.apply(id, floats(grads), lr);
    ++clocks_.at(id)[size_t(worker)];
    return ahead;
  }

  bool readable(uint32_t, int64_t) const override { return true; }
  std::optional<int64_t> clock(uint32_t id, int worker) const override {
    const std::vector<int64_t>& c = clocks_.at(id);
    return size_t(worker) < c.size() ? c[size_t(worker)] : 0;
  }

  void reset(uint32_t id, int64_t step) override {
    auto& c = clocks_.at(id);
    std::fill(c.begin(), c.end(), step);
  }

  void grow(int count) override {
    for (auto& [id, c] : clocks_)
      if (c.size() < size_t(count)) c.resize(size_t(count), 0);
  }

  void joined(int worker, int64_t start) override {
    for (auto& [id, c] : clocks_) c[size_t(worker)] = start;
  }

  int64_t frontier() const override {
    int64_t f = 0;
    for (const auto& [id, c] : clocks_)
      for (int64_t k : c) f = std::max(f, k + 1);  // a worker at step k may have read clock k
    return f;
  }

  void members_changed() override {}

 protected:
  // Pushes of chunk `id` by its slowest live worker.
  int64_t min_live_clock(uint32_t id) const {
    const std::vector<int64_t>& c = clocks_.at(id);
    int64_t m = std::numeric_limits<int64_t>::max();
    for (size_t w = 0; w < c.size(); ++w)
      if (host_.active(int(w))) m = std::min(m, c[w]);
    return m;
  }

 private:
  PolicyHost& host_;
  // Per chunk and worker: the step of its next push (the start step plus its pushes).
  std::unordered_map<uint32_t, std::vector<int64_t>> clocks_;
};

class SspPolicy final : public AsyncPolicy {
 public:
  SspPolicy(const ShardMap& map, int server, int workers, PolicyHost& host, int staleness)
      : AsyncPolicy(map, server, workers, host), staleness_(staleness) {}

  bool readable(uint32_t id, int64_t clock) const override {
    return min_live_clock(id) >= clock - staleness_;
  }

 private:
  int staleness_;
};

}  // namespace

std::unique_ptr<ConsistencyPolicy> make_policy(const Consistency& mode, const ShardMap& map, int server,
                                               int workers, PolicyHost& host) {
  switch (mode.mode) {
    case Consistency::Sync:
      return std::make_unique<SyncPolicy>(map, server, workers, host);
    case Consistency::Async:
      return std::make_unique<AsyncPolicy>(map, server, workers, host);
    case Consistency::Ssp:
      return std::make_unique<SspPolicy>(map, server, workers, host, mode.staleness);
  }
  throw Error(ErrorKind::Internal, "unknown consistency mode", "PS");
}

}  // namespace strand::ps
