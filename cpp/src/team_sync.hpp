// How a team's members meet, and how the caller stops waiting for a member that is not running.
//
// A team call splits every phase of the work (a step's gates, its projection, ...) statically
// among its members and meets at a barrier after each phase. When another thread pool or process
// holds the CPU of one member (ONNX Runtime's or OpenMP's threads spinning after their own call,
// a busy neighbour), that member loses whole scheduler time slices, and every barrier of the call
// waits for it: measured on 2 vCPUs, a 0.5 ms call took 10-50 ms. So the caller (member 0) gives
// up on its team instead of waiting at every step: at a barrier where it has waited three times
// as long as its own share of the phase took (and at least kGiveUpBarrierNs; never at the first
// barrier, whose wait includes waking the workers), it asks the team to shrink;
// the member that completes the barrier decides, so every member leaves that barrier knowing the
// same answer. After it, member 0 takes every range (Team::range) and barriers are no-ops; the
// other members run through the rest of the job without work. The call still waits for the
// missing member once (at that barrier: its share of the phase is needed), not at every step,
// and the pool then backs off from teams (thread_pool.cpp).
//
// The results do not change: each value is computed by the same code, in the same order,
// whichever member computes it (the parity tests run teams of every size, and with
// PYLSTM_TEAM_GIVE_UP=force, the shrunk path).
//
// (Giving up on a worker that has not started yet was tried too, with a check-in gate before the
// job: A/B on the shared-process case (pylstm after ONNX Runtime and PyTorch in one process,
// LSTM B=1 H=256 T=100, 2 vCPUs) it did not help, at 0.5 or 2 ms: a late worker is usually only
// a little late.)
#pragma once

#include <atomic>
#include <cstdint>

namespace pylstm {

// The least wait at a barrier before giving up (a healthy barrier takes microseconds).
constexpr int64_t kGiveUpBarrierNs = 50 * 1000;

// Checks a barrier spins before it yields the CPU between checks: healthy waits take a few
// microseconds, and a member that shares its CPU with the one it waits for must let it run.
constexpr int kBarrierSpins = 4000;
// The first barrier of a job waits for workers that may have been asleep; a woken worker can
// land on its waker's CPU (thread_pool.cpp, move_off_cpu), where it runs only once the caller
// yields. So the caller yields there after a short spin (a yield with nothing else to run is a
// system call of well under a microsecond).
constexpr int kFirstBarrierSpins = 200;

// PYLSTM_TEAM_GIVE_UP: unset or "1", the rule above; "0", never give up (a team call waits for
// all of its members); "force": give up at every team call's second barrier (the tests run the
// shrunk path with it). The least ns to wait at a barrier before giving up; 0: never.
int64_t give_up_barrier_ns();
bool give_up_forced();

// Sense-counting spin barrier for a fixed number of threads, with the shrink decision above.
// Spins briefly, then yields, so an oversubscribed machine still makes progress.
// The number of members can grow between generations (late joiners, thread_pool.hpp): the
// member that completes a barrier opens the next generation for next_size() members.
class TeamBarrier {
 public:
  void reset(int n) {
    n_.store(n, std::memory_order_relaxed);
    next_n_.store(n, std::memory_order_relaxed);
    state_.store(0, std::memory_order_relaxed);
    shrunk_.store(false, std::memory_order_relaxed);
  }
  // Members of the current generation: stable from leaving one barrier to arriving at the next.
  int size() const { return n_.load(std::memory_order_acquire); }
  uint64_t generation() const { return state_.load(std::memory_order_acquire) >> 32; }
  // The members of the generation after the current barrier (member 0, before it arrives).
  void grow_after_this_barrier(int n) { next_n_.store(n, std::memory_order_relaxed); }
  // Member 0 while it is the only member: the others start with the current generation.
  void grow_now(int n) {
    next_n_.store(n, std::memory_order_relaxed);
    n_.store(n, std::memory_order_release);
  }
  // Waits until the generation is at least g (a late joiner: the barrier it was admitted at).
  void wait_generation(uint64_t g) const;
  // Waits for the other members: spins `spins` checks, then yields the CPU between checks.
  // give_up_ns > 0 (the caller only): after waiting that long, ask the team to shrink.
  void wait(int64_t give_up_ns = 0, int spins = kBarrierSpins);
  // Decided at a barrier's completion, read after leaving it (or between barriers): stable
  // between two barriers.
  bool shrunk() const { return shrunk_.load(std::memory_order_acquire); }

 private:
  // generation << 32 | kShrinkAsked | arrivals
  static constexpr uint64_t kShrinkAsked = uint64_t{1} << 31;
  std::atomic<int> n_{1};
  std::atomic<int> next_n_{1};
  std::atomic<uint64_t> state_{0};
  std::atomic<bool> shrunk_{false};
};

}  // namespace pylstm
