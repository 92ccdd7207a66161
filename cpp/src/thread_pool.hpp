// A process-wide pool of worker threads that run one job at a time as a "team": every member
// runs the same function with its own id and meets the others at barriers. The time loop runs a
// whole forward pass inside one team, with one barrier per step, so threads are woken once per
// call rather than once per step.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "team_sync.hpp"

namespace pylstm {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// The i-th check of a wait: spin for the first `spins` checks, then yield the CPU between them
// (a thread sharing its CPU with the one it waits for must let it run).
inline void pause(int i, int spins) {
  if (i < spins) {
    cpu_relax();
  } else {
    std::this_thread::yield();
  }
}

// Waits until done() holds, pausing between checks as above.
template <typename Done>
void spin_until(Done done, int spins = kBarrierSpins) {
  for (int i = 0; !done(); ++i) pause(i, spins);
}

// Monotonic clock in nanoseconds.
int64_t now_ns();

// A barrier wait longer than this means a member was not running (descheduled), not that the
// members met a little apart: healthy waits take a few microseconds, a time slice lost to
// another process takes hundreds.
constexpr int64_t kLongBarrierWaitNs = 50 * 1000;

// Member 0's record of its barrier waits in one job: the pool's contention signal.
struct BarrierWaits {
  int barriers = 0;
  int64_t long_wait_ns = 0;   // waits longer than kLongBarrierWaitNs, after the first barrier
  int64_t total_wait_ns = 0;  // every wait after the first barrier
  int64_t max_wait_ns = 0;
  int64_t first_wait_ns = 0;  // the workers' start: admitting them, and the first barrier
};

// A worker's seat in the current job. A job whose workers were asleep starts on the caller
// alone (ThreadPool::run): a worker that wakes marks its seat arrived, and the caller admits
// it at its next barrier; the worker then passes the `skip` barriers the team passed before it
// came without working, waits for barrier generation `generation`, and works from there with
// `size` members.
struct alignas(64) JoinSlot {
  // job generation << 2 | one of the states below
  static constexpr uint64_t kPosted = 0, kArrived = 1, kAdmitted = 2, kClosed = 3;
  std::atomic<uint64_t> state{0};
  int size = 1;
  int skip = 0;
  uint64_t generation = 0;
};

// A worker at the job of generation `job` (team_join.cpp): true once admitted, false when its
// seat was closed (or belongs to another job).
bool take_seat(JoinSlot& slot, uint64_t job);

// What member 0 of a job that started alone needs to admit late joiners.
struct Joining {
  JoinSlot* slots = nullptr;            // indexed by member id
  int planned = 1;                      // the team the call asked for
  uint64_t job = 0;                     // the job's generation
  std::atomic<int>* running = nullptr;  // admitted workers that have not finished the job
  int64_t last_yield_ns = 0;            // member 0's last yield while waiting for joiners
  uint64_t tag(uint64_t state) const { return job << 2 | state; }
};

struct Team {
  int id = 0;
  // Members now: changes only at a barrier (late joiners, see JoinSlot).
  mutable int size = 1;
  TeamBarrier* barrier_ = nullptr;
  BarrierWaits* waits = nullptr;  // member 0 only
  int64_t give_up_ns = 0;         // see team_sync.hpp
  // Member 0 while workers may still join; null once all have (or for other members).
  mutable Joining* joining = nullptr;
  // Whether the job started on its caller alone (the same for every member: the time loop
  // then adds barriers, where workers can join, inside long phases).
  bool started_alone = false;
  mutable int passed = 0;  // barriers this member has passed
  int skip = 0;            // a late joiner: barriers it passes without working
  uint64_t join_generation = 0;
  mutable int waited = 0;             // barriers this member has waited at
  mutable int64_t last_exit_ns = 0;   // when it left the last one (or started the job)
  mutable int64_t job_start_ns = 0;   // when it started the job
  mutable int64_t long_waits_ns = 0;  // its waits longer than kLongBarrierWaitNs

  // Whether the team gave up on its other members (team_sync.hpp): the survivor then works
  // alone.
  bool shrunk() const { return size > 1 && barrier_->shrunk(); }
  // Whether this member does the work that one member does for all (states in and out).
  bool leads() const { return id == (shrunk() ? barrier_->survivor() : 0); }
  void barrier() const;
  // Static split of [0, n) into `size` contiguous ranges; this member's range. The same member
  // always gets the same range, so the weights it reads stay in its own cache across steps.
  void range(int64_t n, int64_t& begin, int64_t& end) const {
    if (passed < skip || (shrunk() && !leads())) {  // catching up, or left without work
      begin = end = n;
      return;
    }
    if (shrunk()) {  // the survivor takes everything
      begin = 0;
      end = n;
      return;
    }
    begin = n * id / size;
    end = n * (id + 1) / size;
  }

 private:
  void admit_arrivals() const;
  static void record_wait(BarrierWaits& w, int64_t wait_ns, bool first);
};

class ThreadPool {
 public:
  static ThreadPool& global();

