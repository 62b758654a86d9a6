// Receipts built from journal entries (journal/receipt.hpp) and read back by the customer's
// side (protocol/receipt.hpp): what the body says for each kind of entry, the signature over
// the prefixed body and what breaks it, the lists cut to fit a RECEIPT frame, and the strict
// reading of a stored file.
#include "journal/receipt.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include "protocol/messages.hpp"
#include "protocol/receipt.hpp"

using namespace rsgate;
using namespace rsgate::journal;
namespace json = boost::json;

namespace {

entry make(std::int64_t seq, std::string kind, std::string actor, std::string detail, outcome o = outcome::ok) {
  entry e;
  e.seq = seq;
  e.ts = 1'700'000'000'000'000 + seq * 1'000'000;
  e.gateway = "gw1";
  e.kind = std::move(kind);
  e.actor = std::move(actor);
  e.session_id = "S-1";
  e.machine = "9009-42A*7801234";
  e.result = o;
  e.detail = std::move(detail);
  return e;
}

receipt_input story(std::size_t channels = 1) {
  receipt_input in;
  in.gateway = "gw1";
  in.head_seq = 900;
  in.head_hash = std::string(64, 'a');
  in.issued_at = 1'800'000'000'000'000;
  std::int64_t seq = 1;
  in.entries.push_back(make(seq++, "tunnel.auth", "9009-42A*7801234", R"({"scopes":["hmc","vios"]})"));
  in.entries.push_back(make(seq++, "session.key_issued", "customer", "{}"));
  auto attach = make(seq++, "session.attach", "alice", R"({"by":"key"})");
  attach.pmr = "TS000000001";
  in.entries.push_back(attach);
  in.entries.push_back(make(seq++, "session.attach", "mallory", R"({"reason":"locked"})", outcome::denied));
  in.entries.push_back(make(seq++, "session.grant", "alice",
                            R"({"grant":"G1","user":"dave","scopes":["hmc"],"access_types":["ssh"],"expires_at":null})"));
  in.entries.push_back(make(seq++, "session.revoke", "alice", R"({"grant":"G1","user":"dave","reason":"owner"})"));
  for (std::size_t i = 0; i < channels; ++i) {
    auto id = std::to_string(i % 3 + 1);  // ids repeat, as across a tunnel's reconnects
    in.entries.push_back(make(seq++, "channel.approval", "customer",
                              R"({"channel":)" + id + R"(,"decision":"approved","by":"operator"})"));
    auto close = make(seq++, "channel.close", "alice",
                      R"({"channel":)" + id + R"(,"bytes_to_agent":10,"bytes_from_agent":20,"duration_ms":30,"reason":"closed by its user"})");
    close.scope = "hmc";
    close.access_type = "ssh";
    in.entries.push_back(close);
  }
  in.entries.push_back(make(seq++, "session.transfer", "alice", R"({"from":"alice","to":"bob"})"));
  in.entries.push_back(make(seq++, "session.end", "customer", R"({"reason":"customer"})"));
  return in;
}

}  // namespace

TEST_CASE("a receipt's body tells the session's story from its entries") {
  auto text = build_receipt_body(story());
  auto b = json::parse(text).as_object();
  CHECK(b["format"] == "rsgate-receipt/1");
  CHECK(b["gateway"] == "gw1");
  CHECK(b["session"] == "S-1");
  CHECK(b["machine"] == "9009-42A*7801234");
  CHECK(json::serialize(b["scopes"]) == R"(["hmc","vios"])");
  CHECK(json::serialize(b["pmrs"]) == R"(["TS000000001"])");
  CHECK(b["refusals"] == 1);
  CHECK(b["keys_issued"] == 1);
  CHECK(b["ended_by"] == "customer");
  auto& owners = b["owners"].as_array();
  REQUIRE(owners.size() == 2);
  CHECK(owners[0].as_object().at("user") == "alice");
  CHECK(owners[1].as_object().at("user") == "bob");
  CHECK(owners[1].as_object().at("from") == "alice");
  auto& g = b["grants"].as_array().at(0).as_object();
  CHECK(g.at("user") == "dave");
  CHECK(g.at("revoked_by") == "alice");
  CHECK(g.at("expires_at").is_null());
  auto& c = b["channels"].as_array().at(0).as_object();
  CHECK(c.at("bytes_from_agent") == 20);
  CHECK(c.at("approval").as_object().at("by") == "operator");
  CHECK(json::serialize(b["journal"]) == R"({"seq":900,"hash":")" + std::string(64, 'a') + R"("})");
  CHECK(b["truncated"] == false);

  std::string why;
  auto parsed = tunnel::parse_receipt_body(text, why);
  INFO(why);
  REQUIRE(parsed);
  CHECK(parsed->journal_seq == 900);
  CHECK(parsed->owners == std::vector<std::string>{"alice", "bob"});
  CHECK(parsed->channels == 1);
}

