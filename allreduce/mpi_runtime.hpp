// MpiRuntime: owns MPI's lifetime in one process (MPI_Init_thread in the constructor,
// MPI_Finalize in the destructor). main() or a test creates exactly one; nothing in strand
// initialises MPI behind the caller's back. STRAND_MPI_CHECK turns an MPI return code into a
// strand::Error naming the call, MPI's message and where (rank, host).
#pragma once

#include <string>

namespace strand::allreduce {

class MpiRuntime {
 public:
  // Initialises MPI asking for MPI_THREAD_SERIALIZED (the fusion thread and the training
  // thread both call MPI, never at the same time); Io error if MPI offers less.
  MpiRuntime(int* argc, char*** argv);
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;
  ~MpiRuntime();

  int world_rank() const { return rank_; }
  int world_size() const { return size_; }
  // This process's host name: STRAND_HOST when set (tests simulate several hosts on one
  // machine with it), else gethostname().
  const std::string& host() const { return host_; }
  // Ends every rank of the job with `code` (MPI_Abort). For main() after a fatal error, so
  // that peers blocked in a collective do not wait for their timeouts.
  [[noreturn]] void abort(int code) const;

 private:
  int rank_ = 0, size_ = 1;
  std::string host_;
};

// Throws strand::Error(Io) when an MPI call fails, with the MPI error text.
[[noreturn]] void throw_mpi_error(int rc, const char* call, const std::string& where);

}  // namespace strand::allreduce

// `where` is a string such as "rank 1/4 host-a" (Group::where()).
#define STRAND_MPI_CHECK(call, where)                                                                        \
  do {                                                                                                       \
    const int strand_mpi_rc_ = (call);                                                                       \
    if (strand_mpi_rc_ != MPI_SUCCESS) ::strand::allreduce::throw_mpi_error(strand_mpi_rc_, #call, (where)); \
  } while (0)
