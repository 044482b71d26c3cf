#include <strand/elastic/process.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include <strand/core/error.hpp>

extern char** environ;

namespace strand::elastic {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

Child::Child(const std::vector<std::string>& argv, const std::vector<std::string>& env, bool pipe_stderr,
             bool capture_stdout) {
  STRAND_CHECK(!argv.empty(), Internal, "no program to start", "strand launch");
  // Everything the child needs is built before fork(): after it only exec-safe calls.
  std::vector<std::string> args = argv, envs;
  for (char** e = environ; *e; ++e) {
    const std::string_view v(*e);
    bool replaced = false;
    for (const std::string& mine : env)
      if (v.substr(0, v.find('=') + 1) == std::string_view(mine).substr(0, mine.find('=') + 1))
        replaced = true;
    if (!replaced) envs.emplace_back(v);
  }
  envs.insert(envs.end(), env.begin(), env.end());
  std::vector<char*> argp, envp;
  for (std::string& a : args) argp.push_back(a.data());
  for (std::string& e : envs) envp.push_back(e.data());
  argp.push_back(nullptr);
  envp.push_back(nullptr);
  int err[2] = {-1, -1}, out[2] = {-1, -1}, exec_err[2] = {-1, -1};
  STRAND_CHECK(::pipe2(exec_err, O_CLOEXEC) == 0 && (!pipe_stderr || ::pipe2(err, O_CLOEXEC) == 0) &&
                   (!capture_stdout || ::pipe2(out, O_CLOEXEC) == 0),
               Io, std::string("cannot make a pipe: ") + std::strerror(errno), argv[0]);
  pid_ = ::fork();
  STRAND_CHECK(pid_ >= 0, Io, std::string("fork failed: ") + std::strerror(errno), argv[0]);
  if (pid_ == 0) {
    ::setpgid(0, 0);
    sigset_t none;  // the launcher blocks the signals it waits for: not so the child
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (pipe_stderr) ::dup2(err[1], 2);
    if (capture_stdout) ::dup2(out[1], 1);
    ::execvpe(argp[0], argp.data(), envp.data());
    const int e = errno;
    [[maybe_unused]] ssize_t n = ::write(exec_err[1], &e, sizeof e);
    ::_exit(127);
  }
  ::setpgid(pid_, pid_);  // also here: no race with a stop() before the child ran
  ::close(exec_err[1]);
  if (pipe_stderr) {
    ::close(err[1]);
    err_fd_ = err[0];
  }
  if (capture_stdout) {
    ::close(out[1]);
    out_fd_ = out[0];
  }
  int e = 0;
  const ssize_t n = ::read(exec_err[0], &e, sizeof e);  // EOF: exec succeeded
  ::close(exec_err[0]);
  if (n == sizeof e) {
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    if (err_fd_ >= 0) ::close(err_fd_);
    if (out_fd_ >= 0) ::close(out_fd_);
    throw Error(ErrorKind::Io, std::string("cannot run it: ") + std::strerror(e), argv[0]);
  }
}

Child::~Child() {
  if (pid_ > 0 && !status_) stop(0);
  if (err_fd_ >= 0) ::close(err_fd_);
  if (out_fd_ >= 0) ::close(out_fd_);
}

std::optional<int> Child::poll() {
  if (status_ || pid_ <= 0) return status_;
  int st = 0;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) {
    status_ = st;
    ::kill(-pid_, SIGKILL);  // what it left behind in its group
  }
  return status_;
}

int Child::stop(double grace_s) {
  if (poll()) return *status_;
  ::kill(-pid_, SIGTERM);
  ::kill(-pid_, SIGCONT);  // a stopped process acts on SIGTERM only once continued
  const auto t0 = Clock::now();
  while (!poll() && since(t0) < grace_s) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!status_) {
    ::kill(-pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    status_ = st;
  }
  return *status_;
}

std::string describe_status(int st) {
  if (WIFEXITED(st)) return "exited with status " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st))
    return "was killed by signal " + std::to_string(WTERMSIG(st)) + " (" + strsignal(WTERMSIG(st)) + ")";
  return "ended (wait status " + std::to_string(st) + ")";
}

bool succeeded(int st) { return WIFEXITED(st) && WEXITSTATUS(st) == 0; }

Ran run_for(const std::vector<std::string>& argv, double timeout_s, const std::vector<std::string>& env) {
  Child c(argv, env, false, true);
  Ran r;
  const auto t0 = Clock::now();
  char buf[4096];
  bool open = true;
  while (since(t0) < timeout_s) {
    if (open) {
      pollfd p{.fd = c.stdout_fd(), .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, 50) > 0) {
        const ssize_t n = ::read(c.stdout_fd(), buf, sizeof buf);
        if (n > 0)
          r.out.append(buf, size_t(n));
        else
          open = false;
      }
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!open && (r.status = c.poll())) return r;
  }
  c.stop(1);
  return r;
}

}  // namespace strand::elastic