TEST_CASE("strings from details are escaped into printable ASCII") {
  auto in = story();
  in.entries[4].detail = R"({"grant":"G1","user":"d\u00e9ve\u0007","scopes":[],"access_types":[],"expires_at":null})";
  auto b = json::parse(build_receipt_body(in)).as_object();
  CHECK(b["grants"].as_array().at(0).as_object().at("user") == "d\\xc3\\xa9ve\\x07");
}

TEST_CASE("the lists are cut until the signed RECEIPT fits a control frame, the totals keep the counts") {
  auto text = build_receipt_body(story(400));
  auto b = json::parse(text).as_object();
  CHECK(b["truncated"] == true);
  CHECK(b["totals"].as_object().at("channels") == 400);
  CHECK(b["channels"].as_array().size() < 400);
  CHECK(!b["channels"].as_array().empty());
  auto r = sign_receipt(text, signing_key::generate());
  CHECK(tunnel::to_payload(r).size() <= tunnel::kMaxControlPayload);
  std::string why;
  CHECK(tunnel::parse_receipt(tunnel::to_payload(r), why));
}

TEST_CASE("the signature covers the prefixed body: any change breaks it, another key does not verify it") {
  auto key = signing_key::generate();
  auto r = sign_receipt(build_receipt_body(story()), key);
  CHECK(r.key_id == key.key_id());
  CHECK(tunnel::receipt_key_id(key.pub()) == key.key_id());
  CHECK(tunnel::verify_receipt(r, key.pub()));
  // Not a checkpoint's statement: the same key over the body alone does not verify it.
  auto bare = r;
  bare.signature = key.sign_hex(std::span(reinterpret_cast<const std::uint8_t*>(r.receipt.data()), r.receipt.size()));
  CHECK_FALSE(tunnel::verify_receipt(bare, key.pub()));
  for (std::size_t i = 0; i < r.receipt.size(); i += 7) {
    auto t = r;
    t.receipt[i] = static_cast<char>(t.receipt[i] ^ 1);
    CHECK_FALSE(tunnel::verify_receipt(t, key.pub()));
  }
  auto t = r;
  t.signature[10] = t.signature[10] == '0' ? '1' : '0';
  CHECK_FALSE(tunnel::verify_receipt(t, key.pub()));
  CHECK_FALSE(tunnel::verify_receipt(r, signing_key::generate().pub()));
}

TEST_CASE("a stored receipt file is read strictly") {
  auto r = sign_receipt(build_receipt_body(story()), signing_key::generate());
  r.profile = "/home/op/agent.toml";
  std::string why;
  auto back = tunnel::parse_receipt_file(tunnel::format_receipt_file(r), why);
  REQUIRE(back);
  CHECK(back->receipt == r.receipt);
  CHECK(back->profile == r.profile);
  for (const std::string& bad : std::vector<std::string>{R"({})", R"([])", "", R"({"receipt":"{}","signature":"00","key_id":"0000000000000000"})",
                   R"({"receipt":"{}","signature":")" + std::string(128, '0') + R"(","key_id":"0000000000000000","x":1})",
                   R"({"receipt":"{}","signature":")" + std::string(128, 'g') + R"(","key_id":"0000000000000000"})"}) {
    INFO(bad);
    CHECK_FALSE(tunnel::parse_receipt_file(bad, why));
    CHECK_FALSE(why.empty());
  }
  CHECK_FALSE(tunnel::parse_receipt_file(std::string(tunnel::kMaxReceiptFileBytes + 1, ' '), why));
  // A body without its anchor is not a receipt's.
  CHECK_FALSE(tunnel::parse_receipt_body(R"({"format":"rsgate-receipt/1"})", why));
  CHECK_THAT(why, Catch::Contains("gateway is missing"));
  CHECK_FALSE(tunnel::parse_receipt_key(std::string(63, 'a')));
  CHECK(tunnel::parse_receipt_key(std::string(64, 'A')));
}
