// Cellular batching of many streams of one network: the engine side of pylstm.StreamBatcher for
// models that are a network alone (from_torch, from_arrays, cells). Callers hand in chunks of
// their stream; a worker thread runs the pending chunks of all streams as one batch per round,
// each stream's state in its own slot, so the recurrent weights are read once per step for all.
//
// No Python here: a blocking caller waits without the GIL and the worker never takes it, so
// the batch runs while the callers' threads turn results around (asynchronous callers are told
// through a CompletionSink the bindings provide). Locks: queue_mu_ (the queue, briefly), then
// run_mu_ (the slots and the engine, for a whole round); released_mu_ (slots given back by
// garbage collection) is taken alone. Nothing holds one of them while it waits for another
// thread, except the worker waiting on queue_cv_.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "pylstm/backend.hpp"

namespace pylstm {

// The batcher was closed: pending calls and calls made after close() fail with it.
class BatcherClosedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class CellBatcher {
 public:
  using Clock = std::chrono::steady_clock;
  // One asynchronous chunk that has run (error null) or failed.
  struct Completion {
    uint64_t token;
    std::exception_ptr error;
  };
  // Called from the worker (or from close()) with the asynchronous chunks of one round.
  using CompletionSink = std::function<void(std::vector<Completion>&)>;

  // max_batch >= 1: the most chunks a round takes; max_delay_s >= 0: how long the oldest
  // pending chunk may wait for the other open streams' chunks to fill a round, while the
  // engine is busy (engine_busy).
  CellBatcher(std::shared_ptr<const Backend> backend, int64_t max_batch, double max_delay_s,
              CompletionSink sink);
  ~CellBatcher();
  CellBatcher(const CellBatcher&) = delete;
  CellBatcher& operator=(const CellBatcher&) = delete;

  const Backend& backend() const { return *backend_; }

  // -- slots: one per open stream; h [h_floats], c [c_floats] laid out [L*D, H] --------------
  // A free slot (grown when none is), set to h / c (null: zeros).
  int64_t open_slot(const float* h, const float* c);
  // Any thread, never waits on a round: the slot is zeroed and reused at the next round.
  void release_slot(int64_t slot);
  void reset_slot(int64_t slot);
  void read_slot(int64_t slot, float* h, float* c);
  int64_t live_streams() const;
  int64_t slot_capacity();  // slots allocated (they grow by doubling, never shrink)
  // The most chunks a round takes: max_batch, and at most half the open streams once there are
  // 2 * kMinHalfRound of them (the callers turn one half's results around while the other half
  // runs, instead of both sides taking turns).
  int64_t round_size() const;

  // -- chunks: x [steps, input_size] in, y [steps, output_size] out, steps >= 1 ---------------
  // Blocks until the chunk ran (in this thread when nothing is pending and there is nobody to
  // wait for: one open stream, no delay, or an idle engine). Throws
  // BatcherClosedError or the engine's error; a failed chunk leaves the stream's state as it was.
  void step(int64_t slot, int64_t steps, const float* x, float* y);
  // Enqueues the chunk and returns; the sink gets {token, error} once it ran. x and y must stay
  // valid (and the slot open) until then.
  void submit(int64_t slot, int64_t steps, const float* x, float* y, uint64_t token);

  // Fails the pending chunks with BatcherClosedError, waits for the round that may be running,
  // stops the worker. Idempotent.
  void close();
  bool closed() const { return closed_.load(); }
  // A forked child has none of the parent's threads: new locks, an empty queue, no worker.
  void after_fork_in_child();

  int64_t rounds() const { return rounds_.load(); }          // engine calls so far
  int64_t chunks_run() const { return chunks_run_.load(); }  // chunks those calls ran
  // Tests: hold the rounds back (the engine is busy) / let them go; from one thread.
  void hold_rounds() { run_mu_.lock(); }
  void release_rounds() { run_mu_.unlock(); }
  // Tests: the engine counts as busy (true) or idle (false) from now on, whatever it ran.
  void pretend_engine_busy(bool busy) {
    pretend_ = busy ? 1 : -1;
    busy_until_.store(busy ? INT64_MAX : 0);
  }
  // Tests: an engine call over chunks of this many steps fails with std::bad_alloc (0: none).
  void fail_chunks_of(int64_t steps) { fail_steps_.store(steps); }

  static constexpr int64_t kMinHalfRound = 32;
  // The engine counts as busy for a window after one in which it ran at least half the time.
  static constexpr Clock::duration kLoadWindow = std::chrono::milliseconds(20);

 private:
  struct Waiter;
  struct Request {
    Request(int64_t slot_, int64_t steps_, const float* x_, float* y_, uint64_t token_ = 0)
        : slot(slot_), steps(steps_), x(x_), y(y_), token(token_) {}
    int64_t slot, steps;
    const float* x;
    float* y;
    uint64_t token;
    Waiter* waiter = nullptr;  // a blocking caller's; null: asynchronous (heap-allocated)
    Clock::time_point arrived;
    std::exception_ptr error;
  };

  static Waiter& this_threads_waiter();
  // Whether the engine ran at least half of the last window: only then does a chunk wait for
  // others (the wait saves engine time; with the engine mostly idle it would only add latency).
  bool engine_busy() const;
  void note_engine_time(Clock::time_point start);  // after a round or a caller's run (run_mu_)
  void enqueue_locked(Request* req);
  bool caller_may_run_locked() const;
  std::vector<Request*> next_batch();
  void work();
  void run_round(std::vector<Request*>& batch);
  void run_group(Request* const* reqs, int64_t k);
  void collect_released();
  int64_t capacity_locked() const;  // slots allocated (run_mu_ held)
  void complete(std::vector<Request*>& done);
  float* h_row(int64_t slot) { return h_slots_.data() + slot * hf_; }
  float* c_row(int64_t slot) { return cf_ ? c_slots_.data() + slot * cf_ : nullptr; }

  std::shared_ptr<const Backend> backend_;
  const int64_t max_batch_;
  const Clock::duration max_delay_;
  const CompletionSink sink_;
  const int64_t hf_, cf_, input_size_, output_size_;

  // queue_mu_: the queue and the worker's wake-up
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Request*> queue_;
  int64_t wake_at_ = 0;  // queue length at which the worker wants a notify (0: not waiting)
  int64_t held_ = 0;     // chunks the worker took and has not finished
  std::unique_ptr<std::thread> worker_;
  std::atomic<bool> closed_{false};

  // run_mu_: the slots and the engine (a round, a caller's own run, slot changes)
  std::mutex run_mu_;
  std::vector<float> h_slots_, c_slots_;  // [capacity, h_floats] / [capacity, c_floats]
  std::vector<int64_t> free_;             // free slots, next last
  std::vector<float> x_stage_, y_stage_;  // a group's inputs [T, k, I] and outputs [T, k, O]
  std::vector<float> h_stage_, c_stage_;  // its states in a whole StreamState's layout
  Clock::time_point window_start_;        // the engine's load window (see engine_busy)
  Clock::duration busy_time_{};
  std::atomic<int64_t> busy_until_{0};  // Clock ticks: busy until then
  std::atomic<int> pretend_{0};         // tests: 1 busy, -1 idle, 0 measured

  std::mutex released_mu_;
  std::vector<int64_t> released_;
  std::atomic<int64_t> open_count_{0}, released_count_{0};

  std::atomic<int64_t> rounds_{0}, chunks_run_{0}, fail_steps_{0};
};

}  // namespace pylstm
