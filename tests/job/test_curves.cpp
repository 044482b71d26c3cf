// The metrics file's lines and the page of curves drawn from them (job/curves.hpp): lines
// read back as written, bad lines are named, and the page's structure — a chart per measured
// value, the job's line and one per worker where the workers differ, every point drawn, text
// escaped, a resumed run's points replacing the abandoned ones, no chart before the first
// evaluation. tests/apps/test_curves_browser.sh renders a real job's page in a browser.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../io/io_test_util.hpp"

#include <strand/job/curves.hpp>

namespace strand::job {
namespace {

namespace fs = std::filesystem;
using io::testing::TempDir;

// An evaluation at `step`; test_accuracy -1: a job without a test set.
Metrics eval_at(int64_t step, double loss, double test_accuracy = 0.5) {
  return {.epoch = 1 + step / 10,
          .step = step,
          .loss = loss,
          .train_accuracy = 0.4,
          .test_accuracy = test_accuracy,
          .test_loss = test_accuracy < 0 ? -1 : 1.5,
          .images_per_sec = 1000,
          .seconds = double(step)};
}

// `m` with `workers` workers whose training values differ and whose test values are the same
// unless `tests_differ`.
Metrics with_workers(Metrics m, int workers, bool tests_differ) {
  m.workers = workers;
  for (int k = 0; k < workers; ++k)
    m.per_worker.push_back(WorkerMetrics{.loss = m.loss + 0.1 * k,
                                         .train_accuracy = m.train_accuracy,
                                         .test_accuracy = m.test_accuracy - (tests_differ ? 0.01 * k : 0),
                                         .test_loss = m.test_loss,
                                         .images_per_sec = m.images_per_sec / workers + k});
  return m;
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size()))
    ++n;
  return n;
}

// The <figure> of chart `id`, empty when the page has none.
std::string chart(const std::string& page, const std::string& id) {
  const size_t begin = page.find("<figure class=\"chart\" data-chart=\"" + id + "\"");
  if (begin == std::string::npos) return {};
  return page.substr(begin, page.find("</figure>", begin) - begin);
}

// The points="..." of every polyline in `html`, as pairs counted.
std::vector<size_t> polyline_pairs(const std::string& html) {
  std::vector<size_t> out;
  for (size_t at = html.find(" points=\""); at != std::string::npos; at = html.find(" points=\"", at + 1)) {
    const size_t begin = at + 9, end = html.find('"', begin);
    out.push_back(count(html.substr(begin, end - begin), ","));
  }
  return out;
}

TEST(MetricsLine, ReadsBackWhatItWrites) {
  Metrics m = with_workers(eval_at(12, 0.25), 3, true);
  m.per_worker[1].reset();  // a worker the parameter server dropped
  const Metrics back = parse_metrics_line(metrics_line(m), "here");
  EXPECT_EQ(back.epoch, m.epoch);
  EXPECT_EQ(back.step, 12);
  EXPECT_DOUBLE_EQ(back.loss, 0.25);
  EXPECT_DOUBLE_EQ(back.test_accuracy, 0.5);
  EXPECT_EQ(back.workers, 3);
  ASSERT_EQ(back.per_worker.size(), 3u);
  EXPECT_FALSE(back.per_worker[1]);
  ASSERT_TRUE(back.per_worker[2]);
  EXPECT_DOUBLE_EQ(back.per_worker[2]->loss, m.per_worker[2]->loss);
  EXPECT_DOUBLE_EQ(back.per_worker[2]->images_per_sec, m.per_worker[2]->images_per_sec);
}

TEST(MetricsLine, OneWorkerHasNoPerWorkerFieldAndNanReadsBack) {
  Metrics m = eval_at(3, std::numeric_limits<double>::quiet_NaN());
  const std::string line = metrics_line(m);
  EXPECT_EQ(line.find("per_worker"), std::string::npos) << line;
  EXPECT_TRUE(std::isnan(parse_metrics_line(line, "here").loss));
}

TEST(MetricsLine, AnOlderLineKeepsTheDefaults) {
  const Metrics m = parse_metrics_line(R"({"epoch": 2, "step": 7, "loss": 0.5})", "here");
  EXPECT_EQ(m.step, 7);
  EXPECT_EQ(m.test_accuracy, -1);
  EXPECT_EQ(m.workers, 1);
  EXPECT_TRUE(m.per_worker.empty());
}

