// In-memory labelled image data sets, the MNIST directory loader, and the epoch order that
// decides which samples each rank sees in which step.
//
//   load_mnist_dir(dir)       -> train/eval splits (load_mnist_split: one) from the IDX files or the
//   SageMaker
//                                TF-example .npy files, validated, as [N,1,28,28] in [0,1]
//   write_mnist_npy(s, dir)   -> the four .npy files of the SageMaker layout
//   epoch_permutation         -> the same permutation of [0,N) on every platform for (seed, epoch)
//   shard / steps_per_epoch / batch_slice / gather_batch -> what one rank trains on per step
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <strand/core/tensor.hpp>

namespace strand::io {

struct Dataset {
  Shape sample_shape;           // one sample, e.g. {1, 28, 28}
  std::vector<float> images;    // [N, sample_shape...], row-major
  std::vector<int32_t> labels;  // [N]

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

struct MnistSplits {
  Dataset train, eval;
  std::string layout;  // "idx" or "npy"
};

// Reads MNIST from `dir` in one of two layouts (IDX wins if both are complete):
//   idx: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
//        t10k-labels-idx1-ubyte (also the "train-images.idx3-ubyte" spelling)
//   npy: train_data.npy, train_labels.npy, eval_data.npy, eval_labels.npy; data float32
//        (or float64) in [0,1] or uint8 0..255 (scaled by 1/255), shaped [N,784], [N,28,28]
//        or [N,1,28,28]; labels int32 (or any integer dtype, or integral floats), shaped [N].
// Checks that image and label counts match, every sample has 784 pixels, pixels are finite
// and labels lie in 0..9. If neither layout is complete, the error lists the files looked
// for and the ones missing.
MnistSplits load_mnist_dir(const std::filesystem::path& dir);

// One split only (the two files it needs; the other split may be absent), with the same
// layouts and checks. `layout`, when given, receives "idx" or "npy".
enum class MnistSplit { train, eval };
Dataset load_mnist_split(const std::filesystem::path& dir, MnistSplit split, std::string* layout = nullptr);

// Writes train_data.npy / eval_data.npy (float32 [N, pixels]) and train_labels.npy /
// eval_labels.npy (int32 [N]) into out_dir, creating it if needed; each file atomically.
void write_mnist_npy(const MnistSplits& splits, const std::filesystem::path& out_dir);

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

// Copies samples `indices` into images_out ([indices.size(), sample_shape...]) and their
// labels into labels_out ([indices.size()]). Throws Error(Usage) for an index outside [0,N).
void gather_batch(const Dataset& data, std::span<const int64_t> indices, float* images_out,
                  int32_t* labels_out);

}  // namespace strand::io
