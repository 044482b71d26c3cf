// Every route and content type over real HTTP with exact bodies, the error cases, the body
// limit, slow and vanishing clients, graceful stop, memory under load, and the Predictor client.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <fstream>
#include <future>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <strand/core/error.hpp>
#include <strand/serve/client.hpp>
#include "tests/serve/serve_test_util.hpp"

namespace strand::serve::test {
namespace {

std::string repeat(const std::string& item, int n, const std::string& sep = ",") {
  std::string s;
  for (int i = 0; i < n; ++i) s += (i ? sep : "") + item;
  return s;
}

const std::string kFlat = "[" + repeat("0.5", 784) + "]";
const std::string kNested = "[" + repeat("[" + repeat("0.25", 28) + "]", 28) + "]";
const std::string kUniform1 = "{\"predictions\":[" + uniform_row() + "]}";
const std::string kUniform2 = "{\"predictions\":[" + uniform_row() + "," + uniform_row() + "]}";

class EndpointTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    models_ = new ModelDir();
    served_ = new Served(models_->path());
  }
  static void TearDownTestSuite() {
    delete served_;
    delete models_;
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", served_->server.port());
    c.set_read_timeout(30, 0);
    c.set_tcp_nodelay(true);
    return c;
  }
  // status and body of a request
  std::pair<int, std::string> get(const std::string& path) const {
    auto res = client().Get(path.c_str());
    return res ? std::pair{res->status, res->body} : std::pair{-1, std::string()};
  }
  std::pair<int, std::string> post(const std::string& path, const std::string& body,
                                   const std::string& type = "application/json",
                                   httplib::Headers headers = {}) const {
    auto res = client().Post(path.c_str(), headers, body, type.c_str());
    return res ? std::pair{res->status, res->body} : std::pair{-1, std::string()};
  }
  static std::string err(const std::string& message) { return nlohmann::json{{"error", message}}.dump(); }

  static ModelDir* models_;
  static Served* served_;
};
ModelDir* EndpointTest::models_ = nullptr;
Served* EndpointTest::served_ = nullptr;

TEST_F(EndpointTest, Ping) { EXPECT_EQ(get("/ping"), std::pair(200, std::string())); }

TEST_F(EndpointTest, ModelStatus) {
  const std::string v =
      R"({"version":"V","state":"AVAILABLE","status":{"error_code":"OK","error_message":""}})";
  auto ver = [&](const char* n) { return std::string(v).replace(v.find('V'), 1, n); };
  EXPECT_EQ(get("/v1/models/mnist"),
            std::pair(200, R"({"model_version_status":[)" + ver("2") + "," + ver("1") + "]}"));
  EXPECT_EQ(get("/v1/models/mnist/versions/1"),
            std::pair(200, R"({"model_version_status":[)" + ver("1") + "]}"));
}

// The metadata body of a model taking `input` per instance and giving `classes` probabilities.
std::string metadata_body(const std::string& name, int version, const std::vector<int>& input, int classes) {
  auto shape = [](std::vector<int> dims) {
    std::string s = R"({"dim":[)";
    dims.insert(dims.begin(), -1);
    for (size_t i = 0; i < dims.size(); ++i) {
      if (i) s += ',';
      s += R"({"size":")" + std::to_string(dims[i]) + R"(","name":""})";
    }
    return s + R"(],"unknown_rank":false})";
  };
  return R"({"model_spec":{"name":")" + name + R"(","signature_name":"","version":")" +
         std::to_string(version) +
         R"("},"metadata":{"signature_def":{"signature_def":{"serving_default":)"
         R"({"inputs":{"x":{"dtype":"DT_FLOAT","tensor_shape":)" +
         shape(input) + R"(,"name":"x:0"}},"outputs":{"probabilities":{"dtype":"DT_FLOAT","tensor_shape":)" +
         shape({classes}) + R"(,"name":"probabilities:0"}},"method_name":"tensorflow/serving/predict"}}}}})";
}

TEST_F(EndpointTest, Metadata) {
  // The model's input channels-last, as TF orders images.
  EXPECT_EQ(get("/v1/models/mnist/metadata"), std::pair(200, metadata_body("mnist", 2, {28, 28, 1}, 10)));
  EXPECT_EQ(get("/v1/models/mnist/versions/1/metadata"),
            std::pair(200, metadata_body("mnist", 1, {28, 28, 1}, 10)));
  const ServedSignature sig = Predictor("127.0.0.1", served_->server.port()).signature("mnist");
  EXPECT_EQ(sig.input, (Shape{28, 28, 1}));
  EXPECT_EQ(sig.classes, 10);
}

TEST_F(EndpointTest, TfServingPredictFormats) {
  // Row format: flat, 28x28 nested and named instances; columnar: bare and named.
  EXPECT_EQ(post("/v1/models/mnist:predict", "{\"instances\":[" + kFlat + "," + kNested + "]}"),
            std::pair(200, kUniform2));
  EXPECT_EQ(post("/v1/models/mnist:predict",
                 "{\"instances\":[{\"x\":" + kFlat + "}], \"signature_name\":\"serving_default\"}"),
            std::pair(200, kUniform1));
  EXPECT_EQ(post("/v1/models/mnist/versions/2:predict", "{\"inputs\":[" + kFlat + "]}"),
            std::pair(200, "{\"outputs\":[" + uniform_row() + "]}"));
  EXPECT_EQ(post("/v1/models/mnist:predict", "{\"inputs\":{\"x\":[" + kNested + "," + kFlat + "]}}"),
            std::pair(200, "{\"outputs\":[" + uniform_row() + "," + uniform_row() + "]}"));
}

// Version 1 has real weights: the endpoint must return exactly Model::predict's floats.
TEST_F(EndpointTest, PredictionsAreTheModelsFloats) {
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), models::mnist_mlp());
  m.set_params(models_->seeded_params());
  const std::vector<float> x = images(3);
  std::vector<float> want(30);
  m.predict(x.data(), 3, want.data());
  const std::string body = "{\"instances\":" + json_rows(x) + "}";
  for (const auto& [path, attrs] : {std::pair{"/v1/models/mnist/versions/1:predict", ""},
                                    std::pair{"/invocations", "tfs-model-name=mnist, tfs-model-version=1"}}) {
    const auto [status, out] =
        post(path, body, "application/json", {{"X-Amzn-SageMaker-Custom-Attributes", attrs}});
    ASSERT_EQ(status, 200) << out;
    const auto j = nlohmann::json::parse(out)["predictions"];
    ASSERT_EQ(j.size(), 3u);
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 10; ++c)
        EXPECT_EQ(j[size_t(r)][size_t(c)].get<float>(), want[size_t(r * 10 + c)]) << path;
  }
  // Predictor (what `strand predict` uses) gets the same floats.
  const auto got = Predictor("127.0.0.1", served_->server.port()).predict(x.data(), 3, Shape{784}, 2);
  ASSERT_EQ(got.size(), 3u);
  // Predictor sends to the default version (2, all zeros).
  EXPECT_EQ(got[0], std::vector<float>(10, 0.1f));
  // Refusals come back as errors carrying the endpoint's message.
  try {
    Predictor("127.0.0.1", served_->server.port()).predict(x.data(), 1, Shape{783});
    ADD_FAILURE() << "no error for 783 values";
  } catch (const strand::Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
    EXPECT_NE(e.message().find("answered 400: instance 0: expected a list of 784 numbers"), std::string::npos)
        << e.message();
  }
  EXPECT_FALSE(Predictor("127.0.0.1", 1).ping());
}

