#include "core/backend.hpp"

namespace strand {

Buffer::~Buffer() {
  if (ptr_ && backend_) backend_->free(ptr_);
}

}  // namespace strand
