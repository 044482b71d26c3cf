// Stamps a JSON object as a benchmark record (io/record.hpp) of this build and host, for
// results written by scripts (bench/gpu/check): the one writer, reached from outside C++.
//   stamp_record IN OUT [--gpu MODEL] [--threads N] [-- COMMAND...]
// IN may be OUT. The command defaults to stamp_record's own; a script passes its own.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <string>
#include <vector>

#include <strand/core/error.hpp>
#include <strand/io/record.hpp>

int main(int argc, char** argv) {
  try {
    std::vector<std::string> paths;
    strand::io::StampOptions options;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        STRAND_CHECK(i + 1 < argc, Usage, a + " needs a value", "stamp_record");
        return argv[++i];
      };
      if (a == "--gpu") {
        options.gpu = value();
        options.on_gpu = true;
      } else if (a == "--threads") {
        options.threads = std::atoi(value().c_str());
      } else if (a == "--") {
        options.command.assign(argv + i + 1, argv + argc);
        break;
      } else {
        paths.push_back(a);
      }
    }
    STRAND_CHECK(paths.size() == 2, Usage,
                 "usage: stamp_record IN OUT [--gpu MODEL] [--threads N] [-- COMMAND...]", "stamp_record");
    std::ifstream in(paths[0]);
    STRAND_CHECK(in.good(), Io, "cannot read " + paths[0], "stamp_record");
    const nlohmann::json body = nlohmann::json::parse(in);
    in.close();
    strand::io::write_record(paths[1], body, strand::io::make_stamp(options));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stamp_record: %s\n", e.what());
    return 1;
  }
  return 0;
}
