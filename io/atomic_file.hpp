// Atomic file replacement: a reader of `path` sees either the old file or the complete new
// one, never a torn write, even if the process dies or the machine loses power mid-write.
// Used for .npy exports, model files and checkpoints.
//
// Recipe: write a temporary file in the target's directory (rename is only atomic within one
// filesystem), fsync it, rename it over the target, fsync the directory (so the rename itself
// is durable). On any failure the temporary file is removed, the old target is untouched and
// strand::Error(Io) is thrown naming the path and the system's reason.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <ostream>
#include <span>
#include <string_view>

namespace strand::io {

void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> data);
void write_file_atomic(const std::filesystem::path& path, std::string_view data);

// Streaming variant for outputs too large to build in memory first: `writer` writes the
// whole content into the stream. If `writer` throws, the temporary file is removed and the
// exception propagates unchanged; the target is not touched.
void write_file_atomic(const std::filesystem::path& path, const std::function<void(std::ostream&)>& writer);

}  // namespace strand::io