TEST(MetricsLine, ABadLineIsAFormatErrorAtItsPlace) {
  EXPECT_STRAND_ERROR(parse_metrics_line("{\"step\": 1", "m.jsonl:3"), Format, "m.jsonl:3",
                      "not a metrics line");
  EXPECT_STRAND_ERROR(parse_metrics_line("[1, 2]", "w"), Format, "w", "not a metrics line");
  EXPECT_STRAND_ERROR(parse_metrics_line(R"({"loss": 1})", "w"), Format, "w", "without 'step'");
  EXPECT_STRAND_ERROR(parse_metrics_line(R"({"step": 1.5})", "w"), Format, "w", "'step' is not an integer");
  EXPECT_STRAND_ERROR(parse_metrics_line(R"({"step": 1, "loss": "low"})", "w"), Format, "w",
                      "'loss' is not a number");
  EXPECT_STRAND_ERROR(parse_metrics_line(R"({"step": 1, "per_worker": [3]})", "w"), Format, "w",
                      "per_worker entry");
}

TEST(MetricsFile, ReadsEveryLineAndNamesABadOne) {
  TempDir dir;
  EXPECT_TRUE(read_metrics_file(dir / "none.jsonl").empty());
  io::testing::write_bytes(dir / "m.jsonl",
                           metrics_line(eval_at(2, 1)) + "\n\n" + metrics_line(eval_at(4, 0.5)) + "\n");
  const std::vector<Metrics> lines = read_metrics_file(dir / "m.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1].step, 4);
  io::testing::write_bytes(dir / "bad.jsonl", metrics_line(eval_at(2, 1)) + "\n{\"step\": 4, \"lo");
  EXPECT_STRAND_ERROR(read_metrics_file(dir / "bad.jsonl"), Format, (dir / "bad.jsonl").string() + ":2",
                      "not a metrics line");
}

TEST(Curves, ThePageIsBesideTheFile) {
  EXPECT_EQ(curves_path("/tmp/run/metrics.jsonl"), fs::path("/tmp/run/metrics.jsonl.html"));
  EXPECT_EQ(curves_path("out.html"), fs::path("out.html.html"));
}

TEST(Curves, NoEvaluationYetDrawsNoChart) {
  const std::string page = render_curves({}, "m.jsonl");
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_NE(page.find("No evaluation yet"), std::string::npos);
  EXPECT_EQ(page.find("<svg"), std::string::npos);
  EXPECT_NE(page.find("</html>"), std::string::npos);
}

TEST(Curves, OnePointIsDrawnAsADot) {
  const std::vector<Metrics> evals = {eval_at(5, 0.75)};
  const std::string page = render_curves(evals, "m.jsonl");
  for (const char* id : {"loss", "train_accuracy", "test_accuracy", "test_loss", "images_per_sec"}) {
    const std::string c = chart(page, id);
    ASSERT_FALSE(c.empty()) << id;
    EXPECT_NE(c.find("data-series=\"1\""), std::string::npos) << c;
    EXPECT_NE(c.find("data-points=\"1\""), std::string::npos) << c;
    EXPECT_EQ(count(c, "<circle"), 1u) << c;
    EXPECT_EQ(polyline_pairs(c), std::vector<size_t>{1}) << c;
  }
  EXPECT_NE(chart(page, "loss").find("<b>0.75</b>"), std::string::npos);  // the last value in the legend
  EXPECT_NE(page.find("1 evaluation;"), std::string::npos);
}

TEST(Curves, EveryPointIsDrawnAndTheStructureBalances) {
  std::vector<Metrics> evals;
  for (int64_t s = 1; s <= 7; ++s) evals.push_back(eval_at(s * 10, 2.0 / double(s)));
  evals[3].loss = std::numeric_limits<double>::infinity();  // a diverged step is left out of its line
  const std::string page = render_curves(evals, "m.jsonl");
  EXPECT_EQ(count(page, "<svg "), 5u);
  EXPECT_EQ(count(page, "</svg>"), 5u);
  EXPECT_EQ(count(page, "<figure "), count(page, "</figure>"));
  EXPECT_EQ(count(page, "<polyline "), count(page, "</polyline>"));
  EXPECT_EQ(polyline_pairs(chart(page, "loss")), std::vector<size_t>{6});
  EXPECT_EQ(polyline_pairs(chart(page, "test_accuracy")), std::vector<size_t>{7});
  EXPECT_EQ(page.find("<circle"), std::string::npos);
  EXPECT_EQ(page.find("<script"), std::string::npos);  // nothing to run, nothing to load
  EXPECT_EQ(count(page, "http"), count(page, "xmlns=\"http://www.w3.org/2000/svg\""));
}

TEST(Curves, NoTestSetNoTestCharts) {
  const std::vector<Metrics> evals = {eval_at(5, 0.75, -1), eval_at(10, 0.5, -1)};
  const std::string page = render_curves(evals, "m.jsonl");
  EXPECT_FALSE(chart(page, "loss").empty());
  EXPECT_TRUE(chart(page, "test_accuracy").empty());
  EXPECT_TRUE(chart(page, "test_loss").empty());
}

TEST(Curves, SeveralWorkersAreLinesOfTheirOwnWhereTheyDiffer) {
  std::vector<Metrics> evals;
  for (int64_t s = 1; s <= 4; ++s) evals.push_back(with_workers(eval_at(s * 5, 1.0 / double(s)), 3, false));
  std::string page = render_curves(evals, "m.jsonl");
  const std::string loss = chart(page, "loss");
  EXPECT_NE(loss.find("data-series=\"4\""), std::string::npos) << loss;
  for (const char* name : {"all workers", "worker 0", "worker 1", "worker 2"})
    EXPECT_NE(loss.find(std::string("data-series=\"") + name + "\" data-points=\"4\""), std::string::npos)
        << name << "\n"
        << loss;
  EXPECT_EQ(polyline_pairs(loss), (std::vector<size_t>{4, 4, 4, 4}));
  EXPECT_NE(chart(page, "images_per_sec").find("data-series=\"4\""), std::string::npos);
  // Equal for every worker (allreduce ranks share the parameters): one line.
  const std::string same = chart(page, "test_accuracy");
  EXPECT_NE(same.find("data-series=\"1\""), std::string::npos) << same;
  EXPECT_EQ(same.find("worker 0"), std::string::npos) << same;

  // Workers whose models differ (an async parameter server) evaluate differently: a line each,
  // without the job's, which is only worker 0's.
  for (Metrics& m : evals) m = with_workers(eval_at(m.step, m.loss), 3, true);
  page = render_curves(evals, "m.jsonl");
  const std::string apart = chart(page, "test_accuracy");
  EXPECT_NE(apart.find("data-series=\"3\""), std::string::npos) << apart;
  EXPECT_EQ(apart.find("all workers"), std::string::npos) << apart;

  // A worker dropped after the second evaluation: its line ends there.
  for (size_t i = 2; i < evals.size(); ++i) evals[i].per_worker[2].reset();
  page = render_curves(evals, "m.jsonl");
  EXPECT_NE(chart(page, "loss").find("data-series=\"worker 2\" data-points=\"2\""), std::string::npos);
}

TEST(Curves, ResumedPointsReplaceTheAbandonedOnes) {
  // A run evaluated at steps 2, 4 and 6, died, and resumed from a checkpoint at step 3.
  const std::vector<Metrics> evals = {eval_at(2, 1.0), eval_at(4, 0.8), eval_at(6, 0.6), eval_at(4, 0.7),
                                      eval_at(6, 0.5)};
  const std::string page = render_curves(evals, "m.jsonl");
  EXPECT_NE(page.find("data-evaluations=\"3\""), std::string::npos);
  EXPECT_EQ(polyline_pairs(chart(page, "loss")), std::vector<size_t>{3});
  EXPECT_NE(chart(page, "loss").find("<b>0.5</b>"), std::string::npos);
}

TEST(Curves, TextIsEscaped) {
  const std::vector<Metrics> evals = {eval_at(5, 0.75)};
  const std::string page = render_curves(evals, "<script>alert('x')</script> & \"m\".jsonl");
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_NE(page.find("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;m&quot;.jsonl"),
            std::string::npos);
}

TEST(CurvesPage, WrittenAtOnceAndRewrittenAtEachEvaluation) {
  TempDir dir;
  const fs::path metrics = dir / "run.jsonl";
  CurvesPage page(metrics, {eval_at(2, 1.0)});  // a resumed job's earlier line
  EXPECT_EQ(page.path(), dir / "run.jsonl.html");
  std::string html = io::testing::read_bytes(page.path());
  EXPECT_NE(html.find("Training curves: run.jsonl"), std::string::npos);
  EXPECT_NE(html.find("data-evaluations=\"1\""), std::string::npos);
  page.add(eval_at(4, 0.5));
  html = io::testing::read_bytes(page.path());
  EXPECT_NE(html.find("data-evaluations=\"2\""), std::string::npos);
  EXPECT_EQ(polyline_pairs(chart(html, "loss")), std::vector<size_t>{2});
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()),
            1);  // no temporaries
}

}  // namespace
}  // namespace strand::job
