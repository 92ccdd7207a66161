// Late joiners: a team call that finds its workers asleep starts on its caller alone, and each
// worker joins at the first barrier the caller reaches after the worker woke (thread_pool.hpp,
// JoinSlot). Waking a sleeping worker takes 0.05-0.3 ms under a hypervisor; the caller works
// meanwhile instead of waiting for it at its first barrier.
//
// A seat goes posted (the caller, with the job) -> arrived (the worker, once awake) ->
// admitted (the caller, at a barrier) or closed (the caller, when the job ends first: the
// worker skips the job). An admitted worker runs the job from its start, passing the barriers
// the team passed before it came without working (its ranges are empty), and works from the
// next phase on with the grown team. Every member computes the same values in the same order
// whichever member computes them, so results do not depend on when a worker joins
// (tests/test_team_policy.py runs PYLSTM_TEAM_JOIN=late against a team that starts together).
#include <cstdlib>
#include <string>
#include <thread>

#include "thread_pool.hpp"

namespace pylstm {
namespace {

// While it waits for joiners, member 0 yields this often at barriers (see admit_arrivals).
constexpr int64_t kJoinYieldNs = 20 * 1000;
// Larger calls wait for their workers at the start: a worker that joins late idles until the
// phase it arrived in ends, which costs more than the wake-up in a long call.
constexpr int64_t kStartAloneMaxMacs = 256 * 1024 * 1024;

}  // namespace

bool starts_alone(bool workers_asleep, int64_t call_macs) {
  static const int forced = [] {  // 1: late, 2: wait
    const char* env = std::getenv("PYLSTM_TEAM_JOIN");
    const std::string s = env ? env : "";
    return s == "late" ? 1 : s == "wait" ? 2 : 0;
  }();
  if (forced != 0) return forced == 1;
  return workers_asleep && call_macs < kStartAloneMaxMacs;
}

// A worker at the job of generation `job`: marks its seat arrived and waits until the caller
// admits it (true) or closes the seat (false: the job ended, or its seat is of another job).
bool take_seat(JoinSlot& slot, uint64_t job) {
  uint64_t expected = job << 2 | JoinSlot::kPosted;
  if (!slot.state.compare_exchange_strong(expected, job << 2 | JoinSlot::kArrived,
                                          std::memory_order_acq_rel)) {
    return false;
  }
  uint64_t state = 0;
  spin_until([&] {
    state = slot.state.load(std::memory_order_acquire);
    return state != (job << 2 | JoinSlot::kArrived);
  });
  return state == (job << 2 | JoinSlot::kAdmitted);
}

// Member 0, at a barrier, before arriving: admits the workers (in id order) that have arrived.
// Alone, it grows the team at once (nobody else is at this barrier) and the joiners start
// after it; otherwise the team grows when this barrier completes.
void Team::admit_arrivals() const {
  Joining& j = *joining;
  int grown = size;
  while (grown < j.planned &&
         j.slots[grown].state.load(std::memory_order_acquire) == j.tag(JoinSlot::kArrived)) {
    ++grown;
  }
  if (grown == size) {
    // A worker woken on this CPU (see move_off_cpu) runs, and moves, only once this thread
    // yields: yield now and then while waiting for it.
    const int64_t now = now_ns();
    if (now - j.last_yield_ns > kJoinYieldNs) {
      j.last_yield_ns = now;
      std::this_thread::yield();
    }
    return;
  }
  const bool alone = size == 1;
  if (alone) {
    barrier_->grow_now(grown);
  } else {
    barrier_->grow_after_this_barrier(grown);
  }
  const uint64_t generation = barrier_->generation() + (alone ? 0 : 1);
  j.running->fetch_add(grown - size, std::memory_order_relaxed);
  for (int w = size; w < grown; ++w) {
    JoinSlot& slot = j.slots[w];
    slot.size = grown;
    slot.skip = passed + 1;  // this barrier and the ones before it
    slot.generation = generation;
    slot.state.store(j.tag(JoinSlot::kAdmitted), std::memory_order_release);
  }
  if (alone) size = grown;
  if (grown == j.planned) joining = nullptr;
}

// Admits every worker of the job once it has arrived, before the job starts; returns when.
int64_t ThreadPool::admit_all(const Joining& joining) {
  for (int w = 1; w < joining.planned; ++w) {
    JoinSlot& slot = slots_[w];
    // A worker woken on this CPU runs only once this thread yields (see move_off_cpu).
    spin_until(
        [&] {
          return slot.state.load(std::memory_order_acquire) == joining.tag(JoinSlot::kArrived);
        },
        kFirstBarrierSpins);
    slot.size = joining.planned;
    slot.skip = 0;
    slot.generation = 0;
  }
  pending_.store(joining.planned - 1, std::memory_order_relaxed);
  for (int w = 1; w < joining.planned; ++w) {
    slots_[w].state.store(joining.tag(JoinSlot::kAdmitted), std::memory_order_release);
  }
  return now_ns();
}

// After the job: seats not taken are closed (their workers skip the job, however late they
// wake). Returns the members that ran the job.
int ThreadPool::close_seats(const Joining& joining) {
  int members = 1;
  for (int w = 1; w < joining.planned; ++w) {
    uint64_t state = slots_[w].state.load(std::memory_order_acquire);
    while (state != joining.tag(JoinSlot::kAdmitted) &&
           !slots_[w].state.compare_exchange_weak(state, joining.tag(JoinSlot::kClosed),
                                                  std::memory_order_acq_rel)) {
    }
    if (state == joining.tag(JoinSlot::kAdmitted)) ++members;
  }
  return members;
}

}  // namespace pylstm
