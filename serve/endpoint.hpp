// Endpoint: the routes of a serving endpoint as a function from request to response, with no
// sockets (serve/server.hpp puts it on HTTP), so every route can be tested and fuzzed directly.
//
// TensorFlow Serving REST API
//   POST /v1/models/{name}[/versions/{v}]:predict   {"instances": ...} or {"inputs": ...}
//   GET  /v1/models/{name}[/versions/{v}]           version status (state AVAILABLE)
//   GET  /v1/models/{name}[/versions/{v}]/metadata  the signature: names, dtypes, shapes
// SageMaker hosting protocol
//   GET  /ping                                      200 once the model is loaded
//   POST /invocations                               Content-Type application/json (TF Serving
//        body or simplified JSON), application/jsonlines, application/jsons, text/csv;
//        Accept application/json or application/jsonlines (the first listed that is supported);
//        X-Amzn-SageMaker-Custom-Attributes: tfs-model-name=...,tfs-model-version=...
// Errors are {"error": "..."} with TF Serving's status mapping: bad input 400, unknown model or
// version or path 404, wrong method 405, unacceptable Accept 406, body too large 413 (the HTTP
// layer), unsupported Content-Type 415, anything else 500.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <strand/serve/executor.hpp>
#include <strand/serve/registry.hpp>

namespace strand::serve {

struct HttpRequest {
  std::string_view method;             // "GET", "POST", ...
  std::string_view path;               // percent-decoded, without the query
  std::string_view content_type;       // as sent; empty when absent
  std::string_view accept;             // as sent; empty when absent
  std::string_view custom_attributes;  // X-Amzn-SageMaker-Custom-Attributes
  std::string_view body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string allow;  // for 405: the methods the path accepts
};

class Endpoint {
 public:
  Endpoint(Registry& registry, Executor& executor) : registry_(registry), executor_(executor) {}

  // Never throws for anything a client sends: errors become 4xx/5xx responses.
  HttpResponse handle(const HttpRequest& request);

 private:
  HttpResponse route(const HttpRequest& request);
  HttpResponse tfs(const HttpRequest& request, std::string_view rest);
  HttpResponse invocations(const HttpRequest& request);
  HttpResponse predict(ServedVersion& v, const Instances& in, bool json_lines);
  ServedVersion& resolve(std::string_view name, std::string_view version);  // throws a 404/400

  Registry& registry_;
  Executor& executor_;
  JsonParsers parsers_;
};

}  // namespace strand::serve
