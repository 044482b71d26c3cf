// The request parsers on their own: accepted forms, layouts, and where errors point.
#include <gtest/gtest.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>

#include <strand/core/error.hpp>
#include <strand/serve/request.hpp>

namespace strand::serve {
namespace {

const InstanceSpec kSpec = instance_spec(Shape{1, 2, 3}, "x");  // 6 numbers, or [2,3], [2,3,1], [1,2,3]
// Three channels of 2x4: 24 numbers, [2,4,3] (channels-last) or [3,2,4].
const InstanceSpec kColor = instance_spec(Shape{3, 2, 4}, "x");

std::string message_of(void (*f)()) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Format);
    return e.message();
  }
  return "no error";
}

TEST(Request, InstanceSpec) {
  EXPECT_EQ(kSpec.size, 6);
  EXPECT_EQ(kSpec.shapes, (std::vector<InstanceShape>{
                              {Shape{2, 3}, false}, {Shape{2, 3, 1}, false}, {Shape{1, 2, 3}, false}}));
  EXPECT_EQ(kColor.size, 24);
  EXPECT_EQ(kColor.shapes, (std::vector<InstanceShape>{{Shape{2, 4, 3}, true}, {Shape{3, 2, 4}, false}}));
  // C = H = W: [H,W,C] and [C,H,W] look alike; channels-last wins.
  EXPECT_EQ(instance_spec(Shape{2, 2, 2}, "x").shapes, (std::vector<InstanceShape>{{Shape{2, 2, 2}, true}}));
  const InstanceSpec flat = instance_spec(Shape{784}, "x");
  EXPECT_EQ(flat.size, 784);
  EXPECT_TRUE(flat.shapes.empty());
}

// [C][H][W] nested lists as JSON, value = 100c + 10h + w; and the same image channels-last.
std::string color_chw() {
  std::string s = "[";
  for (int c = 0; c < 3; ++c) {
    s += c ? ",[" : "[";
    for (int h = 0; h < 2; ++h) {
      s += h ? ",[" : "[";
      for (int w = 0; w < 4; ++w) {
        if (w) s += ',';
        s += std::to_string(100 * c + 10 * h + w);
      }
      s += "]";
    }
    s += "]";
  }
  return s + "]";
}
std::string color_hwc() {
  std::string s = "[";
  for (int h = 0; h < 2; ++h) {
    s += h ? ",[" : "[";
    for (int w = 0; w < 4; ++w) {
      s += w ? ",[" : "[";
      for (int c = 0; c < 3; ++c) {
        if (c) s += ',';
        s += std::to_string(100 * c + 10 * h + w);
      }
      s += "]";
    }
    s += "]";
  }
  return s + "]";
}
std::vector<float> color_model_order() {
  std::vector<float> x;
  for (int c = 0; c < 3; ++c)
    for (int h = 0; h < 2; ++h)
      for (int w = 0; w < 4; ++w) x.push_back(float(100 * c + 10 * h + w));
  return x;
}

