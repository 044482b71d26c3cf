// strand — train, evaluate and benchmark CNNs. The only place that parses argv.
#include <iostream>

#include <strand/core/backend.hpp>
#include <strand/core/error.hpp>
#include "apps/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"strand: distributed CNN training and serving engine", "strand"};
  app.set_version_flag("--version", std::string("strand ") + STRAND_VERSION +
                                        (strand::cuda_built() ? " (with the CUDA backend)" : " (CPU only)"));
  app.require_subcommand(1);
  app.fallthrough(false);
  strand::cli::add_train_command(app);
  strand::cli::add_launch_command(app);
  strand::cli::add_eval_command(app);
  strand::cli::add_data_command(app);
  strand::cli::add_model_command(app);
  strand::cli::add_bench_command(app);
  strand::cli::add_serve_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  } catch (const strand::Error& e) {
    std::cerr << "strand: " << e.what() << '\n';
    return e.kind() == strand::ErrorKind::Usage ? 2 : 1;
  } catch (const std::exception& e) {
    std::cerr << "strand: unexpected error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