TEST_F(EndpointTest, InvocationsContentTypes) {
  const std::string csv_row = repeat("0", 784);
  EXPECT_EQ(post("/invocations", kFlat), std::pair(200, kUniform1));  // one instance
  EXPECT_EQ(post("/invocations", kNested, "application/json; charset=utf-8"), std::pair(200, kUniform1));
  EXPECT_EQ(post("/invocations", "[" + kFlat + "," + kNested + "]"), std::pair(200, kUniform2));  // list
  EXPECT_EQ(post("/invocations", "{\"instances\":[" + kFlat + "]}"),
            std::pair(200, kUniform1));                                                 // TF Serving body
  EXPECT_EQ(post("/invocations", "{\"x\":" + kFlat + "}"), std::pair(200, kUniform1));  // named instance
  EXPECT_EQ(post("/invocations", kFlat + "\n" + kNested + "\n", "application/jsonlines"),
            std::pair(200, kUniform2));
  EXPECT_EQ(post("/invocations", "{\"instances\":[" + kFlat + "]}\n" + kFlat, "application/jsons"),
            std::pair(200, kUniform2));
  EXPECT_EQ(post("/invocations", csv_row + "\r\n" + csv_row + "\n", "text/csv"), std::pair(200, kUniform2));
}

TEST_F(EndpointTest, AcceptHeader) {
  auto with_accept = [&](const std::string& accept) {
    return post("/invocations", "[" + kFlat + "," + kFlat + "]", "application/json", {{"Accept", accept}});
  };
  EXPECT_EQ(with_accept("application/jsonlines"),
            std::pair(200, uniform_row() + "\n" + uniform_row() + "\n"));
  EXPECT_EQ(with_accept("text/csv, application/jsonlines;q=0.9, application/json"),
            std::pair(200, uniform_row() + "\n" + uniform_row() + "\n"));
  EXPECT_EQ(with_accept("text/html, application/json"), std::pair(200, kUniform2));
  EXPECT_EQ(with_accept("*/*"), std::pair(200, kUniform2));
  EXPECT_EQ(with_accept("text/csv"),
            std::pair(406, err("cannot answer in any of Accept: 'text/csv' (supported: application/json, "
                               "application/jsonlines)")));
  auto res = client().Post("/invocations", {{"Accept", "application/jsonlines"}}, kFlat, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/jsonlines");
}

TEST_F(EndpointTest, ClientErrors) {
  const std::string where =
      "instance 0: expected a list of 784 numbers or a nested list of shape [28,28] or [28,28,1] or "
      "[1,28,28], got ";
  struct Case {
    std::string method, path, type, body;
    int status;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"POST", "/v1/models/mnist:predict", "application/json", "{\"instances\":[[1,2,3]]}", 400,
       where + "a list of 3"},
      {"POST", "/v1/models/mnist:predict", "application/json",
       "{\"instances\":[" + kFlat + ",[" + repeat("1", 783) + "]]}", 400,
       "instance 1: expected a list of 784 numbers or a nested list of shape [28,28] or [28,28,1] or "
       "[1,28,28], got a "
       "list of 783"},
      {"POST", "/v1/models/mnist:predict", "application/json",
       "{\"instances\":[[" + repeat("1", 783) + ",\"a\"]]}", 400,
       "instance 0, value 783: a string, not a number"},
      {"POST", "/v1/models/mnist:predict", "application/json",
       "{\"instances\":[[" + repeat("1", 700) + ",1e39," + repeat("1", 83) + "]]}", 400,
       "instance 0, value 700: 1e+39 is out of float range"},
      {"POST", "/v1/models/mnist:predict", "application/json", "{\"instances\":[[1e400]]}", 400,
       "the body is not valid JSON: Problem while parsing a number"},
      {"POST", "/v1/models/mnist:predict", "application/json", "{\"instances\":[[NaN]]}", 400,
       "the body is not valid JSON: The JSON document has an improper structure: missing or superfluous "
       "commas, braces, missing keys, etc."},
      {"POST", "/v1/models/mnist:predict", "application/json", "{\"instances\": [", 400,
       "the body is not valid JSON: The JSON document has an improper structure: missing or superfluous "
       "commas, braces, missing keys, etc."},
      {"POST", "/v1/models/mnist:predict", "application/json", "", 400, "the body is empty"},
      {"POST", "/v1/models/mnist:predict", "application/json",
       std::string(100000, '[') + std::string(100000, ']'), 400,
       "the body: JSON nested deeper than 16 levels"},
      {"POST", "/v1/models/mnist:predict", "application/json", "{\"instances\":[\"\xff\xfe\"]}", 400,
       "the body is not valid JSON: The input is not valid UTF-8"},
      {"POST", "/v1/models/mnist:predict", "application/json", "[1]", 400,
       "the body must be a JSON object with 'instances' or 'inputs', got a list"},
      {"POST", "/v1/models/mnist:predict", "application/json", "{\"instances\":[],\"inputs\":[]}", 400,
       "'instances' is an empty list"},
      {"POST", "/v1/models/mnist:predict", "application/json", "{\"instance\":[]}", 400,
       "unknown key 'instance' (expected 'instances' or 'inputs', and optionally 'signature_name')"},
      {"POST", "/v1/models/mnist:predict", "application/json",
       "{\"instances\":[" + kFlat + "],\"signature_name\":\"other\"}", 400,
       "unknown signature_name 'other'; the model has 'serving_default'"},
      {"POST", "/v1/models/mnist:predict", "application/json", "{\"instances\":[{\"y\":" + kFlat + "}]}", 400,
       "instance 0: unknown input 'y' (the signature's input is 'x')"},
      {"POST", "/v1/models/mnist:predict", "application/json",
       "{\"instances\":[[" + repeat("[" + repeat("1", 28) + "]", 27) + ",[1]]]}", 400,
       "instance 0, value 756: a list of 1 where 28 were expected (ragged nesting)"},
      {"POST", "/v1/models/mnist:classify", "application/json", "{}", 400,
       "method 'classify' is not supported; this signature serves ':predict'"},
      {"POST", "/v1/models/other:predict", "application/json", "{}", 404,
       "no model named 'other'; this endpoint serves 'mnist'"},
      {"POST", "/v1/models/mnist/versions/3:predict", "application/json", "{}", 404,
       "model 'mnist' has no version 3 (versions: 1, 2)"},
      {"GET", "/v1/models/mnist/versions/x1", "", "", 400, "model version 'x1' is not a number"},
      {"GET", "/v1/models/mnist/versions/99999999999999999999", "", "", 400,
       "model version '99999999999999999999' is not a number"},
      {"GET", "/v1/models/..%2F..%2Fetc%2Fpasswd", "", "", 404,
       "unknown path '/v1/models/../../etc/passwd' (routes: "
       "/v1/models/{name}[/versions/{v}][:predict|/metadata])"},
      {"GET", "/v1/models/..", "", "", 404, "no model named '..'; this endpoint serves 'mnist'"},
      {"GET", "/v1/models/mnist/labels/stable", "", "", 404,
       "version labels are not supported; address a version as /versions/{v}"},
      {"GET", "/nowhere", "", "", 404,
       "unknown path '/nowhere' (routes: /ping, /invocations, "
       "/v1/models/{name}[/versions/{v}][:predict|/metadata])"},
      {"GET", "/invocations", "", "", 405, "method GET is not allowed on '/invocations'; use POST"},
      {"POST", "/v1/models/mnist", "application/json", "{}", 405,
       "method POST is not allowed on '/v1/models/mnist'; use GET"},
      {"PUT", "/invocations", "application/json", "{}", 405,
       "method PUT is not allowed; the routes take GET or POST"},
      {"DELETE", "/v1/models/mnist", "", "", 405,
       "method DELETE is not allowed; the routes take GET or POST"},
      {"POST", "/invocations", "text/plain", "1", 415,
       "unsupported Content-Type 'text/plain' (supported: application/json, application/jsonlines, "
       "application/jsons, text/csv)"},
      {"POST", "/invocations", "text/csv", repeat("0", 784) + "\n" + repeat("0", 783), 400,
       "row 2 has 783 values, expected 784"},
      {"POST", "/invocations", "text/csv", repeat("0", 785), 400, "row 1 has more than 784 values"},
      {"POST", "/invocations", "text/csv", repeat("0", 10) + ",abc," + repeat("0", 773), 400,
       "row 1, column 11: 'abc' is not a number"},
      {"POST", "/invocations", "text/csv", "nan," + repeat("0", 783), 400,
       "row 1, column 1: 'nan' is not a finite float"},
      {"POST", "/invocations", "text/csv", "1e39," + repeat("0", 783), 400,
       "row 1, column 1: '1e39' is not a finite float"},
      {"POST", "/invocations", "text/csv", "\xc3\x28," + repeat("0", 783), 400,
       "row 1, column 1: '?(' is not a number"},
      {"POST", "/invocations", "text/csv", "\n\n", 400, "the CSV body has no rows"},
      {"POST", "/invocations", "application/jsonlines", kFlat + "\n[1,2]\n", 400,
       "line 2: instance 1: expected a list of 784 numbers or a nested list of shape [28,28] or [28,28,1] or "
       "[1,28,28], "
       "got a list of 2"},
      {"POST", "/invocations", "application/jsonlines", kFlat + "\n{oops\n", 400,
       "line 2 is not valid JSON: The JSON document has an improper structure: missing or superfluous "
       "commas, braces, missing keys, etc."},
      {"POST", "/invocations", "application/json", "true", 400,
       "expected a list of instances or one instance, got a boolean"},
      {"POST", "/invocations", "application/json", "[[1,2],[3]]", 400,
       "instance 0: expected a list of 784 numbers or a nested list of shape [28,28] or [28,28,1] or "
       "[1,28,28], got a "
       "list of 2"},
  };
  httplib::Client c = client();
  for (const Case& k : cases) {
    httplib::Result res = k.method == "GET"    ? c.Get(k.path.c_str())
                          : k.method == "POST" ? c.Post(k.path.c_str(), k.body, k.type.c_str())
                          : k.method == "PUT"  ? c.Put(k.path.c_str(), k.body, k.type.c_str())
                                               : c.Delete(k.path.c_str());
    ASSERT_TRUE(res) << k.method << " " << k.path;
    EXPECT_EQ(res->status, k.status) << k.method << " " << k.path << ": " << res->body;
    EXPECT_EQ(res->body, err(k.error)) << k.method << " " << k.path;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  }
  // Custom attributes pick the model and version; a wrong one is a 404.
  EXPECT_EQ(post("/invocations", kFlat, "application/json",
                 {{"X-Amzn-SageMaker-Custom-Attributes", "tfs-model-name=nope"}}),
            std::pair(404, err("no model named 'nope'; this endpoint serves 'mnist'")));
  EXPECT_EQ(post("/invocations", kFlat, "application/json",
                 {{"X-Amzn-SageMaker-Custom-Attributes", "tfs-model-version=5"}}),
            std::pair(404, err("model 'mnist' has no version 5 (versions: 1, 2)")));
  EXPECT_EQ(get("/ping").first, 200);  // still serving
}

