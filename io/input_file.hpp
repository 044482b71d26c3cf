// InputFile: a read-only regular file of known size, for the binary readers (IDX, .npy).
// The readers check every declared size against size() before allocating or reading, so a
// corrupt header cannot make them allocate more than the file holds. Errors name the path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace strand::io {

class InputFile {
 public:
  // Throws Error(Io) if the file is missing, unreadable or not a regular file.
  explicit InputFile(const std::filesystem::path& path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  uint64_t size() const { return size_; }
  const std::string& where() const { return where_; }

  // Reads exactly n bytes at offset; the caller has checked offset + n <= size().
  // Throws Error(Io) on a read error or if the file shrank meanwhile.
  void read(uint64_t offset, void* dst, size_t n) const;

 private:
  std::string where_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace strand::io
