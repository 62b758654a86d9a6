// Output formats of the journal tool: an aligned table for people, JSON lines and RFC 4180
// CSV for programs (docs/journal.md §15 says what each does with control characters).
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
// An entry back from that object (as the API sends it), for showing it as a table or CSV. The
// text fields are as the object has them (control characters already escaped); a missing or
// mistyped field stays empty.
[[nodiscard]] entry from_json_object(const boost::json::object& o);
[[nodiscard]] std::string csv_header();
[[nodiscard]] std::string to_csv_row(const entry& e);  // without CRLF
[[nodiscard]] std::string csv_quote(std::string_view field);
// One table cell as write_table shows it: control characters (C0, DEL, C1), bytes that are
// not UTF-8 and bidirectional controls as '?', cut to `max_chars` characters (0: no limit)
// with "...", "-" when empty.
[[nodiscard]] std::string table_cell(std::string_view field, std::size_t max_chars = 0);
// Writes entries as an aligned table (a header line first when `header`).
void write_table(std::ostream& out, std::span<const entry> entries, bool header, bool with_gateway);

}  // namespace rsgate::journal