// Every form and content type gives the batch in the model's [C][H][W] order.
TEST(Request, ChannelsLastAndChannelsFirstInstances) {
  const std::vector<float> one = color_model_order();
  std::string csv;
  for (size_t i = 0; i < one.size(); ++i) {
    if (i) csv += ',';
    csv += std::to_string(int(one[i]));
  }
  const std::string flat = "[" + csv + "]";
  std::vector<float> three;
  for (int i = 0; i < 3; ++i) three.insert(three.end(), one.begin(), one.end());
  const std::string list = "[" + color_hwc() + "," + color_chw() + "," + flat + "]";
  EXPECT_EQ(parse_tfs_json(R"({"instances": )" + list + "}", kColor).x, three);
  EXPECT_EQ(parse_tfs_json(R"({"inputs": {"x": )" + list + "}}", kColor).x, three);
  EXPECT_EQ(parse_tfs_json(R"({"instances": [{"x": )" + color_hwc() + "}]}", kColor).x, one);
  EXPECT_EQ(parse_sagemaker_json(list, kColor).x, three);
  EXPECT_EQ(parse_sagemaker_json(color_hwc(), kColor).x, one);  // one instance, no list around it
  EXPECT_EQ(parse_sagemaker_json(color_chw(), kColor).x, one);
  EXPECT_EQ(parse_sagemaker_json(R"({"x": )" + color_hwc() + "}", kColor).x, one);
  EXPECT_EQ(parse_json_lines(color_hwc() + "\n" + color_chw() + "\n" + flat, kColor).x, three);
  EXPECT_EQ(parse_csv(csv + "\n" + csv + "\n" + csv, kColor).x, three);
  // C = H = W: read channels-last.
  const InstanceSpec cube = instance_spec(Shape{2, 2, 2}, "x");
  EXPECT_EQ(parse_sagemaker_json("[[[0,1],[2,3]],[[4,5],[6,7]]]", cube).x,
            (std::vector<float>{0, 2, 4, 6, 1, 3, 5, 7}));
}

TEST(Request, WrongShapesSayWhatWasExpected) {
  const std::string want = "expected a list of 24 numbers or a nested list of shape [2,4,3] or [3,2,4], got ";
  EXPECT_EQ(message_of([] {
              parse_tfs_json(R"({"instances": [)" + color_chw() + ", [[[1,2],[3,4]],[[5,6],[7,8]]]]}",
                             kColor);
            }),
            "instance 1: " + want + "nested lists of shape [2,2,2]");
  EXPECT_EQ(message_of([] { parse_sagemaker_json("[[[1,2,3,4],[5,6,7,8]]]", kColor); }),
            "instance 0: " + want + "nested lists of shape [2,4]");
  EXPECT_EQ(message_of([] { parse_sagemaker_json("[[1,2,3]]", kColor); }),
            "instance 0: " + want + "a list of 3");
  // Ragged channels-last: the value index counts in the order sent.
  std::string ragged = color_hwc();
  ragged.replace(ragged.rfind(",112"), 4, "");
  EXPECT_EQ(message_of([] { parse_json_lines("[1]\n", kColor); }),
            "line 1: instance 0: " + want + "a list of 1");
  try {
    parse_sagemaker_json(ragged, kColor);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "instance 0, value 18: a list of 2 where 3 were expected (ragged nesting)");
  }
  EXPECT_EQ(message_of([] { parse_csv(std::string("1,2,3"), kColor); }), "row 1 has 3 values, expected 24");
  EXPECT_EQ(message_of([] { parse_tfs_json(R"({"inputs": [[1,2,3]]})", kColor); }),
            "instance 0: " + want + "a list of 3");
}

TEST(Request, TfServingRowAndColumnar) {
  Instances a = parse_tfs_json(
      R"({"instances": [[1,2,3,4,5,6], [[1,2,3],[4,5,6]], [[[1,2,3],[4,5,6]]], {"x": [0,0,0,0,0,-1.5]}]})",
      kSpec);
  EXPECT_EQ(a.layout, Layout::Row);
  EXPECT_EQ(a.rows, 4);
  EXPECT_EQ(a.x,
            (std::vector<float>{1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, -1.5f}));
  Instances b =
      parse_tfs_json(R"({"signature_name": "serving_default", "inputs": {"x": [[1,2,3,4,5,6]]}})", kSpec);
  EXPECT_EQ(b.layout, Layout::Columnar);
  EXPECT_EQ(b.signature_name, "serving_default");
  EXPECT_EQ(b.rows, 1);
}

