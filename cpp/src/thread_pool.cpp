#include "thread_pool.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif
#include <new>

namespace pylstm {
namespace {

// How the pool decides its team per call (ThreadPool::team_for), and why:
//
// * Workers spin for kWorkerSpinNs after a job, then sleep. Waking a sleeping worker costs from
//   tens of microseconds to half a millisecond (a futex wake, and under a hypervisor the wake of
//   a halted virtual CPU), so a call that finds the workers asleep uses them only when it has
//   at least kColdCallMacs of work (about 0.3-0.5 ms on one core): a single-step call that
//   arrives after an idle gap runs on its caller alone. Calls that follow each other closely
//   (within kWorkerSpinNs of the last team call's end, or the kWarmRunCalls-th of a run of
//   calls each within kWorkerSpinNs of the previous one's start) find the workers spinning, or
//   wake them once, and split smaller work.
// * Every team call adds up the caller's long waits at the per-step barriers (longer than
//   kLongBarrierWaitNs: another member was not running; short waits are the barrier's own
//   latency). The pool keeps a running average of their share of the call, the newest call
//   weighing kContentionWeight: a time slice lost now and then barely moves it, losing one on
//   every call does. When the average passes kContendedWaitShare, another process or thread
//   pool holds the team's CPUs, and a contended team is slower than one thread (every member
//   waits for the slowest at every step): calls then run on the caller alone for a back-off
//   period, after which one team call probes again; the average is set at the line, so that
//   probe decides: contended again, the back-off doubles (kMinBackoffNs .. kMaxBackoffNs);
//   clean, teams resume.
constexpr int64_t kWorkerSpinNs = 100 * 1000;
constexpr int64_t kColdCallMacs = 4 * 1024 * 1024;
constexpr int kWarmRunCalls = 8;
constexpr int64_t kContentionMinJobNs = 200 * 1000;
constexpr double kContendedWaitShare = 0.3;
constexpr double kContentionWeight = 0.25;
constexpr int64_t kMinBackoffNs = 20 * 1000 * 1000;
constexpr int64_t kMaxBackoffNs = 1000 * 1000 * 1000;

// Pins the calling thread to one CPU; false if the OS refused.
bool pin_current_thread(int cpu) {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
#else
  (void)cpu;
  return false;
#endif
}

// CPUs the calling thread may run on, in order (empty where the OS does not say).
std::vector<int> caller_cpus() {
  std::vector<int> cpus;
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    }
  }
#endif
  return cpus;
}

// The CPU the calling thread runs on now, or -1 where the OS does not say.
int current_cpu() {
#if defined(__linux__)
  return sched_getcpu();
#else
  return -1;
#endif
}

// Moves the calling worker off `cpu` (its caller's CPU) when the scheduler woke it there, then
// gives it back its whole CPU mask (the move sticks: the thread is already elsewhere). Why: under
// KVM, a virtual CPU that halted during an idle gap is reported as preempted, so Linux does not
// see it as idle and wakes the worker on its waker's CPU instead; there the two members of the
// team share one CPU and every per-step barrier waits for a time slice (measured on 2 vCPUs,
// after 20 ms gaps: ~40 waits of ~250 us in a 0.5 ms call), and the load balancer takes
// milliseconds to notice. A worker never stays pinned: other processes can still move it.
void move_off_cpu(int cpu) {
#if defined(__linux__)
  if (cpu < 0 || current_cpu() != cpu) return;
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0 || !CPU_ISSET(cpu, &allowed)) return;
  cpu_set_t others = allowed;
  CPU_CLR(cpu, &others);
  if (CPU_COUNT(&others) == 0) return;
  if (sched_setaffinity(0, sizeof(others), &others) == 0) {
    sched_setaffinity(0, sizeof(allowed), &allowed);
  }
#else
  (void)cpu;
#endif
}

// Pinning is opt-in (PYLSTM_PIN_THREADS=1). Pinned, the caller sits on the first CPU it may use
// and worker i on the i-th while a team runs, which keeps a team from sharing a CPU on a quiet
// machine; but every process pins onto the same CPUs, so two processes (or another thread pool
// in this one) would fight over them while other CPUs idle. Unpinned, the scheduler places the
// threads, and the back-off above handles a team that does not get its CPUs.
bool pinning_enabled() {
  const char* env = std::getenv("PYLSTM_PIN_THREADS");
  return env && std::string(env) == "1";
}

