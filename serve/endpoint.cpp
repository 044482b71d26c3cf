#include <strand/serve/endpoint.hpp>

#include <algorithm>
#include <cctype>
#include <vector>

#include <nlohmann/json.hpp>

#include <strand/core/error.hpp>
#include <strand/core/text.hpp>
#include <strand/serve/response.hpp>

namespace strand::serve {

namespace {

using ordered_json = nlohmann::ordered_json;

// A response other than 200, thrown inside the endpoint and turned into {"error": ...}.
struct Refusal : Error {
  Refusal(int status, std::string message, std::string allow = {})
      : Error(ErrorKind::Usage, std::move(message), "endpoint"), status(status), allow(std::move(allow)) {}
  int status;
  std::string allow;
};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  while (true) {
    const size_t i = s.find(sep);
    parts.push_back(s.substr(0, i));
    if (i == std::string_view::npos) return parts;
    s.remove_prefix(i + 1);
  }
}

// "application/json; charset=utf-8" -> "application/json"
std::string media_type(std::string_view header) { return lower(trim(header.substr(0, header.find(';')))); }

// A client's text echoed in a message: at most 64 bytes.
std::string echo(std::string_view s) {
  return "'" + std::string(s.substr(0, 64)) + (s.size() > 64 ? "...'" : "'");
}

void require_method(const HttpRequest& r, std::string_view method) {
  if (r.method != method)
    throw Refusal{405,
                  "method " + std::string(r.method) + " is not allowed on " + echo(r.path) + "; use " +
                      std::string(method),
                  std::string(method)};
}

// A float tensor of `instance` per row, batch dimension first (-1: any).
ordered_json tensor_info(const std::string& name, const Shape& instance) {
  const Shape batch = instance.with_batch(-1);
  ordered_json dims = ordered_json::array();
  for (int64_t d : batch.dims()) dims.push_back({{"size", std::to_string(d)}, {"name", ""}});
  return {{"dtype", "DT_FLOAT"},
          {"tensor_shape", {{"dim", std::move(dims)}, {"unknown_rank", false}}},
          {"name", name + ":0"}};
}

ordered_json version_status(const ServedVersion& v) {
  return {{"version", std::to_string(v.version)},
          {"state", "AVAILABLE"},
          {"status", {{"error_code", "OK"}, {"error_message", ""}}}};
}

constexpr std::string_view kSignature = "serving_default";

HttpResponse ok(const char* content_type, std::string body) {
  HttpResponse r;
  r.content_type = content_type;
  r.body = std::move(body);
  return r;
}

}  // namespace

HttpResponse Endpoint::handle(const HttpRequest& request) {
  HttpResponse res;
  try {
    return route(request);
  } catch (const Refusal& r) {
    res.status = r.status;
    res.body = error_json(r.message());
    res.allow = r.allow;
  } catch (const Error& e) {
    // Errors raised by parsing or shape checks are the client's input; anything else is ours.
    const bool client =
        e.kind() == ErrorKind::Format || e.kind() == ErrorKind::Shape || e.kind() == ErrorKind::Usage;
    res.status = client ? 400 : 500;
    res.body = error_json(e.message());
  } catch (const std::bad_alloc&) {
    res.status = 500;
    res.body = error_json("out of memory");
  } catch (const std::exception& e) {
    res.status = 500;
    res.body = error_json(std::string("internal error: ") + e.what());
  }
  return res;
}

HttpResponse Endpoint::route(const HttpRequest& r) {
  constexpr std::string_view tfs_prefix = "/v1/models/";
  if (r.path == "/ping") {
    if (r.method != "GET" && r.method != "HEAD") require_method(r, "GET");
    return ok("application/json", "");
  }
  if (r.path == "/invocations") {
    require_method(r, "POST");
    return invocations(r);
  }
  if (r.path.substr(0, tfs_prefix.size()) == tfs_prefix) return tfs(r, r.path.substr(tfs_prefix.size()));
  throw Refusal{404,
                "unknown path " + echo(r.path) +
                    " (routes: /ping, /invocations, /v1/models/{name}[/versions/{v}][:predict|/metadata])"};
}

