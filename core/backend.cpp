#include <strand/core/backend.hpp>

#include <algorithm>
#include <charconv>

#include <strand/core/error.hpp>

namespace strand {

Buffer::~Buffer() {
  if (ptr_ && backend_) backend_->free(ptr_);
}

std::string Device::str() const {
  if (kind == DeviceKind::Cpu) return "cpu";
  return index == kLocalGpu ? "cuda" : "cuda:" + std::to_string(index);
}

Device parse_device(std::string_view text) {
  if (text == "cpu") return {};
  if (text == "cuda") return {DeviceKind::Cuda, Device::kLocalGpu};
  if (text.starts_with("cuda:")) {
    int index = -1;
    const char* first = text.data() + 5;
    const char* last = text.data() + text.size();
    auto [end, ec] = std::from_chars(first, last, index);
    if (ec == std::errc() && end == last && index >= 0) return {DeviceKind::Cuda, index};
  }
  throw Error(ErrorKind::Usage, "unknown device '" + std::string(text) + "' (use cpu, cuda or cuda:N)",
              "device");
}

Augmentation parse_augmentation(std::string_view text) {
  const std::string where = "augmentation";
  const auto bad = [&](const std::string& why) {
    return Error(
        ErrorKind::Usage,
        "'" + std::string(text) + "': " + why + " (use shift:P, flip, both as shift:P,flip, or none)", where);
  };
  Augmentation a;
  if (text == "none") return a;
  for (size_t begin = 0; begin <= text.size();) {
    const size_t end = std::min(text.find(',', begin), text.size());
    const std::string_view item = text.substr(begin, end - begin);
    begin = end + 1;
    if (item == "flip") {
      a.flip = true;
    } else if (item.starts_with("shift:")) {
      int64_t p = 0;
      const char* last = item.data() + item.size();
      auto [stop, ec] = std::from_chars(item.data() + 6, last, p);
      if (ec != std::errc() || stop != last || p < 1 || p >= Augmentation::kMaxShift)
        throw bad("the shift must be a whole number of pixels from 1 to " +
                  std::to_string(Augmentation::kMaxShift - 1));
      if (a.shift != 0 && a.shift != p) throw bad("two different shifts");
      a.shift = p;
    } else {
      throw bad("unknown augmentation '" + std::string(item) + "'");
    }
  }
  return a;
}

std::string to_string(const Augmentation& a) {
  if (!a.any()) return "none";
  std::string s;  // appends: g++ 12 gives a false -Wrestrict on const char* + std::string&&
  if (a.shift > 0) (s += "shift:") += std::to_string(a.shift);
  if (a.flip) s += s.empty() ? "flip" : ",flip";
  return s;
}

std::unique_ptr<Backend> make_backend(Device device, int threads, CudaOptions cuda) {
  if (device.is_cpu()) {
    STRAND_CHECK(!cuda.tf32, Usage, "TF32 is a GPU math mode: use it with a cuda device", "device cpu");
    STRAND_CHECK(!cuda.cudnn_benchmark, Usage, "--cudnn-benchmark is for cuDNN: use it with a cuda device",
                 "device cpu");
    return make_cpu_backend(threads);
  }
  return make_cuda_backend(device.resolved(0).index, cuda);
}

}  // namespace strand
