#include "apps/sagemaker.hpp"

#include <nlohmann/json.hpp>

#include <strand/core/error.hpp>

namespace strand::cli {

namespace {
std::string flag_name(std::string key) {
  for (char& c : key)
    if (c == '_') c = '-';
  if (key == "learning-rate") key = "lr";  // the name SageMaker's examples use
  return key;
}

std::string as_text(const nlohmann::json& v, const std::string& key) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<long long>());
  if (v.is_number()) {
    std::ostringstream s;
    s.precision(17);
    s << v.get<double>();
    return s.str();
  }
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  throw Error(ErrorKind::Usage, "hyperparameter '" + key + "' must be a string, number or boolean", "SM_HPS");
}
}  // namespace

void apply_sagemaker_hyperparameters(CLI::App& cmd, const char* sm_hps_json) {
  if (!sm_hps_json || !*sm_hps_json) return;
  nlohmann::json hps;
  try {
    hps = nlohmann::json::parse(sm_hps_json);
  } catch (const std::exception& e) {
    throw Error(ErrorKind::Usage, std::string("not valid JSON: ") + e.what(), "SM_HPS");
  }
  STRAND_CHECK(hps.is_object(), Usage, "must be a JSON object of hyperparameters", "SM_HPS");
  for (const auto& [key, value] : hps.items()) {
    const std::string name = flag_name(key);
    CLI::Option* opt = cmd.get_option_no_throw("--" + name);
    STRAND_CHECK(
        opt != nullptr, Usage,
        "unknown hyperparameter '" + key + "' (see `strand " + cmd.get_name() + " --help` for the flags)",
        "SM_HPS");
    if (opt->count() > 0) continue;  // the command line wins
    const std::string text = as_text(value, key);
    if (opt->get_type_size() == 0) {  // a flag: true sets it, false leaves it off
      if (text == "true" || text == "1")
        opt->add_result("true");
      else if (text != "false" && text != "0")
        throw Error(ErrorKind::Usage, "hyperparameter '" + key + "' is a switch: use true or false",
                    "SM_HPS");
      else
        continue;
    } else {
      opt->add_result(text);
    }
    try {
      opt->run_callback();
    } catch (const CLI::ParseError& e) {
      throw Error(ErrorKind::Usage, "hyperparameter '" + key + "': " + e.what(), "SM_HPS");
    }
  }
}

}  // namespace strand::cli