// Raw socket helpers for what httplib's client will not send.
int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}
std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, size_t(n));
  return out;
}

// One HTTP response: the headers and Content-Length bytes of body.
std::string read_response(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) {
    out.append(buf, size_t(n));
    const size_t end = out.find("\r\n\r\n");
    if (end == std::string::npos) continue;
    const size_t cl = out.find("Content-Length: ");
    const size_t len = cl < end ? std::stoul(out.substr(cl + 16)) : 0;
    if (out.size() >= end + 4 + len) break;
  }
  return out;
}

TEST_F(EndpointTest, BodyLimit) {
  // Refused from Content-Length alone: the server answers before the client sends the body.
  const int fd = connect_to(served_->server.port());
  ASSERT_GE(fd, 0);
  const std::string head =
      "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
      "6291457\r\n\r\n";
  ASSERT_EQ(::send(fd, head.data(), head.size(), 0), ssize_t(head.size()));
  const std::string reply = read_response(fd);  // the body never comes
  ::close(fd);
  EXPECT_EQ(reply.rfind("HTTP/1.1 413", 0), 0u) << reply;
  EXPECT_NE(reply.find(err("the body of 6291457 bytes is over the limit of 6291456 bytes")),
            std::string::npos);
  // Chunked: refused once the running total passes 6 MiB.
  httplib::Client c = client();
  const std::string chunk(1 << 20, ' ');
  int sent = 0;
  auto res = c.Post(
      "/invocations",
      [&](size_t, httplib::DataSink& sink) {
        if (sent++ < 8) return sink.write(chunk.data(), chunk.size());
        sink.done();
        return true;
      },
      "application/json");
  if (res) {
    EXPECT_EQ(res->status, 413);  // else the connection was closed while the client still sent
  }
  // Exactly at the limit is read and parsed (as JSON made of spaces: empty).
  EXPECT_EQ(post("/invocations", std::string(6u << 20, ' ')), std::pair(400, err("the body is empty")));
  EXPECT_EQ(get("/ping").first, 200);
}

