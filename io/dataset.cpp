#include <strand/io/dataset.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>
#include <system_error>

#include <strand/core/error.hpp>
#include <strand/core/text.hpp>
#include <strand/io/idx.hpp>
#include <strand/io/npy.hpp>

namespace strand::io {
namespace fs = std::filesystem;

const void* Dataset::pixel_data() const {
  return pixels == PixelType::U8 ? static_cast<const void*>(images_u8.data()) : images.data();
}

size_t Dataset::pixel_bytes() const {
  return pixels == PixelType::U8 ? images_u8.size() : images.size() * sizeof(float);
}

namespace {

constexpr Name<ImageLayout> kLayoutNames[] = {
    {ImageLayout::Auto, "auto"}, {ImageLayout::Nchw, "nchw"}, {ImageLayout::Nhwc, "nhwc"}};

// One file of a set of names: the accepted spellings, preferred first.
struct Role {
  std::vector<std::string> names;
};

struct FileSet {
  const char* name;
  std::array<Role, 4> roles;  // train images, train labels, eval images, eval labels
};

const FileSet kIdx{"idx",
                   {Role{{"train-images-idx3-ubyte", "train-images.idx3-ubyte"}},
                    Role{{"train-labels-idx1-ubyte", "train-labels.idx1-ubyte"}},
                    Role{{"t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"}},
                    Role{{"t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"}}}};
const FileSet kNpy{"npy",
                   {Role{{"train_data.npy"}}, Role{{"train_labels.npy"}}, Role{{"eval_data.npy"}},
                    Role{{"eval_labels.npy"}}}};
constexpr std::array<size_t, 2> kTrainRoles{0, 1}, kEvalRoles{2, 3};

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

// The images and labels files of one split.
struct Pair {
  fs::path images, labels;
};

// The files of `roles` (images, labels) in `format`, or nothing plus a description of what was
// looked for and what is missing appended to `report`.
std::optional<Pair> resolve(const fs::path& dir, const FileSet& format, std::span<const size_t, 2> roles,
                            std::string& report) {
  std::array<fs::path, 2> found;
  std::string looked, missing;
  for (size_t k = 0; k < 2; ++k) {
    const Role& role = format.roles[roles[k]];
    looked += (looked.empty() ? "" : ", ") + describe(role);
    if (auto p = find(dir, role)) {
      found[k] = *p;
    } else {
      missing += (missing.empty() ? "" : ", ") + role.names[0];
      // A common mistake: the files were downloaded but never decompressed.
      std::error_code ec;
      for (const std::string& name : role.names)
        if (fs::exists(dir / (name + ".gz"), ec))
          missing += " (found " + name + ".gz: decompress it first, e.g. with gunzip)";
    }
  }
  if (missing.empty()) return Pair{found[0], found[1]};
  report += std::string(format.name) + " files: looked for " + looked + "; missing " + missing + ". ";
  return std::nullopt;
}

void check_dir(const fs::path& dir) {
  std::error_code ec;
  STRAND_CHECK(fs::exists(dir, ec), Io, "data directory does not exist", dir.string());
  STRAND_CHECK(fs::is_directory(dir, ec), Io, "is not a directory", dir.string());
}

// The training files, IDX first; Io error listing what is missing when neither set is complete.
std::pair<const FileSet*, Pair> locate(const fs::path& dir, std::span<const size_t, 2> roles,
                                       const char* what) {
  std::string report;
  for (const FileSet* f : {&kIdx, &kNpy})
    if (auto p = resolve(dir, *f, roles, report)) return {f, *p};
  report.pop_back();
  throw Error(ErrorKind::Io, std::string("no ") + what + " images and labels found. " + report, dir.string());
}

// The evaluation files of `format`: both, or none; one without the other is an error.
std::optional<Pair> eval_files(const fs::path& dir, const FileSet& format) {
  const std::optional<fs::path> images = find(dir, format.roles[2]), labels = find(dir, format.roles[3]);
  if (images && labels) return Pair{*images, *labels};
  if (!images && !labels) return std::nullopt;
  const Role& have = format.roles[images ? 2 : 3];
  const Role& lack = format.roles[images ? 3 : 2];
  throw Error(ErrorKind::Io,
              "found " + have.names[0] + " but not " + lack.names[0] +
                  " (an evaluation split needs both, or neither)",
              dir.string());
}

// A sample dimension of 0 would make every image empty.
void check_sample(const Shape& file_shape, const Shape& sample, const std::string& where) {
  for (int64_t d : sample.dims())
    STRAND_CHECK(
        d > 0, Shape,
        "image data has shape " + file_shape.str() + ": a sample of " + sample.str() + " holds no pixels",
        where);
}

Dataset idx_images(const fs::path& path) {
  Array<uint8_t> a = read_idx_images(path);
  Dataset d;
  d.sample_shape = Shape{1, a.shape[1], a.shape[2]};
  check_sample(a.shape, d.sample_shape, path.string());
  d.pixels = PixelType::U8;
  d.images_u8 = std::move(a.data);
  d.source = path.string();
  return d;
}

// [N,H,W,C] -> [N,C,H,W].
template <class T>
std::vector<T> nhwc_to_nchw(const T* src, int64_t n, int64_t h, int64_t w, int64_t c) {
  std::vector<T> out(static_cast<size_t>(n * h * w * c));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t k = 0; k < c; ++k)
          out[static_cast<size_t>(((i * c + k) * h + y) * w + x)] = src[((i * h + y) * w + x) * c + k];
  return out;
}

// Whether a 4-D shape [N,a,b,c] is NHWC: by `layout`, else by which of a and c can be a channel
// count.
bool is_nhwc(const Shape& s, ImageLayout layout, const std::string& where) {
  if (layout != ImageLayout::Auto) return layout == ImageLayout::Nhwc;
  const auto channels = [](int64_t d) { return d >= 1 && d <= 4; };
  const bool nchw = channels(s[1]), nhwc = channels(s[3]);
  STRAND_CHECK(nchw != nhwc, Usage,
               "image data has shape " + s.str() + ": " +
                   (nchw ? "both NCHW (" + std::to_string(s[1]) + " channels of " + std::to_string(s[2]) +
                               "x" + std::to_string(s[3]) + ") and NHWC (" + std::to_string(s[3]) +
                               " channels of " + std::to_string(s[1]) + "x" + std::to_string(s[2]) + ") fit"
                         : std::string("neither dimension 1 nor dimension 3 is a channel count (1 to 4)")) +
                   "; say which with --layout nchw or --layout nhwc",
               where);
  return nhwc;
}

Dataset npy_images(const fs::path& path, ImageLayout layout) {
  const std::string where = path.string();
  NpyArray raw = read_npy(path);
  const Shape s = raw.shape;
  STRAND_CHECK(s.rank() >= 2 && s.rank() <= 4, Shape,
               "image data has shape " + s.str() +
                   "; expected [N,H,W], [N,C,H,W], [N,H,W,C] or [N,F] (rows of F values)",
               where);
  const bool nhwc = s.rank() == 4 && is_nhwc(s, layout, where);
  Dataset d;
  d.source = where;
  d.sample_shape = s.rank() == 2   ? Shape{s[1]}
                   : s.rank() == 3 ? Shape{1, s[1], s[2]}
                   : nhwc          ? Shape{s[3], s[1], s[2]}
                                   : Shape{s[1], s[2], s[3]};
  check_sample(s, d.sample_shape, where);
  const int64_t n = s[0], sample = d.sample_shape.numel();
  if (raw.dtype == NpyDtype::U1) {
    d.pixels = PixelType::U8;
    const auto* bytes = reinterpret_cast<const uint8_t*>(raw.data.data());
    d.images_u8 = nhwc ? nhwc_to_nchw(bytes, n, s[1], s[2], s[3])
                       : std::vector<uint8_t>(bytes, bytes + raw.data.size());
    return d;
  }
  STRAND_CHECK(raw.dtype == NpyDtype::F4 || raw.dtype == NpyDtype::F8, Format,
               std::string("image data has dtype ") + to_string(raw.dtype) +
                   "; expected uint8 (0..255, scaled by 1/255) or float32/float64 (used as they are)",
               where);
  std::vector<float> pixels = npy_to_f32(raw, where).data;
  raw = {};
  for (size_t i = 0; i < pixels.size(); ++i)
    STRAND_CHECK(std::isfinite(pixels[i]), Format,
                 "pixel " + std::to_string(int64_t(i) % sample) + " of image " +
                     std::to_string(int64_t(i) / sample) + " is not finite (" + std::to_string(pixels[i]) +
                     ")",
                 where);
  d.images = nhwc ? nhwc_to_nchw(pixels.data(), n, s[1], s[2], s[3]) : std::move(pixels);
  return d;
}

std::vector<int32_t> read_labels(const fs::path& path, const FileSet& format) {
  if (&format == &kIdx) return read_idx_labels(path).data;
  NpyArray raw = read_npy(path);
  STRAND_CHECK(raw.shape.rank() == 1, Shape, "labels have shape " + raw.shape.str() + "; expected [N]",
               path.string());
  return npy_to_i32(raw, path.string()).data;
}

int64_t pixel_count(const Dataset& d) {
  return static_cast<int64_t>(d.pixels == PixelType::U8 ? d.images_u8.size() : d.images.size());
}

// One split's images and labels, with matching counts.
Dataset read_split(const Pair& files, const FileSet& format, ImageLayout layout, const fs::path& dir) {
  Dataset d = &format == &kIdx ? idx_images(files.images) : npy_images(files.images, layout);
  d.labels = read_labels(files.labels, format);
  const int64_t images = pixel_count(d) / d.sample_shape.numel();
  STRAND_CHECK(images == d.size(), Format,
               std::to_string(images) + " images in " + files.images.filename().string() + " but " +
                   std::to_string(d.size()) + " labels in " + files.labels.filename().string(),
               dir.string());
  return d;
}

int64_t class_count(const std::vector<int32_t>& labels) {
  int32_t top = -1;
  for (int32_t l : labels) top = std::max(top, l);
  return int64_t(top) + 1;
}

// Every label in [0, classes); `why` says where the count came from.
void check_labels(const std::vector<int32_t>& labels, int64_t classes, const fs::path& file,
                  const std::string& why) {
  for (size_t i = 0; i < labels.size(); ++i)
    STRAND_CHECK(labels[i] >= 0 && labels[i] < classes, Format,
                 "row " + std::to_string(i) + ": label " + std::to_string(labels[i]) + " is outside [0, " +
                     std::to_string(classes) + ")" + why,
                 file.string());
}

std::string model_classes(int64_t k) { return " (the model has " + std::to_string(k) + " classes)"; }

// The rows `rows` of `d`, in that order.
Dataset subset(const Dataset& d, const std::vector<int64_t>& rows) {
  Dataset out;
  out.sample_shape = d.sample_shape;
  out.pixels = d.pixels;
  out.source = d.source;
  const size_t sample = static_cast<size_t>(d.sample_shape.numel());
  for (int64_t r : rows) {
    const size_t i = static_cast<size_t>(r);
    out.labels.push_back(d.labels[i]);
    if (d.pixels == PixelType::U8)
      out.images_u8.insert(out.images_u8.end(), d.images_u8.begin() + i * sample,
                           d.images_u8.begin() + (i + 1) * sample);
    else
      out.images.insert(out.images.end(), d.images.begin() + i * sample, d.images.begin() + (i + 1) * sample);
  }
  return out;
}

// The permutation that picks a validation split: fixed, so the held-out samples do not depend
// on the training seed, and `strand eval --val-split` finds the ones training left out.
constexpr uint64_t kHoldOutSeed = 0x7a11d5e7;

// (kept, held out): round(fraction * N) samples held out, each part in file order.
std::pair<Dataset, Dataset> hold_out(const Dataset& all, double fraction, const fs::path& dir) {
  const int64_t n = all.size(), k = std::llround(fraction * double(n));
  STRAND_CHECK(k >= 1 && k < n, Usage,
               "a validation split of " + compact(fraction) + " of " + std::to_string(n) +
                   " training samples holds out " + std::to_string(k) + ": each part needs at least one",
               dir.string());
  std::vector<bool> held(static_cast<size_t>(n), false);
  const std::vector<int64_t> p = epoch_permutation(n, kHoldOutSeed, 0);
  for (int64_t i = 0; i < k; ++i) held[static_cast<size_t>(p[static_cast<size_t>(i)])] = true;
  std::vector<int64_t> keep, out;
  for (int64_t i = 0; i < n; ++i) (held[static_cast<size_t>(i)] ? out : keep).push_back(i);
  return {subset(all, keep), subset(all, out)};
}

// The training split and the class count (checked against options.classes), and the
// evaluation split when `with_eval`.
DataSplits load(const fs::path& dir, const DataOptions& o, bool with_eval) {
  check_dir(dir);
  STRAND_CHECK(o.val_split >= 0 && o.val_split < 1, Usage,
               "the validation split must be in (0, 1), got " + compact(o.val_split), dir.string());
  const auto [format, files] = locate(dir, kTrainRoles, "training");
  DataSplits s;
  s.format = format->name;
  s.train = read_split(files, *format, o.layout, dir);
  STRAND_CHECK(s.train.size() > 0, Format, "the training set is empty", files.images.string());
  const int64_t used = class_count(s.train.labels);
  s.classes = o.classes.value_or(used);
  check_labels(s.train.labels, s.classes, files.labels,
               o.classes ? model_classes(s.classes) : " (the class count, from the largest label)");
  STRAND_CHECK(used == s.classes, Usage,
               "the largest label is " + std::to_string(used - 1) + ", but the model has " +
                   std::to_string(s.classes) + " classes (labels 0.." + std::to_string(s.classes - 1) +
                   "): model and data disagree",
               files.labels.string());
  const std::optional<Pair> eval = eval_files(dir, *format);
  if (o.val_split > 0) {
    STRAND_CHECK(!eval, Usage,
                 "a validation split holds out part of the training set for evaluation, but the "
                 "directory has evaluation files (" +
                     eval->images.filename().string() + ", " + eval->labels.filename().string() +
                     "): use one or the other",
                 dir.string());
    auto [kept, held] = hold_out(s.train, o.val_split, dir);
    s.train = std::move(kept);
    if (with_eval) s.eval = std::move(held);
  } else if (eval && with_eval) {
    s.eval = read_split(*eval, *format, o.layout, dir);
    check_labels(s.eval->labels, s.classes, eval->labels,
                 o.classes ? model_classes(s.classes) : " (the training labels' class count)");
  }
  return s;
}

}  // namespace

