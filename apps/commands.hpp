// The strand CLI's sub-commands. Each add_*_command registers its flags on the app and a
// callback that runs it; errors are thrown as strand::Error and reported by main().
#pragma once

#include <CLI/CLI.hpp>

namespace strand::cli {

void add_train_command(CLI::App& app);
void add_launch_command(CLI::App& app);  // strand launch (apps/cmd_launch.cpp)
void add_eval_command(CLI::App& app);
void add_data_command(CLI::App& app);
void add_model_command(CLI::App& app);  // model summary (apps/cmd_model.cpp)
void add_bench_command(CLI::App& app);
// serve, deploy, predict, endpoint (apps/cmd_serve.cpp)
void add_serve_commands(CLI::App& app);
// bench serve, registered by add_bench_command on its `bench` sub-command
void add_bench_serve_command(CLI::App& bench);
// bench allreduce (apps/cmd_bench_allreduce.cpp), registered by add_bench_command
void add_bench_allreduce_command(CLI::App& bench);
// bench ps (apps/cmd_bench_ps.cpp), registered by add_bench_command
void add_bench_ps_command(CLI::App& bench);

}  // namespace strand::cli
