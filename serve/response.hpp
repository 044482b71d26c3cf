// Response bodies: predictions as TF Serving JSON (row: {"predictions": [[p0, ..., p9], ...]},
// columnar: {"outputs": [[...], ...]}) or JSON lines (one prediction list per line), and error
// bodies {"error": "..."}. Floats are written in their shortest round-trip form, so a client
// reads back exactly the float32 the model computed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <strand/serve/request.hpp>

namespace strand::serve {

std::string predictions_json(const float* probs, int64_t rows, int64_t classes, Layout layout);
std::string predictions_json_lines(const float* probs, int64_t rows, int64_t classes);
// Invalid UTF-8 in `message` (echoed request bytes) is replaced, so the body is always JSON.
std::string error_json(std::string_view message);

}  // namespace strand::serve