ServedVersion& Endpoint::resolve(std::string_view name, std::string_view version) {
  if (name != registry_.name())
    throw Refusal{404, "no model named " + echo(name) + "; this endpoint serves '" + registry_.name() + "'"};
  if (version.empty()) return *registry_.find(std::nullopt);
  int64_t v = 0;
  const bool digits = version.size() <= 18 && std::all_of(version.begin(), version.end(),
                                                          [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) throw Refusal{400, "model version " + echo(version) + " is not a number"};
  for (char c : version) v = v * 10 + (c - '0');
  if (ServedVersion* s = registry_.find(v)) return *s;
  std::string known;
  for (const auto& s : registry_.versions()) known += (known.empty() ? "" : ", ") + std::to_string(s.version);
  throw Refusal{404, "model '" + registry_.name() + "' has no version " + std::to_string(v) +
                         " (versions: " + known + ")"};
}

HttpResponse Endpoint::tfs(const HttpRequest& r, std::string_view rest) {
  std::string_view verb;
  bool has_verb = false;
  if (const size_t colon = rest.find(':'); colon != std::string_view::npos) {
    verb = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    has_verb = true;
  }
  const std::vector<std::string_view> seg = split(rest, '/');
  size_t i = 1;
  std::string_view version;
  if (seg.size() >= 3 && seg[1] == "versions") {
    version = seg[2];
    i = 3;
  } else if (seg.size() >= 2 && seg[1] == "labels") {
    throw Refusal{404, "version labels are not supported; address a version as /versions/{v}"};
  }
  const bool metadata = i < seg.size() && seg[i] == "metadata";
  if (metadata) ++i;
  if (i != seg.size() || seg[0].empty() || (metadata && has_verb))
    throw Refusal{404, "unknown path " + echo(r.path) +
                           " (routes: /v1/models/{name}[/versions/{v}][:predict|/metadata])"};
  ServedVersion& v = resolve(seg[0], version);

  if (has_verb) {
    require_method(r, "POST");
    if (verb != "predict")
      throw Refusal{400, "method " + echo(verb) + " is not supported; this signature serves ':predict'"};
    const Executor::Announcement coming(executor_);
    executor_.expect(*v.model);
    Instances in = parse_tfs_json(r.body, v.spec, *parsers_.acquire());
    if (!in.signature_name.empty() && in.signature_name != kSignature)
      throw Refusal{400, "unknown signature_name " + echo(in.signature_name) + "; the model has '" +
                             std::string(kSignature) + "'"};
    return predict(v, in, false);
  }
  require_method(r, "GET");
  if (metadata) {
    const ordered_json sig = {
        {"inputs", {{v.signature.input_name, tensor_info(v.signature.input_name, v.signature.input_shape)}}},
        {"outputs",
         {{v.signature.probabilities_name,
           tensor_info(v.signature.probabilities_name, Shape{v.signature.classes})}}},
        {"method_name", "tensorflow/serving/predict"}};
    const ordered_json body = {
        {"model_spec",
         {{"name", registry_.name()}, {"signature_name", ""}, {"version", std::to_string(v.version)}}},
        {"metadata", {{"signature_def", {{"signature_def", {{std::string(kSignature), sig}}}}}}}};
    return ok("application/json", body.dump());
  }
  ordered_json statuses = ordered_json::array();
  if (version.empty()) {
    for (auto it = registry_.versions().rbegin(); it != registry_.versions().rend(); ++it)
      statuses.push_back(version_status(*it));
  } else {
    statuses.push_back(version_status(v));
  }
  return ok("application/json", ordered_json{{"model_version_status", statuses}}.dump());
}

HttpResponse Endpoint::invocations(const HttpRequest& r) {
  // Which model and version: X-Amzn-SageMaker-Custom-Attributes, else the newest.
  std::string_view name = registry_.name(), version;
  for (std::string_view attr : split(r.custom_attributes, ',')) {
    attr = trim(attr);
    const size_t eq = attr.find('=');
    if (attr.empty() || eq == std::string_view::npos) continue;
    const std::string_view key = trim(attr.substr(0, eq)), value = trim(attr.substr(eq + 1));
    if (key == "tfs-model-name")
      name = value;
    else if (key == "tfs-model-version")
      version = value;
    else if (key == "tfs-method" && value != "predict")
      throw Refusal{400, "tfs-method " + echo(value) + " is not supported; this signature serves 'predict'"};
  }
  ServedVersion& v = resolve(name, version);

  // Answer in the first Accept type we support.
  bool json_lines = false, acceptable = r.accept.empty();
  for (std::string_view a : split(r.accept, ',')) {
    if (acceptable) break;
    const std::string t = media_type(a);
    if (t == "application/json" || t == "*/*" || t == "application/*")
      acceptable = true;
    else if (t == "application/jsonlines")
      acceptable = json_lines = true;
  }
  if (!acceptable)
    throw Refusal{406, "cannot answer in any of Accept: " + echo(r.accept) +
                           " (supported: application/json, application/jsonlines)"};

  const std::string type = media_type(r.content_type);
  const Executor::Announcement coming(executor_);
  // With no pass running, the model's threads may help parse a large body.
  const ParseThreads lend{[&v](int parts, const std::function<void(int)>& body) {
    v.model->backend().run_host_parts(parts, body);
  }};
  const ParseThreads* parallel = executor_.expect(*v.model) ? &lend : nullptr;
  Instances in;
  if (type.empty() || type == "application/json")
    in = parse_sagemaker_json(r.body, v.spec, *parsers_.acquire(), parallel);
  else if (type == "application/jsonlines" || type == "application/jsons")
    in = parse_json_lines(r.body, v.spec, *parsers_.acquire());
  else if (type == "text/csv")
    in = parse_csv(r.body, v.spec);
  else
    throw Refusal{415,
                  "unsupported Content-Type " + echo(r.content_type) +
                      " (supported: application/json, application/jsonlines, application/jsons, text/csv)"};
  if (!in.signature_name.empty() && in.signature_name != kSignature)
    throw Refusal{400, "unknown signature_name " + echo(in.signature_name) + "; the model has '" +
                           std::string(kSignature) + "'"};
  return predict(v, in, json_lines);
}

HttpResponse Endpoint::predict(ServedVersion& v, const Instances& in, bool json_lines) {
  const int64_t classes = v.model->classes();
  std::vector<float> probs(size_t(in.rows * classes));
  executor_.run(*v.model, in.x.data(), in.rows, probs.data());
  if (json_lines) return ok("application/jsonlines", predictions_json_lines(probs.data(), in.rows, classes));
  return ok("application/json", predictions_json(probs.data(), in.rows, classes, in.layout));
}

}  // namespace strand::serve
