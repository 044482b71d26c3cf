#include <strand/allreduce/mpi_runtime.hpp>

#include <mpi.h>
#include <unistd.h>
#include <cstdlib>

#include <strand/core/error.hpp>

namespace strand::allreduce {

void throw_mpi_error(int rc, const char* call, const std::string& where) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
  throw Error(ErrorKind::Io, std::string(call) + " failed: " + std::string(text, size_t(len)), where);
}

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  STRAND_CHECK(!initialized, Usage, "MPI is already initialised: create one MpiRuntime per process",
               "MpiRuntime");
  int provided = 0;
  STRAND_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided), "MpiRuntime");
  // Errors come back as return codes (turned into strand::Error), never as MPI's own abort.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  if (const char* h = std::getenv("STRAND_HOST"); h && *h) {
    host_ = h;
  } else {
    char name[256] = {};
    gethostname(name, sizeof name - 1);
    host_ = name;
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    MPI_Finalize();
    throw Error(ErrorKind::Io, "this MPI library offers no MPI_THREAD_SERIALIZED support", "MpiRuntime");
  }
}

MpiRuntime::~MpiRuntime() { MPI_Finalize(); }

void MpiRuntime::abort(int code) const {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

}  // namespace strand::allreduce
