// How a team's members meet, and how a member stops waiting for one that is not running.
//
// A team call splits every phase of the work (a step's gates, its projection, ...) statically
// among its members and meets at a barrier after each phase. When another thread pool or process
// holds the CPU of one member (ONNX Runtime's or OpenMP's threads spinning after their own call,
// a busy neighbour), that member loses whole scheduler time slices, and every barrier of the call
// waits for it: measured on 2 vCPUs, a 0.5 ms call took 10-50 ms. So a member that waits gives
// up on the others instead of waiting at every step: at a barrier where it has waited three
// times as long as its own share of the phase took (and at least kGiveUpBarrierNs; never at its
// first barrier, whose wait includes waking the workers), it asks the team to shrink to itself;
// the member that completes the barrier decides, so every member leaves that barrier knowing the
// same answer. After it, the survivor takes every range (Team::range) and the work only member
// 0 does otherwise (Team::leads), and barriers are no-ops; the others run through the rest of
// the job without work. The call still waits for the missing member once (at that barrier: its
// share of the phase is needed), not at every step. The one not running is often the caller
// itself: in a service, the caller's CPU is where the other pools' threads spin (measured: in
// the shared-process bench, member 0 waited 0.1 ms of a 5-7 ms call that takes 2 ms alone). When
// the caller gave up on its workers, the pool then backs off from teams (thread_pool.cpp).
//
// The results do not change: each value is computed by the same code, in the same order,
// whichever member computes it (the parity tests run teams of every size, and with
// PYLSTM_TEAM_GIVE_UP=force and force-worker, the shrunk path with each survivor).
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
// A member gives up only once its long waits are this share of its time in the job (Team::
// barrier): measured on 2 vCPUs, a 120 ms call (LSTM 2 layers, B=256, H=256) gave up on a
// single stall and then ran its remaining ~100 ms on one thread (190-230 ms).
constexpr double kGiveUpWaitShare = 0.25;

// Checks a barrier spins before it yields the CPU between checks: healthy waits take a few
// microseconds, and a member that shares its CPU with the one it waits for must let it run.
constexpr int kBarrierSpins = 4000;
// The first barrier of a job waits for workers that may have been asleep; a woken worker can
// land on its waker's CPU (thread_pool.cpp, move_off_cpu), where it runs only once the caller
// yields. So the caller yields there after a short spin (a yield with nothing else to run is a
// system call of well under a microsecond).
constexpr int kFirstBarrierSpins = 200;

// PYLSTM_TEAM_GIVE_UP: unset or "1", the rule above; "0", never give up (a team call waits for
// all of its members); "force" / "force-worker": member 0 / member 1 gives up at its second
// barrier of every team call (the tests run the shrunk path with it). The least ns to wait at a
// barrier before giving up; 0: never.
int64_t give_up_barrier_ns();
bool give_up_forced();
// In a forced mode, the member that gives up.
int forced_survivor();

// Sense-counting spin barrier for a fixed number of threads, with the shrink decision above.
// Spins briefly, then yields, so an oversubscribed machine still makes progress.
// The number of members can grow between generations (late joiners, thread_pool.hpp): the
// member that completes a barrier opens the next generation for the size member 0 set before
// arriving (grow_after_this_barrier).
class TeamBarrier {
 public:
  void reset(int n) {
    n_.store(n, std::memory_order_relaxed);
    next_n_.store(n, std::memory_order_relaxed);
    state_.store(0, std::memory_order_relaxed);
    shrunk_.store(false, std::memory_order_relaxed);
    survivor_.store(0, std::memory_order_relaxed);
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
  // Member `member` waits for the others: spins `spins` checks, then yields the CPU between
  // checks. give_up_ns > 0: after waiting that long, ask the team to shrink to `member`.
  void wait(int member, int64_t give_up_ns = 0, int spins = kBarrierSpins);
  // Decided at a barrier's completion, read after leaving it (or between barriers): stable
  // between two barriers.
  bool shrunk() const { return shrunk_.load(std::memory_order_acquire); }
  int survivor() const { return survivor_.load(std::memory_order_acquire); }

 private:
  // generation << 32 | (member that asks to shrink + 1) << kAskerShift | arrivals
  static constexpr int kAskerShift = 24;
  static constexpr uint64_t kArrivals = (uint64_t{1} << kAskerShift) - 1;
  static constexpr uint64_t kAsker = uint64_t{0xFF} << kAskerShift;
  std::atomic<int> n_{1};
  std::atomic<int> next_n_{1};
  std::atomic<uint64_t> state_{0};
  std::atomic<bool> shrunk_{false};
  std::atomic<int> survivor_{0};
};

}  // namespace pylstm
