#include <strand/io/dataset.hpp>

#include <array>
#include <cmath>
#include <cstring>
#include <optional>
#include <span>
#include <system_error>

#include <strand/core/error.hpp>
#include <strand/io/idx.hpp>
#include <strand/io/npy.hpp>

namespace strand::io {
namespace fs = std::filesystem;

namespace {

constexpr int64_t kSide = 28;
constexpr int64_t kPixels = kSide * kSide;
constexpr int32_t kClasses = 10;

// One file of a layout: the accepted spellings, preferred first.
struct Role {
  std::vector<std::string> names;
};

struct Layout {
  const char* name;
  std::array<Role, 4> roles;  // train images, train labels, eval images, eval labels
};

const Layout kIdx{"idx",
                  {Role{{"train-images-idx3-ubyte", "train-images.idx3-ubyte"}},
                   Role{{"train-labels-idx1-ubyte", "train-labels.idx1-ubyte"}},
                   Role{{"t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"}},
                   Role{{"t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"}}}};
const Layout kNpy{"npy",
                  {Role{{"train_data.npy"}}, Role{{"train_labels.npy"}}, Role{{"eval_data.npy"}},
                   Role{{"eval_labels.npy"}}}};

std::optional<fs::path> find(const fs::path& dir, const Role& role) {
  for (const std::string& name : role.names) {
    std::error_code ec;
    if (fs::exists(dir / name, ec)) return dir / name;
  }
  return std::nullopt;
}

std::string describe(const Role& role) {
  std::string s = role.names[0];
  for (size_t i = 1; i < role.names.size(); ++i) s += " (or " + role.names[i] + ")";
  return s;
}

constexpr std::array<size_t, 4> kAllRoles{0, 1, 2, 3};

// Paths of the files of `roles` (indices into layout.roles), in layout order with the others
// left empty, or nothing plus a description of what was looked for and what is missing.
std::optional<std::array<fs::path, 4>> resolve(const fs::path& dir, const Layout& layout,
                                               std::span<const size_t> roles, std::string& report) {
  std::array<fs::path, 4> found;
  std::string looked, missing;
  for (size_t i : roles) {
    const Role& role = layout.roles[i];
    looked += (looked.empty() ? "" : ", ") + describe(role);
    if (auto p = find(dir, role)) {
      found[i] = *p;
    } else {
      missing += (missing.empty() ? "" : ", ") + role.names[0];
      // A common mistake: the files were downloaded but never decompressed.
      std::error_code ec;
      for (const std::string& name : role.names)
        if (fs::exists(dir / (name + ".gz"), ec))
          missing += " (found " + name + ".gz: decompress it first, e.g. with gunzip)";
    }
  }
  if (missing.empty()) return found;
  report += std::string(layout.name) + " layout: looked for " + looked + "; missing " + missing + ". ";
  return std::nullopt;
}

void check_labels(const std::vector<int32_t>& labels, const std::string& where) {
  for (size_t i = 0; i < labels.size(); ++i)
    STRAND_CHECK(labels[i] >= 0 && labels[i] < kClasses, Format,
                 "label " + std::to_string(labels[i]) + " at index " + std::to_string(i) + " is outside 0.." +
                     std::to_string(kClasses - 1),
                 where);
}

void check_counts(int64_t images, const fs::path& image_path, int64_t labels, const fs::path& label_path,
                  const fs::path& dir) {
  STRAND_CHECK(images == labels, Format,
               std::to_string(images) + " images in " + image_path.filename().string() + " but " +
                   std::to_string(labels) + " labels in " + label_path.filename().string(),
               dir.string());
}

Dataset load_idx_split(const fs::path& images_path, const fs::path& labels_path, const fs::path& dir) {
  Array<float> images = read_idx_images(images_path);
  STRAND_CHECK(images.shape[1] == kSide && images.shape[2] == kSide, Shape,
               "images are " + std::to_string(images.shape[1]) + "x" + std::to_string(images.shape[2]) +
                   " pixels; MNIST images are 28x28",
               images_path.string());
  Array<int32_t> labels = read_idx_labels(labels_path);
  check_counts(images.shape[0], images_path, labels.shape[0], labels_path, dir);
  check_labels(labels.data, labels_path.string());
  return Dataset{Shape{1, kSide, kSide}, std::move(images.data), std::move(labels.data)};
}

Dataset load_npy_split(const fs::path& data_path, const fs::path& labels_path, const fs::path& dir) {
  const std::string where = data_path.string();
  NpyArray raw = read_npy(data_path);
  const Shape& s = raw.shape;
  const bool shape_ok = (s.rank() == 2 && s[1] == kPixels) ||
                        (s.rank() == 3 && s[1] == kSide && s[2] == kSide) ||
                        (s.rank() == 4 && s[1] == 1 && s[2] == kSide && s[3] == kSide);
  STRAND_CHECK(shape_ok, Shape,
               "image data has shape " + s.str() +
                   "; expected [N,784], [N,28,28] or [N,1,28,28] (28x28 = 784 pixels per image)",
               where);
  const int64_t n = s[0];

  std::vector<float> pixels;
  if (raw.dtype == NpyDtype::U1) {
    pixels.resize(raw.data.size());
    for (size_t i = 0; i < pixels.size(); ++i)
      pixels[i] = static_cast<float>(static_cast<uint8_t>(raw.data[i])) / 255.0f;
  } else {
    STRAND_CHECK(raw.dtype == NpyDtype::F4 || raw.dtype == NpyDtype::F8, Format,
                 std::string("image data has dtype ") + to_string(raw.dtype) +
                     "; expected float32 (values in [0,1]) or uint8 (0..255)",
                 where);
    pixels = npy_to_f32(raw, where).data;
    for (size_t i = 0; i < pixels.size(); ++i)
      STRAND_CHECK(std::isfinite(pixels[i]), Format,
                   "pixel " + std::to_string(i % kPixels) + " of image " + std::to_string(i / kPixels) +
                       " is not finite (" + std::to_string(pixels[i]) + ")",
                   where);
  }
  raw = {};  // release the raw bytes before reading the labels

  NpyArray raw_labels = read_npy(labels_path);
  STRAND_CHECK(raw_labels.shape.rank() == 1, Shape,
               "labels have shape " + raw_labels.shape.str() + "; expected [N]", labels_path.string());
  Array<int32_t> labels = npy_to_i32(raw_labels, labels_path.string());
  check_counts(n, data_path, labels.shape[0], labels_path, dir);
  check_labels(labels.data, labels_path.string());
  return Dataset{Shape{1, kSide, kSide}, std::move(pixels), std::move(labels.data)};
}

void check_dataset(const Dataset& d, const std::string& where) {
  const int64_t sample = d.sample_shape.numel();
  STRAND_CHECK(d.images.size() == static_cast<size_t>(d.size() * sample), Usage,
               std::to_string(d.images.size()) + " image values for " + std::to_string(d.size()) +
                   " labels of samples shaped " + d.sample_shape.str(),
               where);
}

}  // namespace

MnistSplits load_mnist_dir(const fs::path& dir) {
  const std::string where = dir.string();
  std::error_code ec;
  STRAND_CHECK(fs::exists(dir, ec), Io, "data directory does not exist", where);
  STRAND_CHECK(fs::is_directory(dir, ec), Io, "is not a directory", where);

  std::string report;
  if (auto p = resolve(dir, kIdx, kAllRoles, report))
    return {load_idx_split((*p)[0], (*p)[1], dir), load_idx_split((*p)[2], (*p)[3], dir), "idx"};
  if (auto p = resolve(dir, kNpy, kAllRoles, report))
    return {load_npy_split((*p)[0], (*p)[1], dir), load_npy_split((*p)[2], (*p)[3], dir), "npy"};
  report.pop_back();
  throw Error(ErrorKind::Io, "no complete MNIST data set found. " + report, where);
}

Dataset load_mnist_split(const fs::path& dir, MnistSplit split, std::string* layout) {
  const std::string where = dir.string();
  std::error_code ec;
  STRAND_CHECK(fs::exists(dir, ec), Io, "data directory does not exist", where);
  STRAND_CHECK(fs::is_directory(dir, ec), Io, "is not a directory", where);
  const std::array<size_t, 2> roles =
      split == MnistSplit::train ? std::array<size_t, 2>{0, 1} : std::array<size_t, 2>{2, 3};
  const size_t img = roles[0], lbl = roles[1];
  std::string report;
  if (auto p = resolve(dir, kIdx, roles, report)) {
    if (layout) *layout = "idx";
    return load_idx_split((*p)[img], (*p)[lbl], dir);
  }
  if (auto p = resolve(dir, kNpy, roles, report)) {
    if (layout) *layout = "npy";
    return load_npy_split((*p)[img], (*p)[lbl], dir);
  }
  report.pop_back();
  throw Error(ErrorKind::Io,
              std::string("no MNIST ") + (split == MnistSplit::train ? "training" : "test") +
                  " split found. " + report,
              where);
}

void write_mnist_npy(const MnistSplits& splits, const fs::path& out_dir) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  STRAND_CHECK(!ec, Io, "cannot create directory: " + ec.message(), out_dir.string());
  const std::pair<const Dataset*, const char*> parts[] = {{&splits.train, "train"}, {&splits.eval, "eval"}};
  for (const auto& [d, name] : parts) {
    check_dataset(*d, out_dir.string() + " (" + name + " split)");
    const fs::path base = out_dir / name;
    write_npy(base.string() + "_data.npy", Shape{d->size(), d->sample_shape.numel()}, d->images.data());
    write_npy(base.string() + "_labels.npy", Shape{d->size()}, d->labels.data());
  }
}