  // Total threads a job may use, counting the caller; n >= 1.
  void set_num_threads(int n);
  // Teams of jobs run from the calling thread leave this many of num_threads() to other work
  // (at least one member): a thread that serves Python threads (the stream batcher's worker)
  // leaves them a CPU to turn results around on while the next batch runs. 0: none.
  static void leave_cpus_in_this_thread(int cpus);
  int num_threads() const { return num_threads_.load(std::memory_order_relaxed); }

  // The team size for a call that could use `useful` threads and does `call_macs`
  // multiply-adds in all: 1 when waking sleeping workers would cost more than they save, or
  // while the pool backs off after a contended call (see thread_pool.cpp); else `useful`.
  int team_for(int useful, int64_t call_macs) const;

  // Runs job(team) on min(want, num_threads()) threads, the caller being member 0. When another
  // call is using the pool, runs the job on the caller alone (results do not depend on the team
  // size). A call of `call_macs` multiply-adds that finds the workers asleep starts on the
  // caller alone and they join it at a barrier (JoinSlot). Exceptions thrown by the job are
  // rethrown here; jobs must not throw between barriers.
  void run(int want, int64_t call_macs, const std::function<void(const Team&)>& job);

  ~ThreadPool();

 private:
  ThreadPool();
  void start_workers(int count);
  void stop_workers();
  void worker_main(int id, uint64_t seen_generation);
  // fork(): the child has only the forking thread; the workers, and any lock another thread
  // held, exist in the parent alone. The child handler (pthread_atfork) makes the locks and the
  // job state new and marks the workers stale; the child's next team call (or
  // set_num_threads) abandons them, without join or destruction, and starts fresh ones.
  static void after_fork_in_child();
  void abandon_stale_workers();

  bool workers_stale_ = false;  // set in a forked child; read and cleared under run_mutex_

  // After a team call the caller judges whether its team was contended (its partner threads
  // descheduled by other processes or thread pools): see note_team_call.
  void note_team_call(int64_t job_ns, int64_t wait_ns);
  int64_t admit_all(const Joining& joining);
  int close_seats(const Joining& joining);

 public:
  // The last team call's job time and barrier waits (for tests and tuning: _core._last_team_call).
  struct LastCall {
    int64_t job_ns = 0, final_wait_ns = 0;
    BarrierWaits waits;
    bool contended = false;
    bool shrunk = false;         // a member gave up on the others at a barrier
    int survivor = 0;            // the member that then worked alone
    bool started_alone = false;  // workers joined late (or not at all)
    int members = 1;             // members that ran the job
  };
  LastCall last_call() const {
    std::lock_guard<std::mutex> g(last_call_mutex_);
    return last_call_;
  }

 private:
  mutable std::mutex last_call_mutex_;
  LastCall last_call_;
  std::atomic<int64_t> last_job_end_ns_{0};
  mutable std::atomic<int64_t> last_request_ns_{0};  // start of the latest team_for call
  mutable std::atomic<int> close_calls_{0};  // calls in a row within kWorkerSpinNs of the last
  std::atomic<int64_t> backoff_until_ns_{0};
  int64_t backoff_ns_ = 0;   // under run_mutex_
  double contention_ = 0.0;  // under run_mutex_: see updated_contention

  std::atomic<int> num_threads_{1};
  std::mutex run_mutex_;  // held while a job runs; try_lock decides pool vs. inline
  std::vector<std::thread> workers_;

  std::mutex wake_mutex_;
  std::condition_variable wake_cv_;
  std::atomic<uint64_t> job_generation_{0};
  bool stopping_ = false;
  const std::function<void(const Team&)>* job_ = nullptr;
  int team_size_ = 1;
  bool started_alone_ = false;
  int64_t give_up_ns_ = 0;             // the job's, for its workers
  std::unique_ptr<JoinSlot[]> slots_;  // one per member id
  std::vector<int> team_cpus_;         // CPU of each team member, or empty (not pinned)
  int caller_cpu_ = -1;                // unpinned: where member 0 ran when it posted the job
  std::atomic<int> pending_{0};
  TeamBarrier barrier_;
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

// The team policy's two decisions as pure functions (thread_pool.cpp explains them; tests call
// them through _core): the team for a call, and whether a finished team call was contended.
int choose_team(int useful, int64_t call_macs, bool workers_asleep, bool backing_off);
// The running average of the share of team calls spent in long barrier waits, after a call of
// job_ns with wait_ns of them; and whether an average means the team's CPUs are contended.
double updated_contention(double average, int64_t job_ns, int64_t wait_ns);
bool is_contended(double average);

// Whether a team call of call_macs multiply-adds starts on its caller alone, the workers
// joining it late (team_join.cpp); PYLSTM_TEAM_JOIN=late / wait: always / never.
bool starts_alone(bool workers_asleep, int64_t call_macs);

// Number of CPUs this process may run on (affinity mask), at least 1.
int available_cpus();

// How many fork()s led to this process (0 in a process that was not forked after the pool
// existed). Objects with their own locks compare it with the value they saw last, and make
// their locks anew when it changed, under fork_repair_mutex() (itself made anew in the child).
uint64_t fork_epoch();
std::mutex& fork_repair_mutex();

}  // namespace pylstm