TEST(Request, SimplifiedJson) {
  EXPECT_EQ(parse_sagemaker_json("[1,2,3,4,5,6]", kSpec).rows, 1);                  // one flat instance
  EXPECT_EQ(parse_sagemaker_json("[[1,2,3],[4,5,6]]", kSpec).rows, 1);              // one nested instance
  EXPECT_EQ(parse_sagemaker_json("[[1,2,3,4,5,6],[1,2,3,4,5,6]]", kSpec).rows, 2);  // a list
  EXPECT_EQ(parse_sagemaker_json(R"({"x": [1,2,3,4,5,6]})", kSpec).rows, 1);
  EXPECT_EQ(parse_sagemaker_json(R"({"instances": [[1,2,3,4,5,6]]})", kSpec).rows, 1);
  // Integers beyond int64 but within float range are numbers like any other.
  EXPECT_EQ(parse_sagemaker_json("[18446744073709551615,0,0,0,0,0]", kSpec).x[0], 18446744073709551615.0f);
}

TEST(Request, JsonLinesAndCsv) {
  Instances j = parse_json_lines("[1,2,3,4,5,6]\n\n  \n{\"instances\": [[6,5,4,3,2,1]]}", kSpec);
  EXPECT_EQ(j.rows, 2);
  EXPECT_EQ(j.x[6], 6);
  Instances c = parse_csv(" 1, 2 ,3,4,5,6\r\n-1e-3,0,0,0,0,7\n", kSpec);
  EXPECT_EQ(c.rows, 2);
  EXPECT_EQ(c.x[6], -1e-3f);
  EXPECT_EQ(c.x[11], 7);
}

TEST(Request, ErrorsSayWhere) {
  EXPECT_EQ(
      message_of([] { parse_tfs_json(R"({"instances": [[1,2,3,4,5,6], [[1,2,3],[4,null,6]]]})", kSpec); }),
      "instance 1, value 4: null, not a number");
  EXPECT_EQ(message_of([] { parse_tfs_json(R"({"instances": [[[1,2,3],[4,5]]]})", kSpec); }),
            "instance 0, value 3: a list of 2 where 3 were expected (ragged nesting)");
  EXPECT_EQ(message_of([] { parse_tfs_json(R"({"instances": [[[1,2],[3,4],[5,6]]]})", kSpec); }),
            "instance 0: expected a list of 6 numbers or a nested list of shape [2,3] or [2,3,1] or [1,2,3], "
            "got nested "
            "lists of shape [3,2]");
  EXPECT_EQ(message_of([] { parse_tfs_json(R"({"instances": 5})", kSpec); }),
            "'instances' must be a list of instances, got a number");
  EXPECT_EQ(message_of([] { parse_tfs_json(R"({"instances": [1], "inputs": [1]})", kSpec); }),
            "instance 0: expected a list of 6 numbers or a nested list of shape [2,3] or [2,3,1] or [1,2,3], "
            "got a number");
  EXPECT_EQ(message_of([] { parse_tfs_json(R"({"inputs": [[1,2,3,4,5,6]], "instances": []})", kSpec); }),
            "a request has either 'instances' (row format) or 'inputs' (columnar format), not both");
  EXPECT_EQ(message_of([] { parse_tfs_json("{}", kSpec); }),
            "the JSON object has neither 'instances' (row format) nor 'inputs' (columnar format)");
  EXPECT_EQ(message_of([] { parse_sagemaker_json(R"({})", kSpec); }),
            "instance 0: empty object, expected {\"x\": [...]}");
  EXPECT_EQ(message_of([] { parse_json_lines("\n\n", kSpec); }), "the body has no JSON lines");
  EXPECT_EQ(message_of([] { parse_json_lines("[1,2,3,4,5,6]\n[1,2,3,4,5,\"6\"]", kSpec); }),
            "line 2: instance 1, value 5: a string, not a number");
  EXPECT_EQ(message_of([] { parse_csv("1,2,3,4,5,", kSpec); }), "row 1, column 6: '' is not a number");
  EXPECT_EQ(message_of([] { parse_csv("1,2,3,4,5,inf", kSpec); }),
            "row 1, column 6: 'inf' is not a finite float");
  EXPECT_EQ(message_of([] { parse_csv("1,2,3,4,5,6 7", kSpec); }), "row 1, column 6: '6 7' is not a number");
  EXPECT_EQ(message_of([] { parse_csv("1,2,3,4,5,0x10", kSpec); }),
            "row 1, column 6: '0x10' is not a number");
}