namespace {

// SplitMix64 (Steele, Lea, Flood 2014): tiny, fully specified, good enough for shuffling.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound), bound > 0, without modulo bias (Lemire's multiply-and-reject).
  uint64_t below(uint64_t bound) {
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * bound;
    if (static_cast<uint64_t>(m) < bound) {
      const uint64_t threshold = -bound % bound;
      while (static_cast<uint64_t>(m) < threshold) m = static_cast<unsigned __int128>(next()) * bound;
    }
    return static_cast<uint64_t>(m >> 64);
  }

 private:
  uint64_t state_;
};

}  // namespace

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  STRAND_CHECK(n >= 0, Usage, "sample count " + std::to_string(n) + " is negative", "epoch_permutation");
  // Hash (seed, epoch) into the generator's state so nearby seeds and epochs give
  // unrelated streams.
  SplitMix64 mix(seed);
  SplitMix64 rng(mix.next() ^ SplitMix64(static_cast<uint64_t>(epoch)).next());
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(p[static_cast<size_t>(i)], p[rng.below(static_cast<uint64_t>(i) + 1)]);
  return p;
}

std::span<const int64_t> shard(std::span<const int64_t> order, int rank, int world) {
  STRAND_CHECK(world >= 1 && rank >= 0 && rank < world, Usage,
               "rank " + std::to_string(rank) + " is not in [0, world size " + std::to_string(world) + ")",
               "shard");
  const size_t k = order.size() / static_cast<size_t>(world);
  return order.subspan(static_cast<size_t>(rank) * k, k);
}

