// Fuzz target for what the online journal tool reads from a gateway's API (rsgate journal
// --gateway: journal/tool/format.hpp from_json_object): any JSON object becomes an entry
// that the table, CSV and JSON-lines writers can print without crashing.
#include <boost/json/parse.hpp>
#include <sstream>
#include <vector>

#include "journal/tool/format.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto text = rsgate::fuzz::as_text(data, size);
  boost::system::error_code ec;
  auto v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return 0;
  auto e = rsgate::journal::from_json_object(v.as_object());
  std::vector<rsgate::journal::entry> one{e};
  std::ostringstream out;
  rsgate::journal::write_table(out, one, true, true);
  (void)rsgate::journal::to_csv_row(e);
  (void)rsgate::journal::to_json_line(e);
  return 0;
}
