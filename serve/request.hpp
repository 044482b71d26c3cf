// Request bodies -> one [rows, size] float batch in the model's layout, for the formats a
// serving endpoint accepts:
//   TF Serving JSON   {"instances": [...]} (row format) or {"inputs": ...} (columnar), optional
//                     "signature_name"; an instance is one of the spec's forms (below) or
//                     {"<input name>": that}
//   simplified JSON   SageMaker's form: a list of instances or one instance, no wrapper
//   JSON lines        one instance, list of instances or request object per line
//   CSV               one flat instance per row
// An instance of a model taking {C,H,W} is a flat list of C*H*W numbers in the model's order
// ([C][H][W] flattened), or a nested list of shape [H,W] (C = 1), [H,W,C] (channels-last, as
// TF and SageMaker's TF clients send images; transposed here) or [C,H,W]. Nesting depth and
// dims tell them apart; when C = H = W, [H,W,C] and [C,H,W] look alike and channels-last wins.
// Every rejection is an Error(Format) whose message says where (instance, value index, line,
// row, column) and what is wrong; values must be finite and within float range. Parsing uses
// simdjson (DOM) for speed; nesting is capped, so a deep body is refused, never recursed into.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <strand/core/tensor.hpp>

namespace strand::serve {

// A nested list an instance may be sent as.
struct InstanceShape {
  Shape dims;                  // outermost first, e.g. {32,32,3}
  bool channels_last = false;  // [H][W][C] with C > 1: transposed into the model's [C][H][W]
  bool operator==(const InstanceShape&) const = default;
};

// What one instance must look like.
struct InstanceSpec {
  std::string input_name = "x";
  int64_t size = 0;                   // numbers per instance, e.g. 784
  std::vector<InstanceShape> shapes;  // nested forms also accepted, each of distinct dims
};

// The spec of a model whose input is `input` per sample: flat; the input without its size-1
// dimensions; for {C,H,W}, [H,W,C] and then [C,H,W] (unless the two coincide).
InstanceSpec instance_spec(const Shape& input, const std::string& input_name);

enum class Layout { Row, Columnar };

struct Instances {
  Layout layout = Layout::Row;  // how to answer: "predictions" (row) or "outputs" (columnar)
  std::string signature_name;   // as sent; empty if absent
  int64_t rows = 0;
  std::vector<float> x;  // rows * spec.size values
};

// simdjson's parser buffers, kept across requests: allocating them for every body costs more
// in page faults than the parse itself. Use one per concurrent request; JsonParsers pools them.
class JsonParser {
 public:
  JsonParser();
  ~JsonParser();
  size_t capacity() const;  // bytes of JSON it can take without growing
  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// A pool of JsonParsers. A parser grown past `keep_capacity` (a rare multi-MiB body) is freed
// after use rather than kept, so the pool holds at most `keep` * `keep_capacity` bytes' worth.
class JsonParsers {
 public:
  explicit JsonParsers(size_t keep = 64, size_t keep_capacity = 1u << 20)
      : keep_(keep), keep_capacity_(keep_capacity) {}
  // A parser for the caller's use until the lease ends.
  class Lease {
   public:
    Lease(JsonParsers& pool, std::unique_ptr<JsonParser> p) : pool_(pool), p_(std::move(p)) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { pool_.give_back(std::move(p_)); }
    JsonParser& operator*() const { return *p_; }

   private:
    JsonParsers& pool_;
    std::unique_ptr<JsonParser> p_;
  };
  Lease acquire();

 private:
  void give_back(std::unique_ptr<JsonParser> p);
  size_t keep_, keep_capacity_;
  std::mutex mu_;
  std::vector<std::unique_ptr<JsonParser>> free_;
};

// Threads a parser may borrow: run(parts, body) runs body(part) for part in [0, parts) at once
// (an endpoint lends its model's backend threads: Backend::run_host_parts), for bodies of
// min_bytes or more (smaller ones cost less to parse than a thread costs to start).
struct ParseThreads {
  std::function<void(int parts, const std::function<void(int part)>& body)> run;
  size_t min_bytes = 64 << 10;  // a 50-image MNIST body is 134 KB
};

// A TF Serving request body ({"instances": ...} or {"inputs": ...}).
Instances parse_tfs_json(std::string_view body, const InstanceSpec& spec, JsonParser& parser);
// SageMaker application/json: a TF Serving body as is, else the simplified form. With
// `threads`, a large list of flat instances is parsed in two halves at once (same floats).
Instances parse_sagemaker_json(std::string_view body, const InstanceSpec& spec, JsonParser& parser,
                               const ParseThreads* threads = nullptr);
// application/jsonlines and application/jsons: each non-blank line as application/json.
Instances parse_json_lines(std::string_view body, const InstanceSpec& spec, JsonParser& parser);
// The same with a parser of their own (tests, tools).
Instances parse_tfs_json(std::string_view body, const InstanceSpec& spec);
Instances parse_sagemaker_json(std::string_view body, const InstanceSpec& spec);
Instances parse_json_lines(std::string_view body, const InstanceSpec& spec);
// text/csv: one flat instance per row, `spec.size` comma-separated numbers.
Instances parse_csv(std::string_view body, const InstanceSpec& spec);

}  // namespace strand::serve