int64_t steps_per_epoch(int64_t n, int64_t batch) {
  STRAND_CHECK(batch > 0 && n >= 0, Usage,
               "need batch > 0 and n >= 0, got batch " + std::to_string(batch) + ", n " + std::to_string(n),
               "steps_per_epoch");
  return n / batch + (n % batch != 0);
}

std::span<const int64_t> batch_slice(std::span<const int64_t> order, int64_t step, int64_t batch) {
  const int64_t steps = steps_per_epoch(static_cast<int64_t>(order.size()), batch);
  STRAND_CHECK(step >= 0 && step < steps, Usage,
               "step " + std::to_string(step) + " is not in [0, " + std::to_string(steps) + ")",
               "batch_slice");
  const size_t begin = static_cast<size_t>(step * batch);
  return order.subspan(begin, std::min(static_cast<size_t>(batch), order.size() - begin));
}

void gather_batch(const Dataset& data, std::span<const int64_t> indices, float* images_out,
                  int32_t* labels_out) {
  check_dataset(data, "gather_batch");
  const size_t sample = static_cast<size_t>(data.sample_shape.numel());
  for (size_t b = 0; b < indices.size(); ++b) {
    const int64_t i = indices[b];
    STRAND_CHECK(i >= 0 && i < data.size(), Usage,
                 "sample index " + std::to_string(i) + " is outside the data set of " +
                     std::to_string(data.size()) + " samples",
                 "gather_batch");
    std::memcpy(images_out + b * sample, data.images.data() + static_cast<size_t>(i) * sample,
                sample * sizeof(float));
    labels_out[b] = data.labels[static_cast<size_t>(i)];
  }
}

}  // namespace strand::io