// Simplified JSON of flat instances takes a fast path of its own; it must give exactly the
// general path's floats (the same body wrapped as {"instances": ...} takes the general path),
// and leave everything it does not handle, errors included, to the general path.
// A large list parsed in two halves on lent threads gives the same floats as one pass, whatever
// the spacing at the cut; what the halves cannot take (nested instances, a bad row, invalid
// JSON, no list) is answered as without the threads, errors included.
TEST(Request, ParsingInHalvesMatchesParsingWhole) {
  int calls = 0;
  const ParseThreads serial{[&](int parts, const std::function<void(int)>& body) {
    ++calls;
    for (int p = parts - 1; p >= 0; --p) body(p);  // backwards: the halves must not depend on order
  }};
  std::mt19937 rng(11);
  auto row = [&](int i) {
    std::string r = "[";
    for (int j = 0; j < 6; ++j) {
      if (j) r += ',';
      r += std::to_string(int(rng() % 2000) - 1000) + "." + std::to_string(i % 97);
    }
    return r + "]";
  };
  for (const char* sep : {",", " , ", ",\n", "\n,\t"}) {
    for (int rows : {5001, 5002}) {
      std::string body = " [ ";
      for (int i = 0; i < rows; ++i) body += (i ? std::string(sep) : "") + row(i);
      body += " ] \n";
      ASSERT_GE(body.size(), size_t(64 << 10));
      JsonParser parser;
      const Instances whole = parse_sagemaker_json(body, kSpec, parser);
      const int before = calls;
      const Instances halves = parse_sagemaker_json(body, kSpec, parser, &serial);
      EXPECT_EQ(calls, before + 1) << "the halves path was not taken";
      ASSERT_EQ(halves.rows, rows);
      ASSERT_EQ(whole.rows, rows);
      ASSERT_EQ(std::memcmp(halves.x.data(), whole.x.data(), whole.x.size() * sizeof(float)), 0) << sep;
    }
  }
  std::string big = "[";
  for (int i = 0; i < 6000; ++i) {
    if (i) big += ',';
    big += row(i);
  }
  JsonParser parser;
  auto both = [&](const std::string& body) {
    std::string a, b;
    try {
      a = std::to_string(parse_sagemaker_json(body, kSpec, parser).rows);
    } catch (const Error& e) {
      a = e.message();
    }
    try {
      b = std::to_string(parse_sagemaker_json(body, kSpec, parser, &serial).rows);
    } catch (const Error& e) {
      b = e.message();
    }
    EXPECT_EQ(a, b) << body.substr(0, 80);
  };
  both(big + "]");                  // 6000 rows
  both(big + ",[1,2,3]]");          // a short last row
  both(big + "]]");                 // invalid JSON after the list
  both("[" + big.substr(1) + "]");  // the same list again
  std::string nested = "[";
  for (int i = 0; i < 4000; ++i) nested += i ? ",[[1,2,3],[4,5,6]]" : "[[1,2,3],[4,5,6]]";
  both(nested + "]");                      // nested instances: cut inside an instance
  both(R"({"instances": )" + big + "]}");  // a TF Serving body
}

