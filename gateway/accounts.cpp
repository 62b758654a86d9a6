// See accounts.hpp.
#include "gateway/accounts.hpp"

#include <fmt/format.h>
#include <qrencode.h>

#include <memory>
#include <stdexcept>

#include "auth/session_key.hpp"
#include "auth/totp.hpp"
#include "journal/keys.hpp"

namespace rsgate::gateway {
namespace {

struct qr_deleter {
  void operator()(QRcode* q) const { QRcode_free(q); }
};
using qr_ptr = std::unique_ptr<QRcode, qr_deleter>;

constexpr int kQuiet = 2;  // modules of light border around the code

qr_ptr encode(std::string_view text) {
  std::string s(text);  // NUL-terminated for libqrencode
  qr_ptr q(QRcode_encodeString8bit(s.c_str(), 0, QR_ECLEVEL_M));
  if (!q) throw std::runtime_error("the QR code could not be made");
  return q;
}

// Whether module (x, y) is dark; outside the code (the quiet zone) it is light.
bool dark(const QRcode& q, int x, int y) {
  if (x < 0 || y < 0 || x >= q.width || y >= q.width) return false;
  return (q.data[y * q.width + x] & 1) != 0;
}

}  // namespace

bool role_needs_totp(std::string_view role) { return role == "representative" || role == "admin"; }

prepared_enrolment prepare_totp(const data_layout& layout, const std::string& user, const std::string& issuer) {
  const auto secret = auth::new_totp_secret();
  const auto mk = master_key::load_or_create(layout.keys() / "master.key");
  const auto hmac = journal::hmac_key::load(layout.hmac_key());
  prepared_enrolment out;
  out.shown.uri = auth::totp_uri(issuer, user, secret);
  for (int i = 0; i < kRecoveryCodes; ++i) {
    out.shown.recovery_codes.push_back(auth::generate_session_key());
    out.code_hashes.push_back(hmac.hash_of(*auth::normalize_session_key(out.shown.recovery_codes.back())));
  }
  out.secret_sealed = mk.seal(secret);
  return out;
}

totp_enrolment enrol_totp(state_store& st, const data_layout& layout, const std::string& user,
                          const std::string& issuer, micros now) {
  auto p = prepare_totp(layout, user, issuer);
  st.set_totp(user, p.secret_sealed, p.code_hashes, now);
  return p.shown;
}

std::string qr_terminal(std::string_view text) {
  auto q = encode(text);
  std::string out;
  // Light is a full block, dark a space: dark modules on a light background whatever the
  // terminal's colours. Two rows of modules per line: upper and lower half blocks.
  for (int y = -kQuiet; y < q->width + kQuiet; y += 2) {
    for (int x = -kQuiet; x < q->width + kQuiet; ++x) {
      const bool top = dark(*q, x, y), bottom = dark(*q, x, y + 1);
      out += top ? (bottom ? " " : "\u2584") : (bottom ? "\u2580" : "\u2588");
    }
    out += '\n';
  }
  return out;
}

std::string qr_svg(std::string_view text) {
  auto q = encode(text);
  const int size = q->width + 2 * kQuiet;
  std::string path;
  for (int y = 0; y < q->width; ++y)
    for (int x = 0; x < q->width; ++x)
      if (dark(*q, x, y)) path += fmt::format("M{} {}h1v1h-1z", x + kQuiet, y + kQuiet);
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {0} {0}\" shape-rendering=\"crispEdges\">"
      "<rect width=\"{0}\" height=\"{0}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{1}\"/></svg>",
      size, path);
}

}  // namespace rsgate::gateway
