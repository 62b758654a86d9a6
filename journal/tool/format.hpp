// Output formats of the journal tool: an aligned table for people, JSON lines and RFC 4180
// CSV for programs.
#pragma once
#include <iosfwd>
#include <span>
#include <string>

#include <boost/json/object.hpp>

#include "journal/entry.hpp"

namespace rsgate::journal {

enum class output_format { table, json, csv };

[[nodiscard]] std::string to_json_line(const entry& e);  // without newline
// The same object, for embedding in API answers.
[[nodiscard]] boost::json::object to_json_object(const entry& e);
[[nodiscard]] std::string csv_header();
[[nodiscard]] std::string to_csv_row(const entry& e);  // without CRLF
[[nodiscard]] std::string csv_quote(std::string_view field);
// Writes entries as an aligned table (a header line first when `header`).
void write_table(std::ostream& out, std::span<const entry> entries, bool header, bool with_gateway);

}  // namespace rsgate::journal