TEST(Request, SimplifiedFastPathMatchesTheGeneralPath) {
  std::mt19937_64 rng(5);
  std::vector<std::string> numbers = {"0",
                                      "-0",
                                      "0.0",
                                      "-0.0",
                                      "1",
                                      "-1",
                                      "1e5",
                                      "1E+5",
                                      "-2.5e-3",
                                      "1e-30",
                                      "3e38",
                                      "123456789012345678",
                                      "9007199254740993",
                                      "0.30000000000000004",
                                      "1.00000005960464477539",
                                      "0.000000000000000000001",
                                      "18446744073709551615",
                                      "1e22",
                                      "1e23",
                                      "4.9e-324",
                                      "0.1e1",
                                      "1000000000000000000000.5"};
  char buf[64];
  for (int i = 0; i < 3000; ++i) {
    const uint64_t bits = rng();
    float f = 0;
    const uint32_t b32 = uint32_t(bits);
    std::memcpy(&f, &b32, 4);
    if (!std::isfinite(f)) continue;
    switch (i % 4) {
      case 0:
        numbers.emplace_back(buf, std::to_chars(buf, buf + sizeof(buf), f).ptr);
        break;  // shortest
      case 1:
        numbers.emplace_back(buf, std::to_chars(buf, buf + sizeof(buf), double(f) * 0.7).ptr);
        break;
      case 2:
        numbers.emplace_back(buf,
                             size_t(std::snprintf(buf, sizeof(buf), "%.9g", double(bits % 1000000) / 1e6)));
        break;
      default:
        numbers.emplace_back(std::to_string(int64_t(bits >> (bits % 64)) - int64_t(bits % 3)));
    }
  }
  const InstanceSpec flat = instance_spec(Shape{3}, "x");
  for (size_t i = 0; i + 3 <= numbers.size(); i += 3) {
    const std::string row = "[" + numbers[i] + ", " + numbers[i + 1] + ",\n" + numbers[i + 2] + "]";
    for (const std::string& body : {row, "[" + row + "," + row + " ]"}) {
      const std::string list = body == row ? "[" + row + "]" : body;
      Instances general;
      try {
        general = parse_tfs_json(R"({"instances": )" + list + "}", flat);
      } catch (const Error& e) {  // e.g. an integer beyond 64 bits: refused alike
        EXPECT_THROW(parse_sagemaker_json(body, flat), Error) << body;
        continue;
      }
      const Instances fast = parse_sagemaker_json(body, flat);
      ASSERT_EQ(fast.rows, general.rows) << body;
      ASSERT_EQ(std::memcmp(fast.x.data(), general.x.data(), fast.x.size() * sizeof(float)), 0) << body;
      EXPECT_EQ(fast.layout, Layout::Row);
    }
  }
  // What the fast path declines, the general path answers with its own messages.
  EXPECT_EQ(message_of([] { parse_sagemaker_json("[[1,2,3,4,5,6],[1,2]]", kSpec); }),
            "instance 1: expected a list of 6 numbers or a nested list of shape [2,3] or [2,3,1] or [1,2,3], "
            "got a list of 2");
  EXPECT_EQ(message_of([] {
              parse_sagemaker_json("[[1,2,3,4,5,6],[1,2,3,4,5,01]]", kSpec);
            }).rfind("the body is not valid JSON", 0),
            0u);
  EXPECT_EQ(message_of([] {
              parse_sagemaker_json("[[1,2,3,4,5,6]] x", kSpec);
            }).rfind("the body is not valid JSON", 0),
            0u);
  EXPECT_EQ(message_of([] { parse_sagemaker_json("[1,2,3,4,5,100000000000000000000000]", kSpec); }),
            "the body is not valid JSON: Problem while parsing a number");  // simdjson's limit for integers
  EXPECT_EQ(message_of([] { parse_sagemaker_json("[1,2,3,4,5,1e39]", kSpec); }),
            "instance 0, value 5: 1e+39 is out of float range");
  EXPECT_EQ(message_of([] { parse_sagemaker_json("[1,2,3,4,5]", kSpec); }),
            "instance 0: expected a list of 6 numbers or a nested list of shape [2,3] or [2,3,1] or [1,2,3], "
            "got a list of 5");
  EXPECT_EQ(parse_sagemaker_json(" \n[ [1,2,3,4,5,6] , [6,5,4,3,2,1.5] ]\r\n", kSpec).x,
            (std::vector<float>{1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1.5f}));
}

}  // namespace
}  // namespace strand::serve
