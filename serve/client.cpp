#include <strand/serve/client.hpp>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <strand/core/error.hpp>
#include <strand/io/atomic_file.hpp>
#include <strand/serve/registry.hpp>

namespace strand::serve {

namespace fs = std::filesystem;

Predictor::Predictor(std::string host, int port, std::chrono::seconds timeout)
    : host_(std::move(host)), port_(port), timeout_(timeout) {}

namespace {

httplib::Client connect(const std::string& host, int port, std::chrono::seconds timeout) {
  httplib::Client c(host, port);
  c.set_connection_timeout(5, 0);
  c.set_read_timeout(timeout.count(), 0);
  c.set_write_timeout(timeout.count(), 0);
  c.set_keep_alive(true);
  c.set_tcp_nodelay(true);  // headers and body go out as separate writes: no Nagle delay
  return c;
}

// The body of a 200 answer; else an Io error with the endpoint's message.
const std::string& answer(const httplib::Result& res, const std::string& where) {
  STRAND_CHECK(res, Io, "no answer from the endpoint (" + httplib::to_string(res.error()) + ")", where);
  if (res->status != 200) {
    const auto j = nlohmann::json::parse(res->body, nullptr, false);
    const std::string msg = j.is_object() && j.contains("error") && j["error"].is_string()
                                ? j["error"].get<std::string>()
                                : res->body.substr(0, 200);
    throw Error(ErrorKind::Io, "the endpoint answered " + std::to_string(res->status) + ": " + msg, where);
  }
  return res->body;
}

// The dims of a TF Serving tensor_info without its leading batch dimension.
Shape instance_dims(const nlohmann::json& tensor_info) {
  std::vector<int64_t> dims;
  for (const auto& d : tensor_info.at("tensor_shape").at("dim")) {
    const std::string& size = d.at("size").get_ref<const std::string&>();
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(size.data(), size.data() + size.size(), v);
    if (ec != std::errc() || end != size.data() + size.size() || (dims.empty() ? v != -1 : v < 1))
      throw Error(ErrorKind::Format, "tensor dimension '" + size + "' in the metadata");
    dims.push_back(v);
  }
  if (dims.size() < 2) throw Error(ErrorKind::Format, "a tensor of rank " + std::to_string(dims.size()));
  return Shape(std::vector<int64_t>(dims.begin() + 1, dims.end()));
}

// Appends x (shape dims[depth:]) as nested lists.
void append_nested(std::string& body, const float*& x, const Shape& dims, size_t depth) {
  char buf[32];
  body += '[';
  for (int64_t i = 0; i < dims[depth]; ++i) {
    if (i) body += ',';
    if (depth + 1 < dims.rank())
      append_nested(body, x, dims, depth + 1);
    else
      body.append(buf, std::to_chars(buf, buf + sizeof(buf), *x++).ptr);
  }
  body += ']';
}

}  // namespace

bool Predictor::ping() const {
  httplib::Client c(host_, port_);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(timeout_.count(), 0);
  const auto res = c.Get("/ping");
  return res && res->status == 200;
}

ServedSignature Predictor::signature(const std::string& model) const {
  const std::string where = host_ + ":" + std::to_string(port_);
  httplib::Client c = connect(host_, port_, timeout_);
  const httplib::Result res = c.Get(("/v1/models/" + model + "/metadata").c_str());
  const std::string& body = answer(res, where);
  try {
    const auto sig = nlohmann::json::parse(body)
                         .at("metadata")
                         .at("signature_def")
                         .at("signature_def")
                         .at("serving_default");
    const auto& inputs = sig.at("inputs");
    const auto& outputs = sig.at("outputs");
    if (inputs.size() != 1 || outputs.empty()) throw Error(ErrorKind::Format, "not one input and an output");
    const Shape out = instance_dims(outputs.begin().value());
    if (out.rank() != 1)
      throw Error(ErrorKind::Format, "an output of rank " + std::to_string(out.rank() + 1));
    return {instance_dims(inputs.begin().value()), out[0]};
  } catch (const std::exception& e) {
    throw Error(ErrorKind::Format, std::string("the metadata is not a TF Serving signature: ") + e.what(),
                where);
  }
}

std::vector<std::vector<float>> Predictor::predict(const float* x, int64_t rows, const Shape& instance,
                                                   int64_t rows_per_request) const {
  const std::string where = host_ + ":" + std::to_string(port_);
  STRAND_CHECK(rows_per_request >= 1, Usage, "rows_per_request must be at least 1", where);
  STRAND_CHECK(instance.rank() >= 1, Usage, "an instance has at least one dimension", where);
  constexpr size_t kRequestBytes = 1 << 20;
  httplib::Client c = connect(host_, port_, timeout_);
  std::vector<std::vector<float>> out;
  out.reserve(size_t(rows));
  const float* next = x;
  for (int64_t first = 0; first < rows;) {
    // Simplified JSON: a list of instances, floats in shortest round-trip form.
    std::string body = "[";
    int64_t n = 0;
    for (; first + n < rows && n < rows_per_request && body.size() < kRequestBytes; ++n) {
      if (n) body += ',';
      append_nested(body, next, instance, 0);
    }
    body += ']';
    first += n;
    const httplib::Result res = c.Post("/invocations", body, "application/json");
    const auto j = nlohmann::json::parse(answer(res, where), nullptr, false);
    STRAND_CHECK(j.is_object() && j.contains("predictions") && j["predictions"].is_array() &&
                     int64_t(j["predictions"].size()) == n,
                 Format, "the answer is not {\"predictions\": [" + std::to_string(n) + " lists]}", where);
    for (const auto& p : j["predictions"]) {
      STRAND_CHECK(p.is_array(), Format, "a prediction is not a list", where);
      std::vector<float> probs;
      for (const auto& v : p) {
        STRAND_CHECK(v.is_number(), Format, "a prediction holds a non-number", where);
        probs.push_back(v.get<float>());
      }
      out.push_back(std::move(probs));
    }
  }
  return out;
}

EndpointStore::EndpointStore(fs::path dir) : dir_(std::move(dir)) {}

fs::path EndpointStore::path(const std::string& name) const {
  STRAND_CHECK(valid_model_name(name), Usage,
               "endpoint name '" + name + "' may hold only letters, digits, '.', '_' and '-'", dir_.string());
  return dir_ / (name + ".json");
}

void EndpointStore::save(const EndpointRecord& r) {
  const fs::path p = path(r.name);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  STRAND_CHECK(!ec, Io, "cannot create the state directory: " + ec.message(), dir_.string());
  const nlohmann::json j = {{"name", r.name},
                            {"pid", r.pid},
                            {"start_time", r.start_time},
                            {"host", r.host},
                            {"port", r.port},
                            {"model_dir", r.model_dir},
                            {"model_name", r.model_name},
                            {"log", r.log}};
  io::write_file_atomic(p, j.dump(2) + "\n");
}

std::optional<EndpointRecord> EndpointStore::find(const std::string& name) const {
  const fs::path p = path(name);
  std::ifstream in(p);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    const auto j = nlohmann::json::parse(ss.str());
    EndpointRecord r;
    r.name = j.at("name").get<std::string>();
    r.pid = j.at("pid").get<int64_t>();
    r.start_time = j.at("start_time").get<int64_t>();
    r.host = j.at("host").get<std::string>();
    r.port = j.at("port").get<int>();
    r.model_dir = j.at("model_dir").get<std::string>();
    r.model_name = j.at("model_name").get<std::string>();
    r.log = j.value("log", "");
    return r;
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::Format, std::string("not an endpoint record: ") + e.what(), p.string());
  }
}

std::vector<EndpointRecord> EndpointStore::list() const {
  std::vector<EndpointRecord> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const fs::path p = e.path();
    if (p.extension() != ".json" || !valid_model_name(p.stem().string())) continue;
    if (auto r = find(p.stem().string())) out.push_back(std::move(*r));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

void EndpointStore::remove(const std::string& name) {
  std::error_code ec;
  fs::remove(path(name), ec);
  STRAND_CHECK(!ec, Io, "cannot remove the endpoint record: " + ec.message(), path(name).string());
}

std::optional<int64_t> process_start_time(int64_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!in || !std::getline(in, stat)) return std::nullopt;
  // "pid (comm) state ..." — comm may hold spaces and parentheses; fields follow the last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  // state is field 3; starttime is field 22.
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 3 && (field == "Z" || field == "X")) return std::nullopt;
    if (i == 22) return std::stoll(field);
  }
  return std::nullopt;
}

bool endpoint_alive(const EndpointRecord& r) {
  const auto t = process_start_time(r.pid);
  return t && *t == r.start_time;
}

}  // namespace strand::serve
