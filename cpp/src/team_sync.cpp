#include "team_sync.hpp"

#include <cstdlib>
#include <string>
#include <thread>

#include "thread_pool.hpp"  // now_ns, cpu_relax

namespace pylstm {
namespace {

// Spin `spins` checks, then yield the CPU between checks (as the pool's other waits).
inline void pause(int i, int spins) {
  if (i < spins) {
    cpu_relax();
  } else {
    std::this_thread::yield();
  }
}

}  // namespace

namespace {

// 0: never give up, 1: the rule, 2: forced.
int give_up_mode() {
  static const int mode = [] {
    const char* env = std::getenv("PYLSTM_TEAM_GIVE_UP");
    const std::string s = env ? env : "";
    return s == "0" ? 0 : s == "force" ? 2 : 1;
  }();
  return mode;
}

}  // namespace

bool give_up_forced() { return give_up_mode() == 2; }

int64_t give_up_barrier_ns() {
  const int mode = give_up_mode();
  return mode == 1 ? kGiveUpBarrierNs : mode == 2 ? 1 : 0;
}

void TeamBarrier::wait(int64_t give_up_ns, int spins) {
  // Forced (tests): ask with the arrival itself, so the team shrinks here whoever arrives last.
  // (Only the caller asks, once per barrier, and completion clears the bit: the add cannot carry.)
  const bool ask_now = give_up_ns > 0 && give_up_forced();
  const uint64_t before =
      state_.fetch_add(ask_now ? 1 + kShrinkAsked : 1, std::memory_order_acq_rel);
  const uint64_t generation = before >> 32;
  if ((before & (kShrinkAsked - 1)) + 1 == static_cast<uint64_t>(n_)) {
    // The last to arrive decides for everyone, then opens the next generation.
    if ((before & kShrinkAsked) || ask_now) shrunk_.store(true, std::memory_order_relaxed);
    state_.store((generation + 1) << 32, std::memory_order_release);
    return;
  }
  const int64_t start = give_up_ns > 0 ? now_ns() : 0;
  bool asked = ask_now;
  for (int i = 0;; ++i) {
    uint64_t now = state_.load(std::memory_order_acquire);
    if ((now >> 32) != generation) return;
    if (give_up_ns > 0 && !asked && (i & 63) == 63 && now_ns() - start > give_up_ns) {
      // Fails when someone arrives meanwhile (the count changed): try again next round, or
      // the barrier completed without the request, and the team goes on as it was.
      asked = state_.compare_exchange_strong(now, now | kShrinkAsked, std::memory_order_acq_rel);
    }
    pause(i, spins);
  }
}

}  // namespace pylstm
