// NumPy .npy files (format versions 1.0, 2.0 and 3.0), read and written without numpy.
// Spec: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
//
//   read_npy(path)               -> NpyArray: dtype, shape, raw little-endian bytes
//   read_npy_f32 / read_npy_i32  -> Array<float> / Array<int32_t>, converting other numeric
//                                   dtypes when no value changes (see npy_to_f32/npy_to_i32)
//   write_npy(path, shape, data) -> a version 1.0 file, byte-identical to what np.save writes
//                                   for the same float32/int32/uint8 C-order array; written atomically
//
// Readable dtypes: <f4 <f8 |i1 |u1 <i2 <u2 <i4 <u4 <i8 <u8 (1-byte types under any byte-order
// mark). Rejected with a message naming the dtype: big-endian, float16, complex, bool,
// strings, objects, structured dtypes; also fortran_order True (column-major) unless the
// layout coincides with C order. The file must be exactly header + data bytes long.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <strand/core/tensor.hpp>
#include <strand/io/array.hpp>

namespace strand::io {

enum class NpyDtype { I1, U1, I2, U2, I4, U4, I8, U8, F4, F8 };

const char* to_string(NpyDtype dtype);  // numpy's descr: "<f4", "|u1", ...
size_t itemsize(NpyDtype dtype);

struct NpyArray {
  NpyDtype dtype = NpyDtype::F4;
  Shape shape;
  std::vector<std::byte> data;  // shape.numel() * itemsize(dtype) bytes, little-endian, C order

  int64_t numel() const { return shape.numel(); }
};

NpyArray read_npy(const std::filesystem::path& path);

// Conversions; `where` names the source in errors (Error(Format) naming the first bad
// index and value).
//  - to float32: floats as-is (f8 rounded; finite values beyond float range rejected);
//    integers as-is (uint8 pixels stay 0..255), rejected if |v| > 2^24 (not exact in float).
//  - to int32: integers in int32 range; floats only if every value is integral and in range.
Array<float> npy_to_f32(const NpyArray& a, const std::string& where);
Array<int32_t> npy_to_i32(const NpyArray& a, const std::string& where);

// `expect`: the required shape, -1 = any size in that dimension; Error(Shape) otherwise.
Array<float> read_npy_f32(const std::filesystem::path& path,
                          const std::optional<Shape>& expect = std::nullopt);
Array<int32_t> read_npy_i32(const std::filesystem::path& path,
                            const std::optional<Shape>& expect = std::nullopt);

// `data` holds shape.numel() values in C order (may be null when numel is 0).
void write_npy(const std::filesystem::path& path, const Shape& shape, const float* data);
void write_npy(const std::filesystem::path& path, const Shape& shape, const int32_t* data);
void write_npy(const std::filesystem::path& path, const Shape& shape, const uint8_t* data);

}  // namespace strand::io
