// SageMaker script-mode contract for `strand train`: flags left out on the command line come
// from the environment — --model-dir from SM_MODEL_DIR, --data from SM_CHANNEL_TRAINING, and
// hyperparameters from the JSON object in SM_HPS (keys are flag names; '_' and '-' are the
// same). An unknown hyperparameter is an error, as an unknown flag is.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace strand::cli {

// Applies SM_HPS (if set) to the options of `cmd` that the command line did not give.
void apply_sagemaker_hyperparameters(CLI::App& cmd, const char* sm_hps_json);

}  // namespace strand::cli
