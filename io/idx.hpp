// IDX reader (the format of the original MNIST files, http://yann.lecun.com/exdb/mnist/).
// Layout: magic = bytes {0, 0, type, ndims}; ndims big-endian u32 dimensions; then the
// elements, big-endian, row-major. The file must be exactly header + data bytes long:
// short files and trailing bytes are both rejected (Error(Format), naming the path).
//
//   read_idx(path)        -> IdxArray, any element type, values in native byte order
//   read_idx_images(path) -> uint8 [N, rows, cols], any size    (ubyte, magic 0x00000803)
//   read_idx_labels(path) -> int32 [N]                          (ubyte, magic 0x00000801)
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <vector>

#include <strand/core/tensor.hpp>
#include <strand/io/array.hpp>

namespace strand::io {

enum class IdxType : uint8_t {
  U8 = 0x08,
  I8 = 0x09,
  I16 = 0x0B,
  I32 = 0x0C,
  F32 = 0x0D,
  F64 = 0x0E,
};

const char* to_string(IdxType type);  // "ubyte", "byte", "short", "int", "float", "double"
size_t itemsize(IdxType type);

struct IdxArray {
  IdxType type = IdxType::U8;
  Shape shape;
  std::vector<std::byte> data;  // shape.numel() * itemsize(type) bytes, native byte order

  int64_t numel() const { return shape.numel(); }
  // Element i (flat, row-major) as a double; exact for every IDX type.
  // Throws Error(Usage) if i is out of range.
  double value(int64_t i) const;
};

IdxArray read_idx(const std::filesystem::path& path);
Array<uint8_t> read_idx_images(const std::filesystem::path& path);
Array<int32_t> read_idx_labels(const std::filesystem::path& path);

}  // namespace strand::io
