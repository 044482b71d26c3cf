#include <strand/io/model_file.hpp>

#include <unistd.h>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include <cereal/archives/portable_binary.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/vector.hpp>

#include <strand/core/error.hpp>
#include <strand/io/atomic_file.hpp>

namespace strand {

// cereal hooks for core types (non-intrusive: core knows nothing of file formats).
template <class Archive>
void save(Archive& ar, const Shape& s) {
  ar(s.dims());
}
template <class Archive>
void load(Archive& ar, Shape& s) {
  std::vector<int64_t> d;
  ar(d);
  s = Shape(std::move(d));
}
template <class Archive>
void serialize(Archive& ar, ModelArch& a) {
  ar(a.name, a.input, a.layers);
}
// The kind is stored by its name; a name this build does not know fails the load.
template <class Archive>
void save(Archive& ar, const OptimizerState& s) {
  ar(std::string(to_string(s.kind)), s.step, s.slots);
}
template <class Archive>
void load(Archive& ar, OptimizerState& s) {
  std::string kind;
  ar(kind, s.step, s.slots);
  s.kind = parse_optimizer_kind(kind);
}

namespace io {

template <class Archive>
void serialize(Archive& ar, Signature& s) {
  ar(s.input_name, s.input_shape, s.classes_name, s.probabilities_name, s.classes);
}
template <class Archive>
void serialize(Archive& ar, ModelFile& m) {
  ar(m.arch, m.signature, m.params, m.metadata);
}
template <class Archive>
void serialize(Archive& ar, Checkpoint& c) {
  ar(c.model, c.optimizer, c.epochs_done, c.global_step, c.seed, c.batch_size, c.step_in_epoch,
     c.global_batch);
}

// A version 1 checkpoint's payload: the fields before step_in_epoch.
struct CheckpointV1 {
  Checkpoint c;
};
template <class Archive>
void serialize(Archive& ar, CheckpointV1& v) {
  ar(v.c.model, v.c.optimizer, v.c.epochs_done, v.c.global_step, v.c.seed, v.c.batch_size);
}

namespace {

namespace fs = std::filesystem;
constexpr size_t kHeader = 32;

uint64_t fnv1a64(const char* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; ++i) {
    h ^= uint8_t(p[i]);
    h *= 0x100000001b3ULL;
  }
  return h;
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(char((v >> (8 * i)) & 0xff));
}
uint64_t get_le(const std::string& in, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t(uint8_t(in[at + i])) << (8 * i);
  return v;
}

template <class T>
void save_framed(const fs::path& path, const char* magic, uint32_t version, const T& value) {
  std::ostringstream payload_stream(std::ios::binary);
  {
    cereal::PortableBinaryOutputArchive ar(payload_stream);
    ar(value);
  }
  const std::string payload = std::move(payload_stream).str();
  std::string file(magic, 8);
  put_le(file, version, 4);
  put_le(file, 0, 4);
  put_le(file, payload.size(), 8);
  put_le(file, fnv1a64(payload.data(), payload.size()), 8);
  file += payload;
  write_file_atomic(path, std::string_view(file));
}

// The payload of a framed file after its header checks, and the header's format version, which
// must be in [1, max_version].
std::pair<std::string, uint32_t> read_framed(const fs::path& path, const char* magic, const char* what,
                                             uint32_t max_version) {
  const std::string where = path.string();
  std::ifstream in(path, std::ios::binary);
  STRAND_CHECK(in, Io, std::string("cannot open ") + what + ": " + std::strerror(errno), where);
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  STRAND_CHECK(!ec, Io, "cannot read the file size: " + ec.message(), where);
  STRAND_CHECK(size >= kHeader, Format,
               std::string("file is ") + std::to_string(size) + " bytes, too short for a " + what, where);
  std::string head(kHeader, '\0');
  in.read(head.data(), kHeader);
  STRAND_CHECK(in, Io, "cannot read the header", where);
  STRAND_CHECK(head.compare(0, 8, magic) == 0, Format,
               std::string("not a ") + what + " (expected magic \"" + magic + "\")", where);
  const uint64_t version = get_le(head, 8, 4);
  STRAND_CHECK(version >= 1 && version <= max_version, Format,
               "format version " + std::to_string(version) + " is not supported (this strand reads " + what +
                   "s of version 1" +
                   (max_version > 1 ? " to " + std::to_string(max_version) : std::string()) + ")",
               where);
  const uint64_t length = get_le(head, 16, 8);
  STRAND_CHECK(length == size - kHeader, Format,
               "header says the payload is " + std::to_string(length) + " bytes, the file holds " +
                   std::to_string(size - kHeader) + " (truncated or corrupted)",
               where);
  std::string payload(length, '\0');
  in.read(payload.data(), std::streamsize(length));
  STRAND_CHECK(in, Io, "cannot read the payload", where);
  STRAND_CHECK(fnv1a64(payload.data(), payload.size()) == get_le(head, 24, 8), Format,
               "checksum mismatch: the file is corrupted", where);
  return {std::move(payload), uint32_t(version)};
}

template <class T>
T decode(std::string payload, const fs::path& path) {
  T value;
  try {
    std::istringstream ps(std::move(payload), std::ios::binary);
    cereal::PortableBinaryInputArchive ar(ps);
    ar(value);
  } catch (const std::exception& e) {
    throw Error(ErrorKind::Format, std::string("payload does not decode: ") + e.what(), path.string());
  }
  return value;
}

void check_consistent(const ModelFile& m, const std::string& where) {
  // Rebuilding the model checks the architecture; the parameter count must then match.
  int64_t expected = 0;
  ModelArch arch = m.arch;
  Shape in = arch.input;
  for (const LayerSpec& spec : arch.layers) {
    auto layer = make_layer(spec);
    in = layer->bind(in);
    expected += layer->param_count() + layer->state_count();
  }
  STRAND_CHECK(int64_t(m.params.size()) == expected, Format,
               "model '" + m.arch.name + "' needs " + std::to_string(expected) +
                   " parameters, the file has " + std::to_string(m.params.size()),
               where);
  // Serving reads instances by the architecture and reports the signature: they must agree.
  const Shape& sig = m.signature.input_shape;
  STRAND_CHECK(sig == arch.input.channels_last() || sig == Shape{arch.input.numel()}, Format,
               "signature input " + sig.str() + " does not fit the model input " + arch.input.str() +
                   " (expected " + arch.input.channels_last().str() + " or [" +
                   std::to_string(arch.input.numel()) + "])",
               where);
  STRAND_CHECK(m.signature.classes == in.numel(), Format,
               "signature has " + std::to_string(m.signature.classes) + " classes, the model outputs " +
                   std::to_string(in.numel()),
               where);
}

}  // namespace

Signature default_signature(const Model& model) {
  Signature s;
  s.input_shape = model.arch().input.channels_last();
  s.classes = model.classes();
  return s;
}

void save_model_file(const fs::path& path, const ModelFile& m) {
  save_framed(path, "STRANDMD", kModelFileVersion, m);
}

ModelFile load_model_file(const fs::path& path) {
  ModelFile m =
      decode<ModelFile>(read_framed(path, "STRANDMD", "strand model file", kModelFileVersion).first, path);
  check_consistent(m, path.string());
  return m;
}

void save_checkpoint(const fs::path& path, const Checkpoint& c) {
  save_framed(path, "STRANDCK", kCheckpointVersion, c);
}

Checkpoint load_checkpoint(const fs::path& path) {
  auto [payload, version] = read_framed(path, "STRANDCK", "strand checkpoint", kCheckpointVersion);
  Checkpoint c = version == 1 ? decode<CheckpointV1>(std::move(payload), path).c
                              : decode<Checkpoint>(std::move(payload), path);
  check_consistent(c.model, path.string());
  return c;
}

namespace {
// A non-empty all-digit name parsed as a version; nullopt otherwise.
std::optional<int64_t> numeric_name(const std::string& name) {
  if (name.empty() || name.size() > 18 || !std::all_of(name.begin(), name.end(), ::isdigit))
    return std::nullopt;
  return std::stoll(name);
}
}  // namespace

std::vector<int64_t> list_versions(const fs::path& model_dir) {
  std::vector<int64_t> versions;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(model_dir, ec)) {
    auto v = numeric_name(entry.path().filename().string());
    if (v && fs::is_regular_file(entry.path() / kModelFileName)) versions.push_back(*v);
  }
  std::sort(versions.begin(), versions.end());
  return versions;
}

