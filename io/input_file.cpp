#include <strand/io/input_file.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include <strand/core/error.hpp>

namespace strand::io {

namespace {
std::string errno_text(int e) { return std::system_category().message(e); }
}  // namespace

InputFile::InputFile(const std::filesystem::path& path) : where_(path.string()) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw Error(ErrorKind::Io, "cannot open for reading: " + errno_text(errno), where_);
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    int e = errno;
    ::close(fd_);
    throw Error(ErrorKind::Io, "cannot stat: " + errno_text(e), where_);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    throw Error(ErrorKind::Io, S_ISDIR(st.st_mode) ? "is a directory, not a file" : "is not a regular file",
                where_);
  }
  size_ = static_cast<uint64_t>(st.st_size);
}

InputFile::~InputFile() { ::close(fd_); }

void InputFile::read(uint64_t offset, void* dst, size_t n) const {
  auto* p = static_cast<char*>(dst);
  while (n > 0) {
    ssize_t r = ::pread(fd_, p, n, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw Error(ErrorKind::Io, "read failed: " + errno_text(errno), where_);
    }
    if (r == 0) throw Error(ErrorKind::Io, "file shrank while being read", where_);
    p += r;
    offset += static_cast<uint64_t>(r);
    n -= static_cast<size_t>(r);
  }
}

}  // namespace strand::io
