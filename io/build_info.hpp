// What was built: strand's version and `git describe --always --dirty` of the source tree
// at build time ("unknown" outside git). Generated from build_info.cpp.in; read through
// record.hpp's stamp.
#pragma once

namespace strand::io {

extern const char* const kStrandVersion;
extern const char* const kStrandCommit;

}  // namespace strand::io