TEST(Serve, SlowAndVanishingClients) {
  // A client that sends half a request and vanishes, and one that stalls mid-body: others are
  // served meanwhile, and the stalled one is dropped after the I/O timeout (1 s here).
  ModelDir models;
  ServerOptions opts;
  opts.io_timeout = std::chrono::seconds(1);
  opts.body_deadline = std::chrono::seconds(1);
  opts.workers = 4;
  Served s(models.path(), {}, opts);
  auto post = [&](const char* path, const std::string& body) {
    httplib::Client c("127.0.0.1", s.server.port());
    auto res = c.Post(path, body, "application/json");
    return res ? std::pair{res->status, res->body} : std::pair{-1, std::string()};
  };
  const int gone = connect_to(s.server.port());
  const std::string half = "POST /invocations HTTP/1.1\r\nContent-Length: 100\r\n\r\n[1,";
  ASSERT_EQ(::send(gone, half.data(), half.size(), 0), ssize_t(half.size()));
  ::close(gone);
  const int slow = connect_to(s.server.port());
  ASSERT_EQ(::send(slow, half.data(), half.size(), 0), ssize_t(half.size()));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(post("/invocations", kFlat), std::pair(200, kUniform1));
  const auto t0 = std::chrono::steady_clock::now();
  const std::string reply = read_all(slow);  // returns when the server closes the connection
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ::close(slow);
  EXPECT_LT(waited, 5.0);
  EXPECT_EQ(reply.find("HTTP/1.1 200"), std::string::npos) << reply;
  // A body trickling in (a byte every 0.3 s, never idle for the I/O timeout) is refused at the
  // deadline.
  const int trickle = connect_to(s.server.port());
  const std::string head =
      "POST /invocations HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[";
  ASSERT_EQ(::send(trickle, head.data(), head.size(), 0), ssize_t(head.size()));
  std::thread dribble([&] {
    for (int i = 0; i < 8; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      if (::send(trickle, "1", 1, MSG_NOSIGNAL) != 1) break;
    }
  });
  const std::string trickled = read_response(trickle);
  dribble.join();
  ::close(trickle);
  EXPECT_EQ(trickled.rfind("HTTP/1.1 408", 0), 0u) << trickled;
  EXPECT_NE(trickled.find("the body took longer than 1 s to arrive"), std::string::npos) << trickled;
  // A request line of garbage gets a 400 too.
  const int junk = connect_to(s.server.port());
  const std::string bad = "\x01\x02 nonsense\r\n\r\n";
  ASSERT_EQ(::send(junk, bad.data(), bad.size(), 0), ssize_t(bad.size()));
  const std::string junk_reply = read_response(junk);
  EXPECT_EQ(junk_reply.rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_NE(junk_reply.find("{\"error\":\"malformed HTTP request\"}"), std::string::npos) << junk_reply;
  ::close(junk);
  EXPECT_EQ(httplib::Client("127.0.0.1", s.server.port()).Get("/ping")->status, 200);
}

long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

TEST_F(EndpointTest, MemoryDoesNotGrowUnderLoad) {
  const std::string body = "[" + repeat(kFlat, 20) + "]";
  auto burst = [&](int n) {
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
      ts.emplace_back([&] {
        httplib::Client c = client();
        c.set_keep_alive(true);  // a few connections, many requests
        for (int i = 0; i < n; ++i) {
          auto res = c.Post("/invocations", body, "application/json");
          ASSERT_TRUE(res && res->status == 200);
          // and some errors, which take other paths
          res = c.Post("/invocations", "[1,2", "application/json");
          ASSERT_TRUE(res && res->status == 400);
        }
      });
    for (auto& t : ts) t.join();
  };
  burst(50);  // warm: buffers reach their sizes
  const long before = rss_kib();
  burst(200);
  const long after = rss_kib();
  EXPECT_LT(after - before, 16 * 1024) << "RSS grew from " << before << " to " << after << " KiB";
}

TEST(Serve, GracefulStopFinishesRequestsInFlight) {
  ModelDir models;
  // A long batch timeout and a request announced but never sent hold the real request inside
  // the server while stop() is called.
  auto served = std::make_unique<Served>(models.path(), BatchOptions{8, std::chrono::microseconds(400000)});
  const int port = served->server.port();
  auto phantom = std::make_unique<Executor::Announcement>(served->executor);
  auto reply = std::async(std::launch::async, [&] {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30, 0);
    auto res = c.Post("/invocations", kFlat, "application/json");
    return res ? std::pair{res->status, res->body} : std::pair{-1, std::string()};
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  const auto t0 = std::chrono::steady_clock::now();
  served->server.stop();
  EXPECT_GT(std::chrono::steady_clock::now() - t0,
            std::chrono::milliseconds(100));  // it did wait for the request
  EXPECT_EQ(reply.get(), std::pair(200, kUniform1));
  phantom.reset();
  // Stopped: new connections are refused.
  EXPECT_FALSE(httplib::Client("127.0.0.1", port).Get("/ping"));
}

TEST(Serve, BatchingGivesTheSamePredictionsUnderConcurrentLoad) {
  ModelDir models;
  Served plain(models.path());
  Served batched(models.path(), BatchOptions{32, std::chrono::microseconds(3000)});
  // 16 clients, each sending 1-3 different images to version 1 (real weights), concurrently.
  constexpr int kClients = 16, kRequests = 12;
  std::vector<std::string> bodies;
  for (int i = 0; i < kClients * kRequests; ++i) {
    const int rows = 1 + i % 3;
    bodies.push_back(json_rows(images(rows, uint64_t(i + 10))));
  }
  auto run = [&](const Served& s) {
    std::vector<std::string> out(bodies.size());
    std::vector<std::thread> ts;
    for (int c = 0; c < kClients; ++c)
      ts.emplace_back([&, c] {
        httplib::Client cl("127.0.0.1", s.server.port());
        cl.set_read_timeout(30, 0);
        for (int i = 0; i < kRequests; ++i) {
          const size_t k = size_t(c * kRequests + i);
          auto res = cl.Post("/invocations", {{"X-Amzn-SageMaker-Custom-Attributes", "tfs-model-version=1"}},
                             bodies[k], "application/json");
          out[k] = res ? std::to_string(res->status) + res->body : "no answer";
        }
      });
    for (auto& t : ts) t.join();
    return out;
  };
  const auto want = run(plain), got = run(batched);
  for (size_t k = 0; k < want.size(); ++k) {
    ASSERT_EQ(want[k].substr(0, 3), "200") << want[k].substr(0, 200);
    EXPECT_EQ(got[k], want[k]) << "request " << k;
  }
  // Batching happened: fewer passes than requests.
  EXPECT_EQ(plain.executor.passes(), int64_t(bodies.size()));
  EXPECT_LT(batched.executor.passes(), int64_t(bodies.size()));
}

// With batching on, a request that is the only one on its way has nothing to merge with: it
// runs at once (on its own thread), not after the batch timeout; two announced requests share
// one pass.
TEST(Serve, LoneBatchedRequestRunsAtOnceAndPairsMerge) {
  Context ctx(make_cpu_backend(2));
  Model m(ctx.backend(), models::mnist_mlp());
  m.init(5);
  const std::vector<float> x = images(2, 7);
  std::vector<float> want(20);
  m.predict(x.data(), 2, want.data());
  Executor executor(BatchOptions{8, std::chrono::microseconds(3000000)});
  std::vector<float> got(20);
  const auto t0 = std::chrono::steady_clock::now();
  {
    const Executor::Announcement me(executor);
    executor.run(m, x.data(), 2, got.data());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  EXPECT_EQ(got, want);
  EXPECT_EQ(executor.passes(), 1);
  // Two announced requests: the first waits for the second, then both go in one pass.
  std::vector<float> a(10), b(10);
  {
    const Executor::Announcement me(executor);  // on its way before the first request runs
    auto first = std::async(std::launch::async, [&] {
      const Executor::Announcement it(executor);
      executor.run(m, x.data(), 1, a.data());
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    executor.run(m, x.data() + 784, 1, b.data());
    first.get();
  }
  EXPECT_EQ(a, std::vector<float>(want.begin(), want.begin() + 10));
  EXPECT_EQ(b, std::vector<float>(want.begin() + 10, want.end()));
  EXPECT_EQ(executor.passes(), 2);
}

// Without batching, a request that finds a pass running is queued and run by the executor's
// pass thread while the HTTP threads go on parsing. Each caller must get exactly its own rows'
// probabilities, whichever thread ran its pass, and one pass per request.
TEST(Serve, QueuedPassesGiveEachCallerItsOwnAnswer) {
  Context ctx(make_cpu_backend(2));
  Model m(ctx.backend(), models::mnist_mlp());
  m.init(3);
  constexpr int kCallers = 8, kRequests = 25;
  std::vector<std::vector<float>> x, want;
  for (int i = 0; i < kCallers * kRequests; ++i) {
    const int64_t rows = 1 + i % 40;  // some passes long enough for others to queue behind them
    x.push_back(images(rows, uint64_t(i + 100)));
    want.emplace_back(size_t(rows * 10));
    m.predict(x.back().data(), rows, want.back().data());
  }
  Executor executor;
  std::vector<std::thread> ts;
  std::atomic<int> wrong{0};
  for (int c = 0; c < kCallers; ++c)
    ts.emplace_back([&, c] {
      for (int i = 0; i < kRequests; ++i) {
        const size_t k = size_t(c * kRequests + i);
        std::vector<float> got(want[k].size());
        executor.run(m, x[k].data(), int64_t(got.size() / 10), got.data());
        if (got != want[k]) ++wrong;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(executor.passes(), int64_t(kCallers * kRequests));
}

// The same over HTTP with the simplified-JSON fast path, bad bodies interleaved: every
// connection gets its own answers in order, and a bad body still gets its 400.
TEST(Serve, ConcurrentRequestsAndErrorsWithoutBatching) {
  ModelDir models;
  Served served(models.path());
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), models::mnist_mlp());
  m.set_params(models.seeded_params());
  constexpr int kClients = 8, kRequests = 10;
  std::vector<std::string> bodies;
  std::vector<std::vector<float>> want;
  for (int i = 0; i < kClients * kRequests; ++i) {
    const int rows = 1 + i % 5;
    const auto x = images(rows, uint64_t(i + 500));
    want.emplace_back(size_t(rows * 10));
    m.predict(x.data(), rows, want.back().data());
    bodies.push_back(json_rows(x));
  }
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int c = 0; c < kClients; ++c)
    ts.emplace_back([&, c] {
      httplib::Client cl("127.0.0.1", served.server.port());
      cl.set_keep_alive(true);
      cl.set_read_timeout(30, 0);
      const httplib::Headers v1 = {{"X-Amzn-SageMaker-Custom-Attributes", "tfs-model-version=1"}};
      for (int i = 0; i < kRequests; ++i) {
        const size_t k = size_t(c * kRequests + i);
        auto res = cl.Post("/invocations", v1, bodies[k], "application/json");
        std::vector<float> got;
        if (res && res->status == 200) {
          const auto j = nlohmann::json::parse(res->body);
          for (const auto& row : j["predictions"])
            for (const auto& p : row) got.push_back(p.get<float>());
        }
        if (got != want[k]) ++wrong;
        res = cl.Post("/invocations", v1, bodies[k].substr(0, bodies[k].size() - 1), "application/json");
        if (!res || res->status != 400) ++wrong;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong, 0);
}

TEST(Serve, PortInUseIsAnError) {
  ModelDir models;
  Served first(models.path());
  Context ctx(make_cpu_backend(1));
  Registry registry(ctx.backend(), models.path(), "mnist");
  Executor executor;
  Endpoint endpoint(registry, executor);
  ServerOptions opts;
  opts.port = first.server.port();
  EXPECT_THROW(Server(endpoint, opts), strand::Error);
}

TEST(Serve, RegistryRefusesBadNamesAndEmptyDirectories) {
  ModelDir models;
  Context ctx(make_cpu_backend(1));
  EXPECT_THROW(Registry(ctx.backend(), models.path(), "../x"), strand::Error);
  EXPECT_THROW(Registry(ctx.backend(), models.path() / "1", "m"), strand::Error);
  Registry r(ctx.backend(), models.path(), "m");
  EXPECT_EQ(r.versions().size(), 2u);
  EXPECT_EQ(r.find(std::nullopt)->version, 2);
  EXPECT_EQ(r.find(3), nullptr);
}

TEST(Serve, EndpointStore) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("strand-store-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  EndpointStore store(dir / "endpoints");
  EXPECT_TRUE(store.list().empty());
  EndpointRecord r{"b", ::getpid(), *process_start_time(::getpid()), "127.0.0.1", 8080, "/m", "mnist", "/l"};
  store.save(r);
  r.name = "a";
  r.start_time += 1;  // the same pid started at another time: not this process
  store.save(r);
  const auto all = store.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "a");
  EXPECT_TRUE(endpoint_alive(all[1]));
  EXPECT_FALSE(endpoint_alive(all[0]));
  EXPECT_EQ(store.find("b")->port, 8080);
  store.remove("a");
  EXPECT_FALSE(store.find("a"));
  EXPECT_THROW(store.find("../etc"), strand::Error);
  std::filesystem::remove_all(dir);
}

// A 3-channel, 3-class model with batchnorm, written as a model file by the test: C, H and W
// all differ, so every nested form is told apart by its dims.
const char* kColorModel = R"({"name": "tiny_rgb", "input": [3, 4, 6], "classes": 3, "layers": [
  {"type": "conv2d", "filters": 4, "kernel": 3, "padding": "same", "bias": false},
  {"type": "batchnorm"}, {"type": "relu"}, {"type": "maxpool", "kernel": 2},
  {"type": "flatten"}, {"type": "dense", "units": "classes"}]})";
constexpr int64_t kC = 3, kH = 4, kW = 6, kColorSize = kC * kH * kW;

ModelArch color_arch() { return models::parse_model_json(kColorModel, "tiny_rgb.json").arch; }

// Instances in the model's order [C][H][W] as nested JSON lists, channels-first or -last.
std::string nested(const float* x, bool channels_last) {
  char buf[32];
  auto num = [&](int64_t c, int64_t h, int64_t w) {
    return std::string(buf, std::to_chars(buf, buf + sizeof buf, x[(c * kH + h) * kW + w]).ptr);
  };
  std::string s = "[";
  for (int64_t a = 0; a < (channels_last ? kH : kC); ++a) {
    s += a ? ",[" : "[";
    for (int64_t b = 0; b < (channels_last ? kW : kH); ++b) {
      s += b ? ",[" : "[";
      for (int64_t k = 0; k < (channels_last ? kC : kW); ++k) {
        if (k) s += ',';
        s += channels_last ? num(k, a, b) : num(a, b, k);
      }
      s += "]";
    }
    s += "]";
  }
  return s + "]";
}

class ColorEndpointTest : public EndpointTest {
 protected:
  static void SetUpTestSuite() {
    color_ = new ModelDir(color_arch());
    color_served_ = new Served(color_->path(), {}, {}, "rgb");
  }
  static void TearDownTestSuite() {
    delete color_served_;
    delete color_;
  }
  std::pair<int, std::string> post_rgb(const std::string& path, const std::string& body,
                                       const std::string& type = "application/json",
                                       httplib::Headers headers = {}) const {
    httplib::Client c("127.0.0.1", color_served_->server.port());
    c.set_read_timeout(30, 0);
    auto res = c.Post(path.c_str(), headers, body, type.c_str());
    return res ? std::pair{res->status, res->body} : std::pair{-1, std::string()};
  }
  static ModelDir* color_;
  static Served* color_served_;
};
ModelDir* ColorEndpointTest::color_ = nullptr;
Served* ColorEndpointTest::color_served_ = nullptr;

TEST_F(ColorEndpointTest, MetadataFollowsTheModel) {
  httplib::Client c("127.0.0.1", color_served_->server.port());
  const auto res = c.Get("/v1/models/rgb/metadata");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->body, metadata_body("rgb", 2, {4, 6, 3}, 3));
}

// Version 2 (all zeros): every form, in every content type, answers three 1/3s.
TEST_F(ColorEndpointTest, EveryContentTypeTakesEveryForm) {
  const std::string third = "[0.33333334,0.33333334,0.33333334]";
  const std::vector<float> x = images(1, 3, kColorSize);
  const std::string hwc = nested(x.data(), true), chw = nested(x.data(), false),
                    flat = json_list(x.data(), x.size());
  const std::string all = "[" + hwc + "," + chw + "," + flat + "]";
  const std::string three = "[" + third + "," + third + "," + third + "]";
  EXPECT_EQ(post_rgb("/v1/models/rgb:predict", "{\"instances\":" + all + "}"),
            std::pair(200, "{\"predictions\":" + three + "}"));
  EXPECT_EQ(post_rgb("/v1/models/rgb:predict", "{\"inputs\":{\"x\":" + all + "}}"),
            std::pair(200, "{\"outputs\":" + three + "}"));
  EXPECT_EQ(post_rgb("/v1/models/rgb:predict", "{\"instances\":[{\"x\":" + hwc + "}]}"),
            std::pair(200, "{\"predictions\":[" + third + "]}"));
  EXPECT_EQ(post_rgb("/invocations", hwc), std::pair(200, "{\"predictions\":[" + third + "]}"));
  EXPECT_EQ(post_rgb("/invocations", chw), std::pair(200, "{\"predictions\":[" + third + "]}"));
  EXPECT_EQ(post_rgb("/invocations", all), std::pair(200, "{\"predictions\":" + three + "}"));
  EXPECT_EQ(post_rgb("/invocations", hwc + "\n" + chw + "\n" + flat, "application/jsonlines"),
            std::pair(200, "{\"predictions\":" + three + "}"));
  EXPECT_EQ(post_rgb("/invocations", "{\"instances\":[" + hwc + "]}\n" + chw, "application/jsons",
                     {{"Accept", "application/jsonlines"}}),
            std::pair(200, third + "\n" + third + "\n"));
  const std::string csv = flat.substr(1, flat.size() - 2);
  EXPECT_EQ(post_rgb("/invocations", csv + "\n" + csv + "\n", "text/csv"),
            std::pair(200, "{\"predictions\":[" + third + "," + third + "]}"));
}

// Version 1 (seeded weights, batchnorm's running statistics set): each form gives exactly the
// library's probabilities for the image, so the channels-last form was transposed.
TEST_F(ColorEndpointTest, EveryFormGivesTheModelsFloats) {
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), color_arch());
  m.set_params(color_->seeded_params());
  const std::vector<float> x = images(2, 9, kColorSize);
  std::vector<float> want(6);
  m.predict(x.data(), 2, want.data());
  const std::string body =
      "{\"predictions\":[" + json_list(want.data(), 3) + "," + json_list(want.data() + 3, 3) + "]}";
  const httplib::Headers v1 = {{"X-Amzn-SageMaker-Custom-Attributes", "tfs-model-version=1"}};
  const float* b = x.data() + kColorSize;
  for (const std::string& pair : {"[" + nested(x.data(), true) + "," + nested(b, true) + "]",
                                  "[" + nested(x.data(), false) + "," + nested(b, true) + "]",
                                  "[" + json_list(x.data(), kColorSize) + "," + nested(b, false) + "]"}) {
    EXPECT_EQ(post_rgb("/v1/models/rgb/versions/1:predict", "{\"instances\":" + pair + "}"),
              std::pair(200, body));
    EXPECT_EQ(post_rgb("/invocations", pair, "application/json", v1), std::pair(200, body));
  }
  std::string csv = json_rows(x, kColorSize);
  csv = csv.substr(2, csv.size() - 4);
  csv.replace(csv.find("],["), 3, "\n");
  EXPECT_EQ(post_rgb("/invocations", csv, "text/csv", v1), std::pair(200, body));
}

