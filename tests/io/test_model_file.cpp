// Model exports and checkpoints: round trips, versioning, and every way a file can be broken.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <strand/core/error.hpp>
#include <strand/io/model_file.hpp>
#include <strand/models/models.hpp>

namespace strand::io {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  TempDir()
      : path(fs::temp_directory_path() /
             ("strand-mf-" + std::to_string(::getpid()) + "-" + std::to_string(n++))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path path;
  static inline int n = 0;
};

ModelFile sample_file() {
  auto be = make_cpu_backend(1);
  Model m(*be, models::mnist_mlp());
  m.init(9);
  return {m.arch(), default_signature(m), m.get_params(), {{"test_accuracy", "0.97"}}};
}

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void write_all(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

// Expects loading `p` to fail with `kind` and a message containing `fragment`.
void expect_load_error(const fs::path& p, ErrorKind kind, const std::string& fragment) {
  try {
    load_model_file(p);
    FAIL() << "loading a broken file succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_EQ(e.where(), p.string());
  }
}

TEST(ModelFile, RoundTrip) {
  TempDir dir;
  const ModelFile m = sample_file();
  save_model_file(dir.path / "m.strand", m);
  const ModelFile back = load_model_file(dir.path / "m.strand");
  EXPECT_EQ(back.arch, m.arch);
  EXPECT_EQ(back.signature, m.signature);
  EXPECT_EQ(back.signature.input_shape, (Shape{28, 28, 1}));  // the model's input channels-last
  EXPECT_EQ(back.signature.classes, 10);
  EXPECT_EQ(back.params, m.params);
  EXPECT_EQ(back.metadata, m.metadata);
}

TEST(ModelFile, BrokenFilesAreReportedNotLoaded) {
  TempDir dir;
  const fs::path good = dir.path / "good.strand", bad = dir.path / "bad.strand";
  save_model_file(good, sample_file());
  const std::string bytes = read_all(good);

  write_all(bad, bytes.substr(0, bytes.size() - 100));
  expect_load_error(bad, ErrorKind::Format, "truncated");
  write_all(bad, bytes.substr(0, 10));
  expect_load_error(bad, ErrorKind::Format, "too short");
  write_all(bad, "");
  expect_load_error(bad, ErrorKind::Format, "too short");

  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x40;
  write_all(bad, flipped);
  expect_load_error(bad, ErrorKind::Format, "checksum");

  std::string magic = bytes;
  magic[0] = 'X';
  write_all(bad, magic);
  expect_load_error(bad, ErrorKind::Format, "magic");

  std::string version = bytes;
  version[8] = 7;
  write_all(bad, version);
  expect_load_error(bad, ErrorKind::Format, "version 7");

  expect_load_error(dir.path / "missing.strand", ErrorKind::Io, "cannot open");
  // A checkpoint is not an export.
  Checkpoint ck{sample_file(), {}, 1, 10, 42, 100};
  save_checkpoint(bad, ck);
  expect_load_error(bad, ErrorKind::Format, "magic");
}

TEST(ModelFile, ParameterCountMustMatchTheArchitecture) {
  TempDir dir;
  ModelFile m = sample_file();
  m.params.pop_back();
  save_model_file(dir.path / "m.strand", m);
  expect_load_error(dir.path / "m.strand", ErrorKind::Format, "parameters");
}

// Serving reads instances by the architecture and reports the signature, so they must agree:
// channels-last, or flat as every export from before model files ({784}).
TEST(ModelFile, SignatureMustFitTheArchitecture) {
  TempDir dir;
  ModelFile m = sample_file();
  m.signature.input_shape = Shape{784};
  save_model_file(dir.path / "m.strand", m);
  EXPECT_EQ(load_model_file(dir.path / "m.strand").signature.input_shape, Shape{784});
  m.signature.input_shape = Shape{1, 28, 28};
  save_model_file(dir.path / "m.strand", m);
  expect_load_error(
      dir.path / "m.strand", ErrorKind::Format,
      "signature input [1,28,28] does not fit the model input [1,28,28] (expected [28,28,1] or [784])");
  m.signature.input_shape = Shape{783};
  save_model_file(dir.path / "m.strand", m);
  expect_load_error(dir.path / "m.strand", ErrorKind::Format, "signature input [783] does not fit");
  m.signature.input_shape = Shape{784};
  m.signature.classes = 3;
  save_model_file(dir.path / "m.strand", m);
  expect_load_error(dir.path / "m.strand", ErrorKind::Format,
                    "signature has 3 classes, the model outputs 10");
}

TEST(Export, VersionsCountUpAndTheNewestLoads) {
  TempDir dir;
  ModelFile m = sample_file();
  EXPECT_EQ(export_model(dir.path, m), 1);
  m.metadata["test_accuracy"] = "0.98";
  EXPECT_EQ(export_model(dir.path, m), 2);
  fs::create_directory(dir.path / "checkpoints");  // other entries are not versions
  fs::create_directory(dir.path / "7");            // an empty numbered directory is no version...
  EXPECT_EQ(list_versions(dir.path), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(export_model(dir.path, m), 8);  // ...but its number is taken
  int64_t loaded = 0;
  EXPECT_EQ(load_export(dir.path, std::nullopt, &loaded).metadata.at("test_accuracy"), "0.98");
  EXPECT_EQ(loaded, 8);
  EXPECT_EQ(load_export(dir.path, 1).metadata.at("test_accuracy"), "0.97");
  EXPECT_THROW(load_export(dir.path, 3), Error);
  for (const auto& e : fs::directory_iterator(dir.path))
    EXPECT_NE(e.path().filename().string().rfind(".export", 0), 0u) << "staging directory left behind";
}

TEST(Export, EmptyOrMissingDirectoryIsAnIoError) {
  TempDir dir;
  try {
    load_export(dir.path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
    EXPECT_NE(std::string(e.what()).find("no exported model"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_export(dir.path / "nope"), Error);
}

TEST(Checkpoint, RoundTripAndRotation) {
  TempDir dir;
  EXPECT_FALSE(latest_checkpoint(dir.path));
  Checkpoint ck{sample_file(), {OptimizerKind::Adam, 5, {{1, 2}, {3, 4}}}, 1, 600, 42, 100};
  for (int64_t e = 1; e <= 11; ++e) {
    ck.epochs_done = e;
    write_checkpoint(dir.path, ck, 2);
  }
  EXPECT_EQ(latest_checkpoint(dir.path), dir.path / "checkpoint-11.strand");  // numeric, not lexical
  EXPECT_TRUE(fs::exists(dir.path / "checkpoint-10.strand"));
  EXPECT_FALSE(fs::exists(dir.path / "checkpoint-9.strand"));
  const Checkpoint back = load_checkpoint(*latest_checkpoint(dir.path));
  EXPECT_EQ(back.epochs_done, 11);
  EXPECT_EQ(back.global_step, 600);
  EXPECT_EQ(back.seed, 42u);
  EXPECT_EQ(back.optimizer.kind, OptimizerKind::Adam);
  EXPECT_EQ(back.optimizer.step, 5);
  EXPECT_EQ(back.optimizer.slots, ck.optimizer.slots);
  EXPECT_EQ(back.model.params, ck.model.params);
}

// Inside epochs the files are named by epoch and step and ordered the way training went: an
// epoch's end comes before the checkpoints inside the next epoch, and those before its end.
TEST(Checkpoint, InsideEpochsInTrainingOrder) {
  TempDir dir;
  Checkpoint ck{sample_file(), {OptimizerKind::Sgd, 0, {}}, 0, 0, 42, 100};
  ck.global_batch = 200;
  const std::pair<int64_t, int64_t> order[] = {{0, 5}, {0, 10}, {1, 0}, {1, 3}, {1, 12}, {2, 0}};
  std::vector<fs::path> paths;
  for (const auto& [epochs, step] : order) {
    ck.epochs_done = epochs;
    ck.step_in_epoch = step;
    ck.global_step = epochs * 15 + step;
    paths.push_back(write_checkpoint(dir.path, ck, 3));
    EXPECT_EQ(latest_checkpoint(dir.path), paths.back());
  }
  EXPECT_EQ(paths[0], dir.path / "checkpoint-0-5.strand");
  EXPECT_EQ(paths[2], dir.path / "checkpoint-1.strand");
  EXPECT_EQ(paths[4], dir.path / "checkpoint-1-12.strand");
  EXPECT_FALSE(fs::exists(paths[2]));  // the newest three are kept
  EXPECT_TRUE(fs::exists(paths[3]));
  const Checkpoint back = load_checkpoint(paths[4]);
  EXPECT_EQ(back.epochs_done, 1);
  EXPECT_EQ(back.step_in_epoch, 12);
  EXPECT_EQ(back.global_step, 27);
  EXPECT_EQ(back.global_batch, 200);
  EXPECT_EQ(read_all(paths[4])[8], 2);  // the format version that has these fields
  // Names that only look like checkpoints are no checkpoints.
  for (const char* name : {"checkpoint-2-.strand", "checkpoint--3.strand", "checkpoint-2-x.strand"})
    write_all(dir.path / name, "junk");
  EXPECT_EQ(latest_checkpoint(dir.path), paths[5]);
}

// A version 1 checkpoint (written by strand before checkpoints inside epochs: tests/io/data)
// still loads, as one at an epoch's end of an unknown global batch.
TEST(Checkpoint, VersionOneStillLoads) {
  const Checkpoint ck = load_checkpoint(fs::path(STRAND_IO_TEST_DATA) / "checkpoint-v1.strand");
  EXPECT_EQ(ck.model.arch.name, "tiny_dense");
  EXPECT_EQ(ck.model.params.size(), 15u);
  EXPECT_EQ(ck.model.params[14], 2.5f);
  EXPECT_EQ(ck.optimizer.kind, OptimizerKind::Adam);
  EXPECT_EQ(ck.optimizer.step, 30);
  EXPECT_EQ(ck.epochs_done, 2);
  EXPECT_EQ(ck.global_step, 30);
  EXPECT_EQ(ck.seed, 7u);
  EXPECT_EQ(ck.batch_size, 16);
  EXPECT_EQ(ck.step_in_epoch, 0);
  EXPECT_EQ(ck.global_batch, 0);
}

}  // namespace
}  // namespace strand::io