// With pinning on: the caller's own CPU mask is restored when the job ends.
class CallerPin {
 public:
  explicit CallerPin(int cpu) {
#if defined(__linux__)
    pinned_ =
        cpu >= 0 && sched_getaffinity(0, sizeof(saved_), &saved_) == 0 && pin_current_thread(cpu);
#else
    (void)cpu;
#endif
  }
  ~CallerPin() {
#if defined(__linux__)
    if (pinned_) sched_setaffinity(0, sizeof(saved_), &saved_);
#endif
  }
  CallerPin(const CallerPin&) = delete;
  CallerPin& operator=(const CallerPin&) = delete;

 private:
#if defined(__linux__)
  cpu_set_t saved_;
#endif
  bool pinned_ = false;
};

int threads_from_env() {
  const char* s = std::getenv("PYLSTM_NUM_THREADS");
  if (s && *s) {
    const int n = std::atoi(s);
    if (n >= 1) return n;
  }
  return available_cpus();
}

}  // namespace

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int available_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n >= 1) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n >= 1 ? static_cast<int>(n) : 1;
}

namespace {
ThreadPool* g_pool = nullptr;  // the pool, once constructed (for the fork handler)
std::atomic<uint64_t> g_fork_epoch{0};
std::mutex g_fork_repair_mutex;
}  // namespace

uint64_t fork_epoch() { return g_fork_epoch.load(std::memory_order_acquire); }
std::mutex& fork_repair_mutex() { return g_fork_repair_mutex; }

ThreadPool& ThreadPool::global() {
  static ThreadPool pool;
  return pool;
}

ThreadPool::ThreadPool() {
  const int n = threads_from_env();
  num_threads_.store(n);
  start_workers(n - 1);
  g_pool = this;
#if defined(__unix__) || defined(__APPLE__)
  pthread_atfork(nullptr, nullptr, &ThreadPool::after_fork_in_child);
#endif
}

ThreadPool::~ThreadPool() {
  if (workers_stale_) {
    abandon_stale_workers();  // a forked child exiting: the parent's workers are not ours
  } else {
    stop_workers();
  }
  g_pool = nullptr;
}

// Runs in the child of fork(), which has one thread: no other thread can touch the pool now.
// Locks that a parent thread held at the fork stay locked forever in the child's copy, so each
// one is constructed anew (as is what the job state held); nothing here joins, destroys or
// frees what belonged to the parent's threads.
void ThreadPool::after_fork_in_child() {
  new (&g_fork_repair_mutex) std::mutex();
  g_fork_epoch.fetch_add(1, std::memory_order_acq_rel);
  ThreadPool* pool = g_pool;
  if (pool == nullptr) return;
  new (&pool->run_mutex_) std::mutex();
  new (&pool->wake_mutex_) std::mutex();
  new (&pool->wake_cv_) std::condition_variable();
  new (&pool->error_mutex_) std::mutex();
  new (&pool->error_) std::exception_ptr();
  new (&pool->team_cpus_) std::vector<int>();  // the parent's buffer may be mid-update: leaked
  pool->job_ = nullptr;
  pool->team_size_ = 1;
  pool->stopping_ = false;
  pool->pending_.store(0, std::memory_order_relaxed);
  pool->barrier_.reset(1);
  pool->workers_stale_ = !pool->workers_.empty();
}

// The std::thread objects of a forked child's workers name threads of the parent: destroying
// them (joinable) would terminate the process and joining them would wait forever, so they
// are moved to a vector that is never freed. Caller holds run_mutex_ (or is the destructor).
void ThreadPool::abandon_stale_workers() {
  if (!workers_.empty()) {
    auto* abandoned = new std::vector<std::thread>(std::move(workers_));
    (void)abandoned;
    workers_.clear();
  }
  workers_stale_ = false;
}

void ThreadPool::start_workers(int count) {
  stopping_ = false;
  slots_.reset(new JoinSlot[count + 1]);  // indexed by member id (0: the caller, unused)
  // New workers must only run jobs posted after they exist, not the last finished one.
  const uint64_t current = job_generation_.load();
  for (int i = 0; i < count; ++i) {
    workers_.emplace_back([this, i, current] { worker_main(i + 1, current); });
  }
}

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(wake_mutex_);
    stopping_ = true;
    job_generation_.fetch_add(1);
  }
  wake_cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::set_num_threads(int n) {
  if (n < 1) n = 1;
  std::lock_guard<std::mutex> running(run_mutex_);  // waits for the current job
  if (workers_stale_) {
    abandon_stale_workers();
    num_threads_.store(n);
    start_workers(n - 1);
    return;
  }
  if (n == num_threads()) return;
  stop_workers();
  num_threads_.store(n);
  start_workers(n - 1);
}

