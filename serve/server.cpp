#include <strand/serve/server.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <optional>
#include <utility>

#include <httplib.h>

#include <strand/core/error.hpp>
#include <strand/serve/response.hpp>

namespace strand::serve {

struct Server::Impl {
  httplib::Server http;
  int listen_fd = -1;
};

namespace {

void refuse(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(error_json(message), "application/json");
  // The body may be unread: the connection cannot carry another request.
  res.set_header("Connection", "close");
}

// The Content-Length header; absent or unreadable counts as none (httplib then refuses it).
std::optional<uint64_t> content_length(const httplib::Request& req) {
  if (!req.has_header("Content-Length")) return std::nullopt;
  const std::string v = req.get_header_value("Content-Length");
  uint64_t n = 0;
  const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec == std::errc::result_out_of_range) return UINT64_MAX;
  if (ec != std::errc() || ptr != v.data() + v.size()) return std::nullopt;
  return n;
}

}  // namespace

Server::Server(Endpoint& endpoint, ServerOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>()) {
  httplib::Server& http = impl_->http;
  const int workers = options_.workers;
  STRAND_CHECK(workers >= 1, Usage, "workers must be at least 1", "serve");
  http.new_task_queue = [workers] { return new httplib::ThreadPool(size_t(workers)); };
  const time_t timeout = options_.io_timeout.count();
  http.set_read_timeout(timeout, 0);
  http.set_write_timeout(timeout, 0);
  http.set_keep_alive_timeout(timeout);
  http.set_keep_alive_max_count(1000);
  http.set_tcp_nodelay(true);
  http.set_payload_max_length(options_.max_body_bytes);
  // SO_REUSEADDR but not httplib's default SO_REUSEPORT: a second server on a busy port must
  // fail, not share it. The listening descriptor is kept to raise the backlog below.
  http.set_socket_options([impl = impl_.get()](int fd) {
    const int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    impl->listen_fd = fd;
  });

  const size_t max_body = options_.max_body_bytes;
  http.set_pre_routing_handler([max_body](const httplib::Request& req, httplib::Response& res) {
    using R = httplib::Server::HandlerResponse;
    if (content_length(req).value_or(0) > max_body) {
      refuse(res, 413,
             "the body of " + req.get_header_value("Content-Length") + " bytes is over the limit of " +
                 std::to_string(max_body) + " bytes");
      return R::Handled;
    }
    const std::string encoding = req.get_header_value("Content-Encoding");
    if (!encoding.empty() && encoding != "identity") {
      refuse(
          res, 415,
          "Content-Encoding '" + encoding.substr(0, 64) + "' is not supported; send the body uncompressed");
      return R::Handled;
    }
    if (req.method != "GET" && req.method != "HEAD" && req.method != "POST") {
      refuse(res, 405, "method " + req.method.substr(0, 16) + " is not allowed; the routes take GET or POST");
      res.set_header("Allow", "GET, POST");
      return R::Handled;
    }
    return R::Unhandled;
  });

  auto respond = [&endpoint](const httplib::Request& req, httplib::Response& res, std::string_view body) {
    HttpRequest r;
    r.method = req.method;
    r.path = req.path;
    const std::string content_type = req.get_header_value("Content-Type"),
                      accept = req.get_header_value("Accept"),
                      attrs = req.get_header_value("X-Amzn-SageMaker-Custom-Attributes");
    r.content_type = content_type;
    r.accept = accept;
    r.custom_attributes = attrs;
    r.body = body;
    HttpResponse out = endpoint.handle(r);
    res.status = out.status;
    if (!out.allow.empty()) res.set_header("Allow", out.allow);
    res.set_content(std::move(out.body), out.content_type.c_str());
  };
  http.Get(".*", [respond](const httplib::Request& req, httplib::Response& res) { respond(req, res, {}); });
  const auto deadline = options_.body_deadline;
  http.Post(".*", [respond, max_body, deadline](const httplib::Request& req, httplib::Response& res,
                                                const httplib::ContentReader& reader) {
    std::string body;
    body.reserve(size_t(content_length(req).value_or(0)));
    bool too_large = false, too_slow = false;
    const auto start = std::chrono::steady_clock::now();
    const bool read = reader([&](const char* data, size_t n) {
      if (body.size() + n > max_body) return !(too_large = true);
      if (std::chrono::steady_clock::now() - start > deadline) return !(too_slow = true);
      body.append(data, n);
      return true;
    });
    if (too_large)
      return refuse(res, 413, "the body is over the limit of " + std::to_string(max_body) + " bytes");
    if (too_slow)
      return refuse(res, 408,
                    "the body took longer than " + std::to_string(deadline.count()) + " s to arrive");
    if (!read) return refuse(res, 400, "the body could not be read whole (the client stopped sending?)");
    respond(req, res, body);
  });
  // httplib's own refusals (unparsable request line or headers, URI too long) get a body too.
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string what = res.status == 400   ? "malformed HTTP request"
                             : res.status == 414 ? "request line too long"
                                                 : "HTTP status " + std::to_string(res.status);
    res.set_content(error_json(what), "application/json");
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    res.status = 500;
    res.set_content(error_json("internal error"), "application/json");
  });
  if (options_.log) {
    http.set_logger([log = options_.log](const httplib::Request& req, const httplib::Response& res) {
      if (res.status >= 400)
        log(req.method + " " + req.path.substr(0, 128) + " -> " + std::to_string(res.status));
    });
  }

  if (options_.port == 0) {
    port_ = http.bind_to_any_port(options_.host);
    STRAND_CHECK(port_ > 0, Io, "cannot listen on any port", options_.host);
  } else {
    STRAND_CHECK(http.bind_to_port(options_.host, options_.port), Io,
                 "cannot listen on port " + std::to_string(options_.port) + " (in use, or not allowed)",
                 options_.host);
    port_ = options_.port;
  }
  // httplib listens with a backlog of 5; many clients connecting at once (a load test's 64
  // connections) would then wait for SYN retransmits. listen() again only resizes the queue.
  if (impl_->listen_fd >= 0) ::listen(impl_->listen_fd, SOMAXCONN);
}

Server::~Server() { stop(); }

void Server::start() {
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] {
    impl_->http.listen_after_bind();
    listen_returned_ = true;
  });
}

void Server::stop() {
  if (!started_) {
    // Never served: httplib would not close the socket it bound.
    if (impl_->listen_fd >= 0) ::close(std::exchange(impl_->listen_fd, -1));
    return;
  }
  if (!thread_.joinable()) return;
  // httplib's stop() only acts once the accept loop runs; wait for it to begin (or give up).
  while (!impl_->http.is_running() && !listen_returned_)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  impl_->http.stop();
  thread_.join();
}

}  // namespace strand::serve