TEST_F(ColorEndpointTest, WrongShapesAreClearErrors) {
  const std::string want = "expected a list of 72 numbers or a nested list of shape [4,6,3] or [3,4,6], got ";
  const std::vector<float> x = images(1, 3, kColorSize);
  const std::string chw = nested(x.data(), false);
  const std::string mnist = json_list(images(1).data(), 784);
  struct Case {
    std::string path, type, body, error;
  };
  const std::vector<Case> cases = {
      {"/v1/models/rgb:predict", "application/json", "{\"instances\":[" + chw + "," + mnist + "]}",
       "instance 1: " + want + "a list of 784"},
      {"/v1/models/rgb:predict", "application/json",
       "{\"instances\":[[" + repeat("[" + repeat("[1,2,3,4]", 6) + "]", 4) + "]]}",
       "instance 0: " + want + "nested lists of shape [4,6,4]"},
      {"/v1/models/rgb:predict", "application/json",
       "{\"inputs\":[[" + repeat("[" + repeat("0", 4) + "]", 6) + "]]}",
       "instance 0: " + want + "nested lists of shape [6,4]"},
      {"/invocations", "application/json", "[" + repeat("[" + repeat("0", 6) + "]", 4) + "]",
       "instance 0: " + want + "a list of 6"},
      {"/invocations", "application/jsonlines", chw + "\n[[1]]",
       "line 2: instance 1: " + want + "a list of 1"},
      {"/invocations", "text/csv", repeat("0", 784), "row 1 has more than 72 values"},
      {"/invocations", "text/csv", repeat("0", 71), "row 1 has 71 values, expected 72"},
  };
  for (const Case& k : cases)
    EXPECT_EQ(post_rgb(k.path, k.body, k.type), std::pair(400, err(k.error))) << k.body.substr(0, 80);
}

