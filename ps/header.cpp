#include <strand/ps/header.hpp>

#include <cstdio>
#include <random>
#include <sstream>
#include <streambuf>

#include <array>

#include <cereal/archives/portable_binary.hpp>
#include <cereal/types/array.hpp>

#include <strand/core/error.hpp>

namespace strand::ps {

const char* to_string(MsgType t) {
  switch (t) {
    case MsgType::Push:
      return "push";
    case MsgType::Pull:
      return "pull";
    case MsgType::Init:
      return "init";
    case MsgType::Gather:
      return "gather";
    case MsgType::Sum:
      return "sum";
    case MsgType::Leave:
      return "leave";
    case MsgType::Heartbeat:
      return "heartbeat";
    case MsgType::Reply:
      return "reply";
    case MsgType::Fail:
      return "fail";
    case MsgType::Join:
      return "join";
    case MsgType::Freeze:
      return "freeze";
    case MsgType::Thaw:
      return "thaw";
  }
  return "unknown";
}

namespace {

constexpr const char* kWhere = "PS message header";

// The optimizer kind's code on the wire; 0 is none.
uint8_t wire_code(OptimizerKind k) {
  switch (k) {
    case OptimizerKind::Sgd:
      return 1;
    case OptimizerKind::Momentum:
      return 2;
    case OptimizerKind::Adam:
      return 3;
  }
  return 0;
}
constexpr uint8_t kLastWireCode = 3;
OptimizerKind from_wire_code(uint8_t c) {
  return c == 1 ? OptimizerKind::Sgd : c == 2 ? OptimizerKind::Momentum : OptimizerKind::Adam;
}

Error invalid(std::string why) { return Error(ErrorKind::Format, std::move(why), kWhere); }

// Reads from caller memory without copying it into a stringstream.
class ViewBuf : public std::streambuf {
 public:
  explicit ViewBuf(std::span<const std::byte> b) {
    char* p = const_cast<char*>(reinterpret_cast<const char*>(b.data()));
    setg(p, p, p + b.size());
  }
  std::streamsize left() { return egptr() - gptr(); }
};

}  // namespace

template <class Archive>
void Header::save(Archive& ar) const {
  uint8_t code = 0;
  std::array<float, 4> hyper{};
  if (optimizer) {
    code = wire_code(optimizer->kind);
    hyper = {optimizer->momentum, optimizer->beta1, optimizer->beta2, optimizer->eps};
  }
  ar(magic, version, token, uint8_t(type), sender, request, step, lr, value, code, hyper);
  ar(job.step, job.workers, job.global_batch);
  ar(uint32_t(chunks.size()));
  ar(cereal::binary_data(chunks.data(), chunks.size() * sizeof(uint32_t)));
  ar(uint32_t(text.size()));
  ar(cereal::binary_data(text.data(), text.size()));
}

// Checks each bound before the data it guards is read, so garbage cannot make it allocate
// more than kMaxHeaderBytes or read past the frame (cereal throws on a short read).
template <class Archive>
void Header::load(Archive& ar) {
  ar(magic);
  if (magic != kMagic) throw invalid("not a strand PS message (wrong magic)");
  ar(version);
  if (version != kVersion)
    throw invalid("protocol version " + std::to_string(version) + ", this build speaks " +
                  std::to_string(kVersion));
  uint8_t t = 0, o = 0;
  std::array<float, 4> hyper{};
  ar(token, t, sender, request, step, lr, value, o, hyper);
  ar(job.step, job.workers, job.global_batch);
  if (t < 1 || t > kLastMsgType) throw invalid("unknown message type " + std::to_string(t));
  if (o > kLastWireCode) throw invalid("unknown optimizer " + std::to_string(o));
  type = MsgType(t);
  optimizer.reset();
  if (o != 0)
    optimizer = OptimizerConfig{.kind = from_wire_code(o),
                                .momentum = hyper[0],
                                .beta1 = hyper[1],
                                .beta2 = hyper[2],
                                .eps = hyper[3]};
  uint32_t n = 0;
  ar(n);
  if (n > kMaxChunksPerMessage)
    throw invalid(std::to_string(n) + " chunk ids (at most " + std::to_string(kMaxChunksPerMessage) + ")");
  chunks.resize(n);
  ar(cereal::binary_data(chunks.data(), n * sizeof(uint32_t)));
  ar(n);
  if (n > kMaxTextBytes) throw invalid("text of " + std::to_string(n) + " bytes");
  text.resize(n);
  ar(cereal::binary_data(text.data(), n));
}

uint64_t random_token() {
  std::random_device rd;
  uint64_t t = 0;
  while (t == 0) t = (uint64_t(rd()) << 32) ^ uint64_t(rd());
  return t;
}

std::string token_to_string(uint64_t token) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(token));
  return b;
}

uint64_t parse_token(const std::string& text) {
  uint64_t t = 0;
  bool ok = text.size() == 16;
  for (char c : text) {
    const int d = c >= '0' && c <= '9'   ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                         : -1;
    ok = ok && d >= 0;
    t = (t << 4) | uint64_t(d & 15);
  }
  STRAND_CHECK(ok && t != 0, Usage, "job token '" + text + "' is not 16 hex digits (and not all zero)",
               "PS token");
  return t;
}

std::string encode_header(const Header& h) {
  std::ostringstream os;
  {
    cereal::PortableBinaryOutputArchive ar(os);
    ar(h);
  }
  return std::move(os).str();
}

Header decode_header(std::span<const std::byte> bytes) {
  STRAND_CHECK(bytes.size() <= kMaxHeaderBytes, Format,
               std::to_string(bytes.size()) + " bytes (at most " + std::to_string(kMaxHeaderBytes) + ")",
               kWhere);
  ViewBuf buf(bytes);
  std::istream in(&buf);
  Header h;
  try {
    cereal::PortableBinaryInputArchive ar(in);
    ar(h);
  } catch (const cereal::Exception&) {
    throw Error(ErrorKind::Format, "truncated (" + std::to_string(bytes.size()) + " bytes)", kWhere);
  }
  STRAND_CHECK(buf.left() == 0, Format, std::to_string(buf.left()) + " bytes after the header", kWhere);
  return h;
}

}  // namespace strand::ps