ImageLayout parse_image_layout(std::string_view text) {
  return parse_name(kLayoutNames, text, "image layout", "--layout");
}

std::string_view to_string(ImageLayout layout) { return name_of(kLayoutNames, layout); }

DataSplits load_data_dir(const fs::path& dir, const DataOptions& options) { return load(dir, options, true); }

Dataset load_data_split(const fs::path& dir, Split split, const DataOptions& options, std::string* format) {
  if (split == Split::train || options.val_split > 0) {
    DataSplits s = load(dir, options, split == Split::eval);
    if (format) *format = s.format;
    return split == Split::train ? std::move(s.train) : std::move(*s.eval);
  }
  check_dir(dir);
  const auto [f, files] = locate(dir, kEvalRoles, "evaluation");
  if (format) *format = f->name;
  Dataset d = read_split(files, *f, options.layout, dir);
  check_labels(d.labels, options.classes.value_or(class_count(d.labels)), files.labels,
               options.classes ? model_classes(*options.classes) : "");
  return d;
}

Dataset to_f32(const Dataset& d) {
  if (d.pixels == PixelType::F32) return d;
  Dataset out{d.sample_shape, std::vector<float>(d.images_u8.size()), d.labels, PixelType::F32, {}, d.source};
  for (size_t i = 0; i < d.images_u8.size(); ++i) out.images[i] = u8_pixel(d.images_u8[i]);
  return out;
}

namespace {
void check_dataset(const Dataset& d, const std::string& where) {
  const int64_t values = pixel_count(d);
  STRAND_CHECK(values == d.size() * d.sample_shape.numel(), Usage,
               std::to_string(values) + " image values for " + std::to_string(d.size()) +
                   " labels of samples shaped " + d.sample_shape.str(),
               where);
}
}  // namespace

void write_mnist_npy(const DataSplits& splits, const fs::path& out_dir) {
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  STRAND_CHECK(!ec, Io, "cannot create directory: " + ec.message(), out_dir.string());
  const std::pair<const Dataset*, const char*> parts[] = {{&splits.train, "train"},
                                                          {splits.eval ? &*splits.eval : nullptr, "eval"}};
  for (const auto& [d, name] : parts) {
    if (!d) continue;
    check_dataset(*d, out_dir.string() + " (" + name + " split)");
    const Dataset f = to_f32(*d);
    const fs::path base = out_dir / name;
    write_npy(base.string() + "_data.npy", Shape{f.size(), f.sample_shape.numel()}, f.images.data());
    write_npy(base.string() + "_labels.npy", Shape{f.size()}, f.labels.data());
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

}  // namespace strand::io