// Predictor (strand predict) sends each instance nested in the shape it is given: any of the
// model's forms gives the same probabilities.
TEST(Serve, PredictorSendsAnyFormOfTheModelsShape) {
  const ModelArch arch = color_arch();
  const std::vector<float> params = seeded_params(arch);
  ModelDir dir(std::vector<io::ModelFile>{model_file(arch, params)});
  Served served(dir.path(), {}, {}, "rgb");
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), arch);
  m.set_params(params);
  const std::vector<float> x = images(3, 4, kColorSize);
  std::vector<float> want(9);
  m.predict(x.data(), 3, want.data());
  std::vector<float> hwc(x.size());
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t c = 0; c < kC; ++c)
      for (int64_t i = 0; i < kH * kW; ++i)
        hwc[size_t((n * kH * kW + i) * kC + c)] = x[size_t((n * kC + c) * kH * kW + i)];
  const Predictor p("127.0.0.1", served.server.port());
  const ServedSignature sig = p.signature("rgb");
  EXPECT_EQ(sig.input, (Shape{4, 6, 3}));
  EXPECT_EQ(sig.classes, 3);
  for (const auto& [data, shape] :
       {std::pair{x.data(), Shape{3, 4, 6}}, std::pair{static_cast<const float*>(hwc.data()), Shape{4, 6, 3}},
        std::pair{x.data(), Shape{72}}}) {
    const auto got = p.predict(data, 3, shape, 2);
    ASSERT_EQ(got.size(), 3u) << shape.str();
    for (size_t r = 0; r < 3; ++r)
      EXPECT_EQ(got[r], std::vector<float>(want.begin() + long(3 * r), want.begin() + long(3 * r + 3)))
          << shape.str();
  }
  try {
    p.signature("other");
    ADD_FAILURE() << "no error for an unknown model";
  } catch (const strand::Error& e) {
    EXPECT_EQ(e.message(), "the endpoint answered 404: no model named 'other'; this endpoint serves 'rgb'");
  }
}

