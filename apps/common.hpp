// Small helpers the CLI's commands share.
#pragma once

#include <filesystem>
#include <string>

#include "core/context.hpp"
#include "io/dataset.hpp"

namespace strand::cli {

int default_threads();                      // the cores this process may use
std::filesystem::path default_mnist_cache();  // ${STRAND_CACHE:-~/.cache/strand}/mnist
// A CPU context with `threads` threads, logging to stderr.
Context make_context(int threads);
// Loads MNIST from `dir` and logs what was found.
io::MnistSplits load_data(const Context& ctx, const std::filesystem::path& dir);

}  // namespace strand::cli
