// Small text helpers the parsers of several modules share: trimming, joining, numbers in
// messages, and the names of an enum's values (one table per enum, parsed and printed by the
// same two functions).
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <strand/core/error.hpp>

namespace strand {

// `s` without leading and trailing ASCII whitespace (space, \t, \n, \v, \f, \r).
constexpr std::string_view trim(std::string_view s) {
  constexpr std::string_view space = " \t\n\v\f\r";
  const size_t first = s.find_first_not_of(space);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(space) - first + 1);
}

// The items with `sep` between them: "a, b, c".
inline std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) (out += i ? sep : "") += items[i];
  return out;
}

// `v` in the shortest usual form ("0.25", "1e-05"), as %g prints it: for numbers in messages.
inline std::string compact(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

template <class E>
struct Name {
  E value;
  std::string_view text;
};

// The value `text` names; Usage error "unknown WHAT 'TEXT' (choose a, b or c)" at `where`.
template <class E, size_t N>
E parse_name(const Name<E> (&names)[N], std::string_view text, std::string_view what, std::string where) {
  for (const Name<E>& n : names)
    if (n.text == text) return n.value;
  std::string choices;
  for (size_t i = 0; i < N; ++i)
    choices += std::string(i == 0 ? "" : i + 1 == N ? " or " : ", ") + std::string(names[i].text);
  throw Error(ErrorKind::Usage,
              "unknown " + std::string(what) + " '" + std::string(text) + "' (choose " + choices + ")",
              std::move(where));
}

// The name of `value` ("?" for a value outside the table, e.g. cast from a corrupt number).
template <class E, size_t N>
constexpr std::string_view name_of(const Name<E> (&names)[N], E value) {
  for (const Name<E>& n : names)
    if (n.value == value) return n.text;
  return "?";
}

}  // namespace strand
