// strand's model files: exports (what serving loads) and training checkpoints.
//
// On disk (all integers little-endian):
//   bytes 0..7    magic: "STRANDMD" (model export) or "STRANDCK" (checkpoint)
//   bytes 8..11   u32 format version: 1 for exports; 2 for checkpoints (version 1 checkpoints,
//                 from before mid-epoch positions, still load)
//   bytes 12..15  u32 reserved, 0
//   bytes 16..23  u64 payload length in bytes
//   bytes 24..31  u64 FNV-1a-64 checksum of the payload
//   bytes 32..    payload: a cereal PortableBinaryArchive of ModelFile / Checkpoint
// A reader checks magic, version, length against the file size and the checksum before it
// parses anything, so a truncated or corrupted file is reported, never half-loaded.
// Exports live in MODEL_DIR/<version>/model.strand (version = 1, 2, ...), the layout
// TensorFlow Serving and SageMaker use for versioned models.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <strand/core/model.hpp>
#include <strand/core/optimizer.hpp>

namespace strand::io {

inline constexpr uint32_t kModelFileVersion = 1;
inline constexpr uint32_t kCheckpointVersion = 2;
inline constexpr const char* kModelFileName = "model.strand";

// The model's serving signature: one named input, two named outputs.
struct Signature {
  std::string input_name = "x";  // SageMaker's TF MNIST example calls it "x"
  // Per instance, as the metadata reports it: the model's input channels-last ({H,W,C}, TF's
  // NHWC) or flat ({F}; every export from before model files says {784}).
  Shape input_shape;
  std::string classes_name = "classes";              // int64 [N]
  std::string probabilities_name = "probabilities";  // float [N, classes]
  int64_t classes = 0;
  bool operator==(const Signature&) const = default;
};

struct ModelFile {
  ModelArch arch;
  Signature signature;
  std::vector<float> params;                    // the flat parameter buffer
  std::map<std::string, std::string> metadata;  // e.g. "test_accuracy", "created", "strand_version"
};

// Everything needed to continue training exactly where it stopped.
struct Checkpoint {
  ModelFile model;
  OptimizerState optimizer;
  int64_t epochs_done = 0;  // completed epochs
  int64_t global_step = 0;  // optimizer steps taken
  uint64_t seed = 0;
  int64_t batch_size = 0;     // per worker (a resume on other workers keeps global_batch instead)
  int64_t step_in_epoch = 0;  // steps of epoch epochs_done + 1 taken (0: written at an epoch's end)
  int64_t global_batch = 0;   // images per step over all workers (0: unknown, a version 1 file)
};

// The default signature for a model: its input channels-last, its class count.
Signature default_signature(const Model& model);

void save_model_file(const std::filesystem::path& path, const ModelFile& m);  // atomic
ModelFile load_model_file(const std::filesystem::path& path);
void save_checkpoint(const std::filesystem::path& path, const Checkpoint& c);  // atomic
Checkpoint load_checkpoint(const std::filesystem::path& path);

// Versions present in a model directory (numeric sub-directories holding a model file), sorted.
std::vector<int64_t> list_versions(const std::filesystem::path& model_dir);
// Writes MODEL_DIR/<next free version>/model.strand; the version directory appears whole or
// not at all. Returns the version.
int64_t export_model(const std::filesystem::path& model_dir, const ModelFile& m);
// Loads a version (the newest when none is given). Io error naming the directory if there is none.
ModelFile load_export(const std::filesystem::path& model_dir, std::optional<int64_t> version = {},
                      int64_t* loaded_version = nullptr);

// Checkpoint files in a directory are "checkpoint-<epochs_done>.strand" at an epoch's end and
// "checkpoint-<epochs_done>-<step_in_epoch>.strand" inside one; these find the newest (the
// furthest into training) and write the next, keeping the newest `keep` files.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& dir);
std::filesystem::path write_checkpoint(const std::filesystem::path& dir, const Checkpoint& c, int keep = 2);

}  // namespace strand::io
