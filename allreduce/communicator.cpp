#include <strand/allreduce/communicator.hpp>

#include <strand/core/error.hpp>

namespace strand::allreduce {

Algorithm parse_algorithm(std::string_view text) {
  if (text == "ring") return Algorithm::Ring;
  if (text == "hierarchical") return Algorithm::Hierarchical;
  if (text == "mpi") return Algorithm::Mpi;
  throw Error(ErrorKind::Usage,
              "unknown allreduce algorithm '" + std::string(text) + "' (choose ring, hierarchical or mpi)",
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

double Communicator::sum(double value) {
  double s = 0;
  for (double v : allgather(value)) s += v;
  return s;
}

}  // namespace strand::allreduce
