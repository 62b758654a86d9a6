// What the service's files share (service.hpp): the JSON shape of a session, answers, the
// fields of journal entries about a session. Private to gateway/service*.cpp.
#pragma once
#include <boost/json/object.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "gateway/http/api.hpp"
#include "gateway/sessions.hpp"
#include "journal/entry.hpp"
#include "journal/writer.hpp"
#include "protocol/messages.hpp"

namespace rsgate::gateway {
class query_params;
}

namespace rsgate::gateway::detail {

inline constexpr micros kSecond = 1'000'000;

[[nodiscard]] http_response ok_json(int status, const boost::json::value& v);
[[nodiscard]] http_response from_refusal(const refusal& r);
[[nodiscard]] http_response journal_unavailable();
// The answer when the journal did not take an action's record: 503, or 500 for an entry the
// gateway built wrong.
[[nodiscard]] http_response failed_record(const journal::append_result& r);
// The session an entry is about: its id, PMR and machine.
void about(journal::entry& e, const session& s);
[[nodiscard]] boost::json::object session_json(const session& s);
// NOTICE `grant` for `g` (docs/protocol.md §4.8), as a grant and a returning tunnel tell it.
[[nodiscard]] tunnel::notice grant_notice(const grant& g);
// "203.0.113.7:51234" -> "203.0.113.7" (limits count per address, not per connection).
[[nodiscard]] std::string address_of(const std::string& remote);
// Query parameter `name` as a user name, nullopt when absent; bad_input (400) when it is not a
// valid user name.
[[nodiscard]] std::optional<std::string> user_param(const query_params& q, std::string_view name);

}  // namespace rsgate::gateway::detail
