// In-memory labelled image data sets, the data directory loader, and the epoch order that
// decides which samples each rank sees in which step.
//
//   load_data_dir(dir, options) -> the training split, the evaluation split (its files, a part
//                                  held out of the training set, or none) and the class count,
//                                  validated; load_data_split: one split
//   write_mnist_npy(s, dir)     -> the four .npy files of the SageMaker layout
//   to_f32(d)                   -> the same set with float32 pixels
//   epoch_permutation           -> the same permutation of [0,N) on every platform for (seed, epoch)
//   shard / steps_per_epoch / batch_slice -> what one rank trains on per step
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <strand/core/backend.hpp>
#include <strand/core/tensor.hpp>

namespace strand::io {

struct Dataset {
  Shape sample_shape;           // one sample: {C, H, W}, or {F} for rows of F values
  std::vector<float> images;    // pixels F32: [N, sample_shape...], row-major
  std::vector<int32_t> labels;  // [N]
  PixelType pixels = PixelType::F32;
  std::vector<uint8_t> images_u8{};  // pixels U8: [N, sample_shape...], v standing for v / 255
  std::string source{};              // the images' file, for errors (empty for a set made in memory)

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  // The pixel storage in use (images or images_u8) and its size.
  const void* pixel_data() const;
  size_t pixel_bytes() const;
};

// The layout of 4-D .npy image arrays: [N,C,H,W] or [N,H,W,C] (transposed to NCHW at load).
// Auto tells them apart by which of dimensions 1 and 3 can be a channel count (1 to 4); a
// shape where both or neither can ([N,3,32,3], [N,28,28,28]) is an error asking for one.
enum class ImageLayout { Auto, Nchw, Nhwc };
// "auto", "nchw" or "nhwc"; Usage error naming the text otherwise (the CLI's --layout).
ImageLayout parse_image_layout(std::string_view text);
std::string_view to_string(ImageLayout layout);

struct DataOptions {
  ImageLayout layout = ImageLayout::Auto;
  // The model's class count: every label must lie in [0, classes), and the largest training
  // label must be classes - 1 (a 10-class model on labels 0..4 is an error). Unset: the largest
  // training label + 1.
  std::optional<int64_t> classes;
  // In (0, 1): the evaluation set is this fraction of the training files (rounded), held out
  // by a fixed permutation — the same samples for every seed, and for `strand eval` — and the
  // directory must hold no evaluation files. 0: the evaluation files, if any.
  double val_split = 0;
};

struct DataSplits {
  Dataset train;
  std::optional<Dataset> eval;  // none: no evaluation files and no val_split
  std::string format;           // "idx" or "npy"
  int64_t classes = 0;          // every label lies in [0, classes)
};

// Reads a labelled image set from `dir`, in one of two sets of file names (IDX wins when its
// training files are both there):
//   idx: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
//        t10k-labels-idx1-ubyte (also the "train-images.idx3-ubyte" spelling): uint8 images
//        [N,H,W] of any size (one channel), uint8 labels [N]
//   npy: train_data.npy, train_labels.npy, eval_data.npy, eval_labels.npy: images shaped
//        [N,H,W], [N,C,H,W], [N,H,W,C] (options.layout) or [N,F] (flat rows), uint8 (kept as
//        uint8, scaled by 1/255 when a batch is gathered) or float32/float64 (finite); labels
//        [N] of any integer dtype, or integral floats.
// The evaluation files may be absent (both of them). Checks that image and label counts match
// and that labels lie in [0, classes) (Format, naming the labels file and the first bad row).
// Without the training files, the error lists the files looked for and the ones missing.
DataSplits load_data_dir(const std::filesystem::path& dir, const DataOptions& options = {});

// One split (only the files it needs; with val_split, the evaluation split is read from the
// training files), with the same checks. `format`, when given, receives "idx" or "npy".
enum class Split { train, eval };
Dataset load_data_split(const std::filesystem::path& dir, Split split, const DataOptions& options = {},
                        std::string* format = nullptr);

// `d` with float32 pixels (uint8 ones converted by u8_pixel, as a gather converts them).
Dataset to_f32(const Dataset& d);

// Writes train_data.npy / eval_data.npy (float32 [N, pixels]) and train_labels.npy /
// eval_labels.npy (int32 [N]) into out_dir, creating it if needed; each file atomically.
void write_mnist_npy(const DataSplits& splits, const std::filesystem::path& out_dir);

// A permutation of [0, n), a function of (n, seed, epoch) only: Fisher-Yates driven by
// SplitMix64, so it is identical across compilers and standard libraries (std::shuffle
// and std:: distributions are not).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

// Rank `rank`'s slice of an epoch order (or of one global batch, as the trainer uses it):
// the contiguous block [rank*k, (rank+1)*k) with k = order.size() / world. The last
// order.size() % world entries are dropped, so every rank runs the same number of steps (a
// collective step would otherwise hang); a different permutation each epoch means no sample
// is dropped for good.
std::span<const int64_t> shard(std::span<const int64_t> order, int rank, int world);

// Batches needed to cover n samples: ceil(n / batch). The last batch is used even when
// partial (it then holds n % batch samples), so no sample of a shard is skipped.
int64_t steps_per_epoch(int64_t n, int64_t batch);

// The indices of batch `step` of `order` (size `batch`, or less for the last step).
std::span<const int64_t> batch_slice(std::span<const int64_t> order, int64_t step, int64_t batch);

}  // namespace strand::io
