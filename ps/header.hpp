// ps/header — the header every strand parameter-server message starts with, and its codec.
// Serialized with cereal's portable binary archive: magic, version, job token, message type,
// sender, request id, step/clock, chunk ids and a few typed fields. The optimizer travels as
// a kind code (0: none, 1 sgd, 2 momentum, 3 adam) and four floats (momentum, beta1, beta2,
// eps), decoded into an OptimizerConfig. decode_header() takes any
// bytes (it is the first thing a server does with what arrives from the network): whatever is
// not exactly one well-formed header of this version is a Format error, never a crash, an
// out-of-bounds read or an unbounded allocation (fuzzed by tests/ps/fuzz_header.cpp).
// No ZeroMQ here, so the fuzz target builds without it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <strand/core/optimizer.hpp>

namespace strand::ps {

inline constexpr uint32_t kMagic = 0x53505331;  // "SPS1"
inline constexpr uint16_t kVersion = 2;
// A header is a few dozen bytes plus 4 per chunk id; anything larger is hostile or broken.
inline constexpr size_t kMaxHeaderBytes = 64 * 1024;
inline constexpr size_t kMaxChunksPerMessage = 8192;
inline constexpr size_t kMaxTextBytes = 1024;

enum class MsgType : uint8_t {
  Push = 1,       // worker -> server: gradients, one frame per chunk
  Pull = 2,       // worker -> server: parameters wanted (reply: one frame per chunk)
  Init = 3,       // worker -> server: parameters + optimizer state for its chunks
  Gather = 4,     // worker -> server: parameters + optimizer state wanted (checkpoints)
  Sum = 5,        // worker -> server: a scalar summed over the live workers
  Leave = 6,      // worker -> server: this worker is done
  Heartbeat = 7,  // both ways
  Reply = 8,      // server -> worker: the request `request` succeeded
  Fail = 9,       // server -> worker: the request failed; `text` says why
  Join = 10,      // worker -> server: a worker joins the running job (ps/server.hpp, joins)
  // worker -> server: hold further pushes (async, ssp); the reply's one frame holds, per worker,
  // the most pushes applied to any chunk here (int64 each), or nothing in sync mode. A Gather
  // with such a frame of cuts then applies held pushes up to them and answers once every chunk
  // has each live worker's pushes up to its cut: a snapshot of the same pushes on every server.
  Freeze = 11,
  Thaw = 12,  // worker -> server: apply the held pushes and go on
};
inline constexpr uint8_t kLastMsgType = 12;
// A Join's step: ask server 0 for a rank (sender -1), or have a server hold its rounds for the
// joiner (sender: its rank); a step >= 0 starts the joiner at that step.
inline constexpr int64_t kJoinRank = -1, kJoinHold = -2;
inline constexpr int kMaxWorkers = 4096;  // a job's, joiners included
// Sum rounds are numbered clock x kSumsPerStep + the sum's number among those at that clock.
inline constexpr int64_t kSumsPerStep = 1 << 16;

// What a worker that joins later needs of the job (set by rank 0's Init, kept by the servers).
struct JobShape {
  int64_t step = 0;          // the global step the job's rounds started at
  int32_t workers = 0;       // the workers then: with the batch below they fix the global batch
  int64_t global_batch = 0;  // images per step over all workers
};
const char* to_string(MsgType t);

struct Header {
  uint32_t magic = kMagic;
  uint16_t version = kVersion;
  uint64_t token = 0;
  MsgType type = MsgType::Heartbeat;
  int32_t sender = -1;   // worker rank, or server index for server -> worker messages
  uint64_t request = 0;  // request id; a reply carries its request's id (0: none)
  // push/pull: the worker's clock (its global step); sum: its round; init/gather: optimizer
  // step; join: kJoinRank, kJoinHold or the start step, and in replies the rank given or the
  // server's frontier (the first step a joiner may start at); fail: the strand::ErrorKind raised
  int64_t step = 0;
  float lr = 0;      // push: the learning rate of this update
  double value = 0;  // sum
  // Init, Gather reply: the kind and hyper-parameters; its lr does not travel (each push
  // carries its own) and is the default.
  std::optional<OptimizerConfig> optimizer;
  // Init, and the reply to a kJoinRank: the job's shape. Pull and start replies: its workers
  // (workers) at the pull's or start's step.
  JobShape job;
  std::vector<uint32_t> chunks;
  std::string text;  // Fail: the reason

  template <class Archive>
  void save(Archive& ar) const;
  template <class Archive>
  void load(Archive& ar);
};

// A job token: 64 random bits from the system's entropy source, never 0.
uint64_t random_token();
// The token as 16 hex digits, and back (Usage error naming the text if it is not one).
std::string token_to_string(uint64_t token);
uint64_t parse_token(const std::string& text);

std::string encode_header(const Header& h);
// Format error unless `bytes` hold exactly one well-formed header of this version.
Header decode_header(std::span<const std::byte> bytes);

}  // namespace strand::ps
