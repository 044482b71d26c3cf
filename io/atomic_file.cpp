#include <strand/io/atomic_file.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <system_error>

#include <strand/core/error.hpp>

namespace strand::io {
namespace fs = std::filesystem;

namespace {

std::string errno_text(int e) { return std::system_category().message(e); }

// A streambuf over a raw fd so we keep the errno of a failed write (std::ofstream loses
// it) and can fsync the same descriptor afterwards.
class FdStreamBuf : public std::streambuf {
 public:
  explicit FdStreamBuf(int fd) : fd_(fd) { setp(buf_, buf_ + sizeof buf_); }
  int error() const { return err_; }

 protected:
  int_type overflow(int_type ch) override {
    if (!flush_buffer()) return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }

  std::streamsize xsputn(const char* s, std::streamsize n) override {
    // Large blocks (tensor data) go straight to the fd instead of through the buffer.
    if (n < static_cast<std::streamsize>(sizeof buf_)) return std::streambuf::xsputn(s, n);
    if (!flush_buffer() || !write_all(s, static_cast<size_t>(n))) return 0;
    return n;
  }

  int sync() override { return flush_buffer() ? 0 : -1; }

 private:
  bool flush_buffer() {
    bool ok = write_all(pbase(), static_cast<size_t>(pptr() - pbase()));
    setp(buf_, buf_ + sizeof buf_);
    return ok;
  }

  bool write_all(const char* p, size_t n) {
    if (err_ != 0) return false;
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        err_ = errno;
        return false;
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  int fd_;
  int err_ = 0;
  char buf_[1 << 16];
};

// Owns the temporary file: closes it and, unless commit() was called, deletes it.
class TempFile {
 public:
  explicit TempFile(const fs::path& target) {
    fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    static std::atomic<unsigned> counter{0};
    // O_EXCL plus a per-process counter: a stale temp left by a crashed process with the
    // same pid just makes us try the next name.
    for (int attempt = 0; attempt < 100; ++attempt) {
      std::string name = ".";
      name += target.filename().string();
      name += ".tmp.";
      name += std::to_string(::getpid());
      name += '.';
      name += std::to_string(counter++);
      path_ = dir / name;
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) return;
      if (errno != EEXIST) break;
    }
    throw Error(ErrorKind::Io, "cannot create temporary file " + path_.string() + ": " + errno_text(errno),
                target.string());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }

  int fd() const { return fd_; }
  const fs::path& path() const { return path_; }
  // Closes the descriptor, reporting errors (NFS may report write errors only at close).
  int close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }
  void commit() { committed_ = true; }

 private:
  fs::path path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void write_file_atomic(const fs::path& path, const std::function<void(std::ostream&)>& writer) {
  const std::string where = path.string();
  STRAND_CHECK(path.has_filename(), Usage, "not a file path (it names no file)", where);

  TempFile tmp(path);
  {
    FdStreamBuf buf(tmp.fd());
    std::ostream os(&buf);
    writer(os);
    os.flush();
    if (!os.good()) {
      throw Error(ErrorKind::Io,
                  "writing " + tmp.path().string() + " failed: " +
                      (buf.error() ? errno_text(buf.error()) : std::string("stream in error state")),
                  where);
    }
  }
  if (::fsync(tmp.fd()) != 0)
    throw Error(ErrorKind::Io, "fsync of " + tmp.path().string() + " failed: " + errno_text(errno), where);
  if (tmp.close() != 0)
    throw Error(ErrorKind::Io, "closing " + tmp.path().string() + " failed: " + errno_text(errno), where);
  if (::rename(tmp.path().c_str(), path.c_str()) != 0)
    throw Error(ErrorKind::Io, "cannot rename " + tmp.path().string() + " over it: " + errno_text(errno),
                where);
  tmp.commit();

  fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int err = 0;
  if (dfd < 0) {
    err = errno;
  } else {
    // Some filesystems cannot fsync a directory (EINVAL); nothing more can be done there.
    if (::fsync(dfd) != 0 && errno != EINVAL) err = errno;
    ::close(dfd);
  }
  if (err != 0)
    throw Error(ErrorKind::Io,
                "file was replaced but fsync of its directory " + dir.string() +
                    " failed, so the rename may not survive a crash: " + errno_text(err),
                where);
}

void write_file_atomic(const fs::path& path, std::span<const std::byte> data) {
  write_file_atomic(path, [&](std::ostream& os) {
    os.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  });
}

void write_file_atomic(const fs::path& path, std::string_view data) {
  write_file_atomic(path, std::as_bytes(std::span(data.data(), data.size())));
}

}  // namespace strand::io
