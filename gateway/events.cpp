// See events.hpp.
#include "gateway/events.hpp"

#include <boost/json.hpp>

namespace rsgate::gateway {
namespace json = boost::json;

namespace {

std::string end_frame(std::string_view why) {
  return event_hub::frame("end", json::serialize(json::object{{"reason", why}}));
}

}  // namespace

// --- one subscription ---

event_subscription::batch event_subscription::take() {
  std::lock_guard lock(mu_);
  if (ended_) return {"", true};
  batch b{std::move(queued_), closing_};
  queued_.clear();
  ended_ = closing_;
  return b;
}

void event_subscription::set_wake(std::function<void()> wake) {
  {
    std::lock_guard lock(mu_);
    wake_ = std::move(wake);
  }
  this->wake();  // anything queued before the stream side waited
}

void event_subscription::wake() {
  std::function<void()> w;
  {
    std::lock_guard lock(mu_);
    w = wake_;
  }
  if (w) w();
}

void event_subscription::queue_initial(const std::vector<std::string>& frames) {
  std::lock_guard lock(mu_);
  for (auto& f : frames) queued_ += f;
}

void event_subscription::queue(const std::string& f) {
  {
    std::lock_guard lock(mu_);
    if (closing_) return;
    if (queued_.size() + f.size() > max_bytes_) {
      // The subscriber does not keep up: what it missed cannot be told in the bound, so its
      // stream ends and it starts again from the current state.
      queued_ = end_frame(kEventsOverflow);
      closing_ = true;
    } else {
      queued_ += f;
    }
  }
  wake();
}

void event_subscription::close(std::string_view why) {
  {
    std::lock_guard lock(mu_);
    if (closing_) return;
    queued_ += end_frame(why);
    closing_ = true;
  }
  wake();
}

bool event_subscription::closed() const {
  std::lock_guard lock(mu_);
  return closing_;
}

// --- the hub ---

event_hub::event_hub() : event_hub(limits{}) {}

std::string event_hub::frame(std::string_view type, std::string_view data) {
  std::string f;
  f.reserve(type.size() + data.size() + 16);
  f.append("event: ").append(type).append("\ndata: ").append(data).append("\n\n");
  return f;
}

std::shared_ptr<event_subscription> event_hub::subscribe(event_subscription::owner who,
                                                         const std::vector<std::string>& initial) {
  std::lock_guard lock(mu_);
  std::size_t mine = 0;
  for (auto& s : subs_) mine += s->who().user == who.user ? 1 : 0;
  if (subs_.size() >= limits_.max_subscriptions || mine >= limits_.max_per_user) return nullptr;
  auto s = std::make_shared<event_subscription>(std::move(who), limits_.queue_bytes);
  s->queue_initial(initial);
  subs_.push_back(s);
  return s;
}

void event_hub::unsubscribe(const std::shared_ptr<event_subscription>& s) {
  std::lock_guard lock(mu_);
  std::erase(subs_, s);
}

void event_hub::publish_session(const std::string& id, const std::string& data, const std::set<std::string>& audience,
                                bool ended) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(id);
  if (it != sessions_.end() && it->second.json == data && it->second.audience == audience) return;
  std::set<std::string> gone;
  if (it != sessions_.end())
    for (auto& u : it->second.audience)
      if (!audience.contains(u)) gone.insert(u);
  if (!subs_.empty()) {
    const auto changed = frame("session", data);
    const auto removed = frame("session.removed", json::serialize(json::object{{"id", id}}));
    for (auto& s : subs_) {
      if (audience.contains(s->who().user)) s->queue(changed);
      else if (gone.contains(s->who().user)) s->queue(removed);
    }
  }
  if (ended) {
    if (it != sessions_.end()) sessions_.erase(it);
  } else {
    sessions_[id] = published{data, audience};
  }
}

void event_hub::publish_machine(const std::string& data) {
  std::lock_guard lock(mu_);
  if (subs_.empty()) return;
  const auto f = frame("machine", data);
  for (auto& s : subs_)
    if (s->who().user_role == role::admin) s->queue(f);
}

void event_hub::close_all(std::string_view why) {
  close_if([why](const event_subscription::owner&) { return why; });
}

void event_hub::close_user(const std::string& user, std::string_view why) {
  close_if([&](const event_subscription::owner& o) { return o.user == user ? why : std::string_view(); });
}

void event_hub::close_login(const std::string& login_hash, std::string_view why) {
  if (login_hash.empty()) return;
  close_if([&](const event_subscription::owner& o) { return o.login_hash == login_hash ? why : std::string_view(); });
}

void event_hub::close_token(const std::string& token_hash, std::string_view why) {
  if (token_hash.empty()) return;
  close_if([&](const event_subscription::owner& o) { return o.token_hash == token_hash ? why : std::string_view(); });
}

void event_hub::close_if(const std::function<std::string_view(const event_subscription::owner&)>& why) {
  std::vector<std::shared_ptr<event_subscription>> open;
  {
    std::lock_guard lock(mu_);
    for (auto& s : subs_)
      if (!s->closed()) open.push_back(s);
  }
  for (auto& s : open)
    if (auto reason = why(s->who()); !reason.empty()) s->close(reason);
}

std::size_t event_hub::subscriptions() const {
  std::lock_guard lock(mu_);
  return subs_.size();
}

}  // namespace rsgate::gateway