// mnist_bn serves in evaluation mode: its running averages, not the batch's statistics.
TEST(Serve, BatchnormServesItsRunningAverages) {
  const ModelArch arch = models::by_name("mnist_bn");
  const std::vector<float> params = seeded_params(arch);
  ModelDir dir(std::vector<io::ModelFile>{model_file(arch, params)});
  Served served(dir.path());
  Context ctx(make_cpu_backend(1));
  Model m(ctx.backend(), arch);
  m.set_params(params);
  const std::vector<float> x = images(2, 21);
  std::vector<float> want(20);
  m.predict(x.data(), 2, want.data());
  httplib::Client c("127.0.0.1", served.server.port());
  const auto res = c.Post("/invocations", json_rows(x), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->body,
            "{\"predictions\":[" + json_list(want.data(), 10) + "," + json_list(want.data() + 10, 10) + "]}");
  // A training forward (the batch's statistics) gives other probabilities.
  const float* logits = m.forward(x.data(), 2, true, 0);
  double far = 0;
  for (int r = 0; r < 2; ++r) {
    double sum = 0;
    for (int k = 0; k < 10; ++k) sum += std::exp(double(logits[r * 10 + k]));
    for (int k = 0; k < 10; ++k)
      far = std::max(far, std::fabs(std::exp(double(logits[r * 10 + k])) / sum - want[size_t(r * 10 + k)]));
  }
  EXPECT_GT(far, 1e-3);
}