int64_t export_model(const fs::path& model_dir, const ModelFile& m) {
  const std::string where = model_dir.string();
  std::error_code ec;
  fs::create_directories(model_dir, ec);
  STRAND_CHECK(!ec, Io, "cannot create the model directory: " + ec.message(), where);
  // Stage the version in a hidden directory, then rename it into place: readers (a serving
  // process scanning for new versions) never see a half-written version.
  const fs::path staging = model_dir / (".export-" + std::to_string(::getpid()));
  fs::remove_all(staging, ec);
  fs::create_directory(staging, ec);
  STRAND_CHECK(!ec, Io, "cannot create " + staging.string() + ": " + ec.message(), where);
  try {
    save_model_file(staging / kModelFileName, m);
  } catch (...) {
    fs::remove_all(staging, ec);
    throw;
  }
  int64_t next = 1;
  for (const auto& entry : fs::directory_iterator(model_dir, ec))
    if (auto v = numeric_name(entry.path().filename().string())) next = std::max(next, *v + 1);
  // rename() refuses a non-empty existing target, so a version taken meanwhile is skipped.
  for (int attempt = 0; attempt < 100; ++attempt, ++next) {
    fs::rename(staging, model_dir / std::to_string(next), ec);
    if (!ec) return next;
  }
  fs::remove_all(staging, ec);
  throw Error(ErrorKind::Io, "cannot move the export into place as version " + std::to_string(next), where);
}