void ThreadPool::worker_main(int id, uint64_t seen) {
  int pinned_cpu = -1;
  for (;;) {
    // Back-to-back calls are common (streaming, many small batches): spin for kWorkerSpinNs
    // before sleeping so the next job starts without a wake-up (team_for assumes this window).
    bool woke = false;
    const int64_t spin_end = now_ns() + kWorkerSpinNs;
    for (int i = 0;; ++i) {
      if (job_generation_.load(std::memory_order_acquire) != seen) {
        woke = true;
        break;
      }
      if ((i & 63) == 63 && now_ns() > spin_end) break;
      cpu_relax();
    }
    std::unique_lock<std::mutex> lock(wake_mutex_);
    if (!woke) {
      wake_cv_.wait(lock, [&] { return job_generation_.load() != seen || stopping_; });
    }
    if (stopping_) return;
    seen = job_generation_.load();
    const auto* job = job_;
    const int size = team_size_;
    const bool started_alone = started_alone_;
    const int64_t give_up_ns = give_up_ns_;
    const int cpu = id < static_cast<int>(team_cpus_.size()) ? team_cpus_[id] : -1;
    const int caller_cpu = caller_cpu_;
    lock.unlock();
    if (id < size) {
      if (cpu >= 0 && cpu != pinned_cpu) pinned_cpu = pin_current_thread(cpu) ? cpu : -1;
      if (cpu < 0) move_off_cpu(caller_cpu);
      JoinSlot& slot = slots_[id];
      if (take_seat(slot, seen)) {
        Team team{id, slot.size, &barrier_, nullptr, give_up_ns};
        team.started_alone = started_alone;
        team.last_exit_ns = team.job_start_ns = now_ns();
        team.skip = slot.skip;
        team.join_generation = slot.generation;
        try {
          (*job)(team);
        } catch (...) {
          std::lock_guard<std::mutex> g(error_mutex_);
          if (!error_) error_ = std::current_exception();
        }
        pending_.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }
}

// PYLSTM_TEAM_POLICY=eager: a team whenever the work splits (no wake-up or contention rules);
// tests use it to run the multi-thread paths on small inputs. Default: adaptive.
bool eager_teams() {
  static const bool eager = [] {
    const char* env = std::getenv("PYLSTM_TEAM_POLICY");
    return env && std::string(env) == "eager";
  }();
  return eager;
}

int choose_team(int useful, int64_t call_macs, bool workers_asleep, bool backing_off) {
  if (useful <= 1 || backing_off) return 1;
  if (workers_asleep && call_macs < kColdCallMacs) return 1;
  return useful;
}

double updated_contention(double average, int64_t job_ns, int64_t wait_ns) {
  if (job_ns < kContentionMinJobNs) return average;  // too short to judge
  const double share = std::min(1.0, static_cast<double>(wait_ns) / static_cast<double>(job_ns));
  return (1.0 - kContentionWeight) * average + kContentionWeight * share;
}

bool is_contended(double average) { return average > kContendedWaitShare; }

int ThreadPool::team_for(int useful, int64_t call_macs) const {
  if (useful <= 1 || num_threads() <= 1) return 1;
  if (eager_teams()) return useful;
  const int64_t now = now_ns();
  const bool backing_off = now < backoff_until_ns_.load(std::memory_order_relaxed);
  // A run of calls that follow each other closely (back-to-back streaming steps, a batch loop)
  // counts as warm even when the workers sleep: they are woken once, and then stay awake (spin)
  // while the calls keep coming. Otherwise a run of small calls would never wake them. Only a
  // run of kWarmRunCalls: a pair of calls after an idle gap (two models per request) would pay
  // the wake-up (60-150 us measured under KVM) to save ~10 us.
  const int64_t previous = last_request_ns_.exchange(now, std::memory_order_relaxed);
  int run = 0;
  if (now - previous <= kWorkerSpinNs) {
    run = close_calls_.load(std::memory_order_relaxed) + 1;
    if (run > kWarmRunCalls) run = kWarmRunCalls;  // (no overflow in a long run)
  }
  close_calls_.store(run, std::memory_order_relaxed);
  const bool workers_asleep =
      now - last_job_end_ns_.load(std::memory_order_relaxed) > kWorkerSpinNs && run < kWarmRunCalls;
  return choose_team(useful, call_macs, workers_asleep, backing_off);
}

void ThreadPool::note_team_call(int64_t job_ns, int64_t wait_ns) {
  const int64_t end = now_ns();
  last_job_end_ns_.store(end, std::memory_order_relaxed);
  contention_ = updated_contention(contention_, job_ns, wait_ns);
  if (is_contended(contention_)) {
    backoff_ns_ = std::min(kMaxBackoffNs, std::max(kMinBackoffNs, 2 * backoff_ns_));
    backoff_until_ns_.store(end + backoff_ns_, std::memory_order_relaxed);
    contention_ = kContendedWaitShare;  // the probe after the back-off decides
  } else if (contention_ < kContendedWaitShare / 2) {
    backoff_ns_ = 0;
  }
}

namespace {
thread_local int t_cpus_left_free = 0;  // see ThreadPool::leave_cpus_in_this_thread
}  // namespace

void ThreadPool::leave_cpus_in_this_thread(int cpus) { t_cpus_left_free = std::max(0, cpus); }

void ThreadPool::run(int want, int64_t call_macs, const std::function<void(const Team&)>& job) {
  int size = std::min(want, std::max(1, num_threads() - t_cpus_left_free));
  if (size <= 1) {  // small calls (streaming steps): no lock, no system call
    job(Team{0, 1, nullptr});
    return;
  }
  std::unique_lock<std::mutex> running(run_mutex_, std::try_to_lock);
  // Never more members than CPUs this thread may use (taskset, cgroups): they would share one.
  std::vector<int> cpus = caller_cpus();
  if (!cpus.empty()) size = std::min(size, static_cast<int>(cpus.size()));
  if (!running.owns_lock() || size <= 1) {
    job(Team{0, 1, nullptr});
    return;
  }
  if (workers_stale_) {  // first team call in a forked child: workers of its own
    abandon_stale_workers();
    start_workers(num_threads() - 1);
  }
  const int64_t start = now_ns();
  const bool asleep = start - last_job_end_ns_.load(std::memory_order_relaxed) > kWorkerSpinNs;
  const bool alone = starts_alone(asleep && !eager_teams(), call_macs);
  barrier_.reset(alone ? 1 : size);
  error_ = nullptr;
  // Eager teams (the tests' policy) wait for every member, unless PYLSTM_TEAM_GIVE_UP=force.
  const int64_t give_up_ns = eager_teams() && !give_up_forced() ? 0 : give_up_barrier_ns();
  if (pinning_enabled()) {
    cpus.resize(cpus.empty() ? 0 : size);
  } else {
    cpus.clear();
  }
  CallerPin pin(cpus.empty() ? -1 : cpus[0]);
  pending_.store(0, std::memory_order_relaxed);
  Joining joining{slots_.get(), size, 0, &pending_};
  {
    std::lock_guard<std::mutex> lock(wake_mutex_);
    joining.job = job_generation_.load(std::memory_order_relaxed) + 1;
    for (int w = 1; w < size; ++w) {
      slots_[w].state.store(joining.tag(JoinSlot::kPosted), std::memory_order_relaxed);
    }
    job_ = &job;
    team_size_ = size;
    started_alone_ = alone;
    give_up_ns_ = give_up_ns;
    team_cpus_ = cpus;
    caller_cpu_ = cpus.empty() ? current_cpu() : -1;
    job_generation_.store(joining.job, std::memory_order_release);
  }
  wake_cv_.notify_all();
  std::exception_ptr mine;
  BarrierWaits waits;
  Team team{0, alone ? 1 : size, &barrier_, &waits, give_up_ns};
  team.started_alone = alone;
  if (alone) {
    team.joining = &joining;
  } else {
    // Workers that were spinning arrive within microseconds: the team starts together.
    waits.first_wait_ns = admit_all(joining) - start;
  }
  team.last_exit_ns = team.job_start_ns = now_ns();
  try {
    job(team);
  } catch (...) {
    mine = std::current_exception();
  }
  const int64_t job_end = now_ns();
  const int members = close_seats(joining);
  spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; });
  const int64_t end = now_ns();
  // A caller that gave up on its workers (they were not running) counts as contended outright.
  // (Workers that gave up on the caller do not: a call on the caller alone would be slower.)
  const bool caller_gave_up = barrier_.shrunk() && barrier_.survivor() == 0;
  note_team_call(end - start, caller_gave_up ? end - start : waits.long_wait_ns);
  {
    std::lock_guard<std::mutex> g(last_call_mutex_);
    last_call_ =
        LastCall{end - start,       end - job_end,       waits, now_ns() < backoff_until_ns_.load(),
                 barrier_.shrunk(), barrier_.survivor(), alone, members};
  }
  if (mine) std::rethrow_exception(mine);
  if (error_) std::rethrow_exception(error_);
}

}  // namespace pylstm