// Exports from before model files (signature {784}, the original layer specs, as strand wrote
// them then: the file's layout has not changed) still load and serve, and report [-1,784].
TEST(Serve, OldExportsStillServe) {
  const ModelArch old_cnn{
      "mnist_cnn",
      Shape{1, 28, 28},
      {LayerSpec{"conv2d", {{"filters", 32}, {"kernel", 5}, {"same", 1}}}, LayerSpec{"relu", {}},
       LayerSpec{"maxpool2x2", {}}, LayerSpec{"conv2d", {{"filters", 64}, {"kernel", 5}, {"same", 1}}},
       LayerSpec{"relu", {}}, LayerSpec{"maxpool2x2", {}}, LayerSpec{"flatten", {}},
       LayerSpec{"dense", {{"units", 1024}}}, LayerSpec{"relu", {}}, LayerSpec{"dropout", {{"rate", 0.4}}},
       LayerSpec{"dense", {{"units", 10}}}}};
  const ModelArch old_mlp{
      "mnist_mlp",
      Shape{1, 28, 28},
      {LayerSpec{"flatten", {}}, LayerSpec{"dense", {{"units", 1024}}}, LayerSpec{"relu", {}},
       LayerSpec{"dropout", {{"rate", 0.4}}}, LayerSpec{"dense", {{"units", 10}}}}};
  const io::Signature old_signature{"x", Shape{784}, "classes", "probabilities", 10};
  std::vector<io::ModelFile> files;
  for (const ModelArch& a : {old_cnn, old_mlp}) files.push_back({a, old_signature, seeded_params(a), {}});
  ModelDir dir(files);
  Served served(dir.path());
  httplib::Client c("127.0.0.1", served.server.port());
  const std::vector<float> x = images(2, 5);
  Context ctx(make_cpu_backend(1));
  for (int v = 1; v <= 2; ++v) {
    EXPECT_EQ(c.Get(("/v1/models/mnist/versions/" + std::to_string(v) + "/metadata").c_str())->body,
              metadata_body("mnist", v, {784}, 10));
    Model m(ctx.backend(), files[size_t(v - 1)].arch);
    m.set_params(files[size_t(v - 1)].params);
    std::vector<float> want(20);
    m.predict(x.data(), 2, want.data());
    // The second image as a 28x28 nested list: the architecture's shape still applies.
    std::string second = "[";
    for (int r = 0; r < 28; ++r) {
      if (r) second += ',';
      second += json_list(x.data() + 784 + 28 * r, 28);
    }
    const auto res =
        c.Post(("/v1/models/mnist/versions/" + std::to_string(v) + ":predict").c_str(),
               "{\"instances\":[" + json_list(x.data(), 784) + "," + second + "]]}", "application/json");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->body, "{\"predictions\":[" + json_list(want.data(), 10) + "," +
                             json_list(want.data() + 10, 10) + "]}")
        << "version " << v;
  }
}

}  // namespace
}  // namespace strand::serve::test
