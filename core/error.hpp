// strand::Error — the one error type of the library.
// Library code throws Error (or returns it); only main(), tests and benches end the process.
// An Error carries a kind (what sort of failure), a message, and where it happened
// (a file path, a rank/host, a layer name) so the user can act on it.
#pragma once

#include <stdexcept>
#include <string>

namespace strand {

enum class ErrorKind {
  Io,        // a file or socket could not be read or written
  Format,    // bytes were read but do not form a valid file/message
  Shape,     // tensor shapes do not fit together
  Usage,     // a caller (or a user on the command line) asked for something invalid
  Internal,  // a broken invariant inside strand
  Timeout,   // a peer (another rank) or a device did not answer within the time allowed
};

const char* to_string(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message, std::string where = {});

  ErrorKind kind() const noexcept { return kind_; }
  const std::string& message() const noexcept { return message_; }
  const std::string& where() const noexcept { return where_; }

 private:
  ErrorKind kind_;
  std::string message_;
  std::string where_;
};

}  // namespace strand

// Throws strand::Error(kind, message, where) unless cond holds. `message` may be any
// expression yielding a std::string; it is only evaluated on failure.
#define STRAND_CHECK(cond, kind, message, where)                                       \
  do {                                                                                 \
    if (!(cond)) throw ::strand::Error(::strand::ErrorKind::kind, (message), (where)); \
  } while (0)
