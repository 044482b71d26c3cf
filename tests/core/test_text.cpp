// core/text.hpp: trimming, and the enum-name tables every typed option parses through.
#include <gtest/gtest.h>

#include <strand/core/error.hpp>
#include <strand/core/text.hpp>

namespace strand {
namespace {

TEST(Text, TrimDropsAsciiWhitespaceAtBothEnds) {
  EXPECT_EQ(trim("  a b\t\r\n"), "a b");
  EXPECT_EQ(trim("\v\fx"), "x");
  EXPECT_EQ(trim(" \t "), "");
  EXPECT_EQ(trim(""), "");
  EXPECT_EQ(trim("x"), "x");
}

enum class Color { Red, Green, Blue };
constexpr Name<Color> kColors[] = {{Color::Red, "red"}, {Color::Green, "green"}, {Color::Blue, "blue"}};

TEST(Text, NamesParseAndPrintThroughOneTable) {
  EXPECT_EQ(parse_name(kColors, "green", "color", "test"), Color::Green);
  EXPECT_EQ(name_of(kColors, Color::Blue), "blue");
  EXPECT_EQ(name_of(kColors, Color(7)), "?");  // a corrupt number
}

TEST(Text, AnUnknownNameIsAUsageErrorListingTheChoices) {
  for (const char* bad : {"", "Red", "red ", "purple"}) {
    try {
      parse_name(kColors, bad, "color", "--color");
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Usage);
      EXPECT_EQ(e.where(), "--color");
      EXPECT_EQ(e.message(), "unknown color '" + std::string(bad) + "' (choose red, green or blue)");
    }
  }
}

}  // namespace
}  // namespace strand
