// Server: an Endpoint on HTTP/1.1 (cpp-httplib), with a fixed number of worker threads.
// - Listens from construction on, so a client may connect as soon as the constructor returns.
// - A body over `max_body_bytes` is refused with 413: from its Content-Length before any of it
//   is read, or (chunked) as soon as the running total passes the limit; compressed bodies are
//   refused (415), so the limit is the memory a request can take.
// - Slow or vanishing clients are dropped after `io_timeout` without a byte, and a body that
//   trickles in for longer than `body_deadline` is refused with 408; a keep-alive connection
//   holds its worker until it closes or idles for `io_timeout`. (httplib reads the request line
//   and headers with no overall deadline: a client trickling header bytes holds one worker.)
// - stop() stops accepting, lets every request already read finish, and returns when the
//   workers have exited; the destructor does the same.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <strand/serve/endpoint.hpp>

namespace strand::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                              // 0: any free port (see Server::port())
  int workers = 64;                             // threads serving connections
  size_t max_body_bytes = 6u << 20;             // SageMaker's 6 MiB payload limit
  std::chrono::seconds io_timeout{5};           // read/write/keep-alive idle limit per connection
  std::chrono::seconds body_deadline{60};       // a body still arriving after this is refused (408)
  std::function<void(const std::string&)> log;  // one line per failed request; none if empty
};

class Server {
 public:
  // Binds and listens; Io error when the address cannot be bound (e.g. the port is in use).
  Server(Endpoint& endpoint, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const { return port_; }
  const ServerOptions& options() const { return options_; }
  // Serves on a background thread until stop().
  void start();
  // Graceful: stops accepting, finishes the requests in flight, joins the workers. Idempotent.
  void stop();

 private:
  struct Impl;
  ServerOptions options_;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  bool started_ = false;
  std::atomic<bool> listen_returned_{false};
  std::thread thread_;
};

}  // namespace strand::serve
