#include <strand/core/error.hpp>

namespace strand {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Io:
      return "I/O error";
    case ErrorKind::Format:
      return "format error";
    case ErrorKind::Shape:
      return "shape error";
    case ErrorKind::Usage:
      return "usage error";
    case ErrorKind::Internal:
      return "internal error";
    case ErrorKind::Timeout:
      return "timeout";
  }
  return "error";
}

static std::string compose(ErrorKind kind, const std::string& message, const std::string& where) {
  std::string s = where.empty() ? std::string() : where + ": ";
  s += to_string(kind);
  s += ": ";
  s += message;
  return s;
}

Error::Error(ErrorKind kind, std::string message, std::string where)
    : std::runtime_error(compose(kind, message, where)),
      kind_(kind),
      message_(std::move(message)),
      where_(std::move(where)) {}

}  // namespace strand
