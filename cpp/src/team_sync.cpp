#include "team_sync.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include "thread_pool.hpp"  // now_ns, cpu_relax

namespace pylstm {

namespace {

// 0: never give up, 1: the rule, 2: forced (member 0 survives), 3: forced (member 1 survives).
int give_up_mode() {
  static const int mode = [] {
    const char* env = std::getenv("PYLSTM_TEAM_GIVE_UP");
    const std::string s = env ? env : "";
    return s == "0" ? 0 : s == "force" ? 2 : s == "force-worker" ? 3 : 1;
  }();
  return mode;
}

}  // namespace

bool give_up_forced() { return give_up_mode() >= 2; }

int forced_survivor() { return give_up_mode() == 3 ? 1 : 0; }

int64_t give_up_barrier_ns() {
  const int mode = give_up_mode();
  return mode == 1 ? kGiveUpBarrierNs : mode >= 2 ? 1 : 0;
}

void TeamBarrier::wait(int member, int64_t give_up_ns, int spins) {
  const uint64_t ask = static_cast<uint64_t>(member + 1) << kAskerShift;
  // Forced (tests): ask with the arrival itself, so the team shrinks here whoever arrives last.
  // (Only one member asks, once per barrier, and completion clears the field: no carry.)
  const bool ask_now = give_up_ns > 0 && give_up_forced();
  const uint64_t before = state_.fetch_add(ask_now ? 1 + ask : 1, std::memory_order_acq_rel);
  const uint64_t generation = before >> 32;
  const int n = n_.load(std::memory_order_relaxed);
  if ((before & kArrivals) + 1 == static_cast<uint64_t>(n)) {
    // The last to arrive decides for everyone, then opens the next generation.
    const uint64_t asker = ask_now ? ask : before & kAsker;
    if (asker != 0) {
      survivor_.store(static_cast<int>(asker >> kAskerShift) - 1, std::memory_order_relaxed);
      shrunk_.store(true, std::memory_order_relaxed);
    }
    n_.store(next_n_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    state_.store((generation + 1) << 32, std::memory_order_release);
    return;
  }
  const int64_t start = give_up_ns > 0 ? now_ns() : 0;
  bool asked = ask_now;
  for (int i = 0;; ++i) {
    uint64_t now = state_.load(std::memory_order_acquire);
    if ((now >> 32) != generation) return;
    if (give_up_ns > 0 && !asked && (i & 63) == 63 && now_ns() - start > give_up_ns) {
      // The first member to ask survives. Fails when someone arrives or asks meanwhile: try
      // again next round (or another member asked), or the barrier completed without the
      // request, and the team goes on as it was.
      asked = (now & kAsker) != 0 ||
              state_.compare_exchange_strong(now, now | ask, std::memory_order_acq_rel);
    }
    pause(i, spins);
  }
}

void TeamBarrier::wait_generation(uint64_t g) const {
  spin_until([&] { return generation() >= g; });
}

void Team::barrier() const {
  if (passed < skip) {  // a late joiner catching up: the team passed this barrier without it
    if (++passed == skip) barrier_->wait_generation(join_generation);
    return;
  }
  const int members = size;
  if (joining != nullptr && !barrier_->shrunk()) admit_arrivals();
  ++passed;
  if (members <= 1 || barrier_->shrunk()) return;
  const int64_t start = now_ns();
  // Give up on the others only after waiting three times as long as this member's own share of
  // the phase took: shares are equal in count, not always in cost (3 items split 1:2), so a
  // partner may take twice as long; a much longer wait means it was not running. Never at this
  // member's first barrier: its wait includes waking the workers (up to ~0.5 ms under a
  // hypervisor).
  // And only once this member's long waits make up kGiveUpWaitShare of its time in the job: a
  // partner that loses one time slice in a long call (a page fault, the hypervisor) is waited
  // for; one that keeps losing them is not. Waits of w give up when
  // long_waits + w > share * (elapsed + w).
  int64_t limit = 0;
  if (give_up_ns > 0 && waited > 0) {
    if (!give_up_forced()) {
      const double elapsed = static_cast<double>(start - job_start_ns);
      const double share_limit = (kGiveUpWaitShare * elapsed - static_cast<double>(long_waits_ns)) /
                                 (1.0 - kGiveUpWaitShare);
      limit = std::max({give_up_ns, 3 * (start - last_exit_ns), static_cast<int64_t>(share_limit)});
    } else if (id == forced_survivor()) {
      limit = give_up_ns;
    }
  }
  barrier_->wait(id, limit, waited == 0 ? kFirstBarrierSpins : kBarrierSpins);
  size = barrier_->size();
  last_exit_ns = now_ns();
  const int64_t wait_ns = last_exit_ns - start;
  if (wait_ns > kLongBarrierWaitNs) long_waits_ns += wait_ns;
  if (waits != nullptr) record_wait(*waits, wait_ns, waited == 0);
  ++waited;
}

// Member 0's record of its waits: the pool's contention signal. The first wait of a job
// includes waking the workers, which is not contention.
void Team::record_wait(BarrierWaits& w, int64_t wait_ns, bool first) {
  ++w.barriers;
  if (first) {
    w.first_wait_ns += wait_ns;
    return;
  }
  w.total_wait_ns += wait_ns;
  if (wait_ns > w.max_wait_ns) w.max_wait_ns = wait_ns;
  if (wait_ns > kLongBarrierWaitNs) w.long_wait_ns += wait_ns;
}

}  // namespace pylstm
