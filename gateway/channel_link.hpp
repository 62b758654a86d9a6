// One open channel as both of its ends in the gateway see it: the tunnel connection (frames
// to and from the agent) and the stream endpoint (the representative's WebSocket). They may
// run on different threads; this object is the only state they share, guarded by its mutex.
// The protocol state of the channel is `flow` (protocol/channel_flow.hpp, the same machine
// the agent runs): the tunnel side feeds it the agent's frames and carries out its verdicts,
// the stream side takes credit from it, sends EOF through it and tells it what it handed on.
// Bounded: at most the window we advertised to the agent waits in `inbox` (DATA beyond it is
// a protocol error), and the stream side sends to the agent only within the agent's window.
//
// Wake-ups are coalesced: the stream side says it is about to wait (`stream_waiting`, set in
// the same critical section in which it found nothing to do), and only then does the tunnel
// side hand a wake-up to the stream side's executor. A busy channel therefore crosses threads
// once per idle period, not once per frame.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "core/clock.hpp"
#include "core/encoding.hpp"
#include "protocol/channel_flow.hpp"

namespace rsgate::gateway {

class tunnel_link;

struct channel_link {
  std::mutex mu;
  std::uint32_t id = 0;          // the channel's number in its tunnel
  std::uint64_t serial = 0;      // unique in the gateway; set by the service once it is open
  std::weak_ptr<tunnel_link> tunnel;  // the tunnel it runs in (set by that tunnel)
  std::string session_id, user, scope, access_type;
  micros opened_at = 0;
  // An `ask` scope (docs/protocol.md §8.1): the agent answers within `answer_seconds` (the
  // customer's approval_seconds plus the usual 20 s), and its answer carries the customer's
  // decision, kept here (under `mu`) until the stream side journals it (channel.approval).
  bool asks = false;
  int answer_seconds = 20;
  std::string decision, decided_by;
  // Windows, credit, EOF each way and CLOSE; the gateway opened the channel.
  tunnel::channel_flow flow{tunnel::channel_flow::role::opener};
  std::deque<bytes> inbox;                        // DATA from the agent that `flow` delivered
  std::shared_ptr<tunnel::window_budget> budget;  // the tunnel's, for the window's growth
  // life: `closed` is set first by whichever side ends the channel (the stream side before
  // it asks the tunnel side to send CLOSE), so it may precede flow.closed()
  bool closed = false;      // by either side; `reason` says why
  std::string reason;
  std::int64_t bytes_to_agent = 0;
  std::int64_t bytes_from_agent = 0;
  // Set (under `mu`) by the stream side just before it waits; cleared by wake().
  bool stream_waiting = false;
  // Wakes the stream side (posts to its executor); set by the stream side, called unlocked.
  std::function<void()> wake_stream;

  // Marks the channel closed for `why` unless it is closed already (the first reason wins);
  // true if this call closed it. The stream side calls it before it asks the tunnel side (on
  // another strand) to close the channel, so that the reason is there when the stream side
  // journals channel.close.
  bool close_for(const std::string& why) {
    std::lock_guard lock(mu);
    if (closed) return false;
    closed = true;
    reason = why;
    return true;
  }

  // Called by the tunnel side after it changed anything above.
  void wake() {
    std::function<void()> w;
    {
      std::lock_guard lock(mu);
      if (!stream_waiting) return;
      stream_waiting = false;
      w = wake_stream;
    }
    if (w) w();
  }
};

}  // namespace rsgate::gateway
