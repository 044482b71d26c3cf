#include <strand/allreduce/communicator.hpp>

#include <thread>

#include <strand/core/backend.hpp>
#include <strand/core/error.hpp>

namespace strand::allreduce {

Algorithm parse_algorithm(std::string_view text) {
  if (text == "ring") return Algorithm::Ring;
  if (text == "hierarchical") return Algorithm::Hierarchical;
  if (text == "mpi") return Algorithm::Mpi;
  if (text == "nccl") return Algorithm::Nccl;
  if (text == "nccl-hierarchical") return Algorithm::NcclHierarchical;
  throw Error(ErrorKind::Usage,
              "unknown allreduce algorithm '" + std::string(text) +
                  "' (choose ring, hierarchical, mpi, nccl or nccl-hierarchical)",
              "allreduce");
}

std::string_view to_string(Algorithm algorithm) {
  switch (algorithm) {
    case Algorithm::Ring:
      return "ring";
    case Algorithm::Hierarchical:
      return "hierarchical";
    case Algorithm::Mpi:
      return "mpi";
    case Algorithm::Nccl:
      return "nccl";
    case Algorithm::NcclHierarchical:
      return "nccl-hierarchical";
  }
  return "?";
}

std::string Communicator::where() const {
  return "rank " + std::to_string(rank()) + "/" + std::to_string(size()) +
         (host().empty() ? "" : " " + host());
}

void Communicator::allreduce_mean(float* data, int64_t n) {
  allreduce_sum(data, n);
  const float scale = 1.0f / float(size());
  for (int64_t i = 0; i < n; ++i) data[i] *= scale;
}

void Communicator::queue_allreduce_mean(Lane&, float*, int64_t) {
  throw Error(ErrorKind::Usage, name() + " reduces host buffers: it cannot queue a device collective",
              where());
}

// Nothing of a host communicator's runs on a lane: the mark waits for kernels alone.
void Communicator::wait(Lane& lane, int64_t mark) {
  while (!lane.passed(mark)) std::this_thread::yield();
}

double Communicator::sum(double value) {
  double s = 0;
  for (double v : allgather(value)) s += v;
  return s;
}

}  // namespace strand::allreduce