ModelFile load_export(const fs::path& model_dir, std::optional<int64_t> version, int64_t* loaded_version) {
  const std::string where = model_dir.string();
  STRAND_CHECK(fs::is_directory(model_dir), Io, "model directory does not exist", where);
  if (!version) {
    auto versions = list_versions(model_dir);
    STRAND_CHECK(!versions.empty(), Io,
                 std::string("no exported model here (expected numbered version directories holding ") +
                     kModelFileName + ")",
                 where);
    version = versions.back();
  }
  const fs::path file = model_dir / std::to_string(*version) / kModelFileName;
  STRAND_CHECK(fs::is_regular_file(file), Io,
               "version " + std::to_string(*version) + " has no " + kModelFileName, where);
  if (loaded_version) *loaded_version = *version;
  return load_model_file(file);
}

namespace {
// (epochs_done, step_in_epoch) of the checkpoints in a directory, in training order.
std::vector<std::pair<std::pair<int64_t, int64_t>, fs::path>> checkpoints_in(const fs::path& dir) {
  std::vector<std::pair<std::pair<int64_t, int64_t>, fs::path>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const std::string prefix = "checkpoint-", suffix = ".strand";
    if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string stem = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    const size_t dash = stem.find('-');
    const auto epochs = numeric_name(stem.substr(0, dash));
    const auto steps =
        dash == std::string::npos ? std::optional<int64_t>(0) : numeric_name(stem.substr(dash + 1));
    if (epochs && steps) found.push_back({{*epochs, *steps}, entry.path()});
  }
  std::sort(found.begin(), found.end());
  return found;
}
}  // namespace

std::optional<fs::path> latest_checkpoint(const fs::path& dir) {
  auto found = checkpoints_in(dir);
  if (found.empty()) return std::nullopt;
  return found.back().second;
}

fs::path write_checkpoint(const fs::path& dir, const Checkpoint& c, int keep) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  STRAND_CHECK(!ec, Io, "cannot create the checkpoint directory: " + ec.message(), dir.string());
  const fs::path path =
      dir / ("checkpoint-" + std::to_string(c.epochs_done) +
             (c.step_in_epoch > 0 ? "-" + std::to_string(c.step_in_epoch) : std::string()) + ".strand");
  save_checkpoint(path, c);
  auto found = checkpoints_in(dir);
  for (size_t i = 0; i + size_t(std::max(keep, 1)) < found.size(); ++i) fs::remove(found[i].second, ec);
  return path;
}

}  // namespace io
}  // namespace strand
