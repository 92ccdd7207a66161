// CellBatcher: see cell_batcher.hpp for what it does and its locks.
#include "cell_batcher.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include "thread_pool.hpp"

namespace pylstm {

// Where a blocking caller sleeps until its chunk has run. One per thread (a thread waits for
// one chunk at a time), so it outlives every wake-up the worker sends it.
struct CellBatcher::Waiter {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
};

namespace {
constexpr int64_t kInitialSlots = 16;

std::exception_ptr closed_error(const char* what) {
  return std::make_exception_ptr(BatcherClosedError(what));
}

// The states of k streams between their slots ([slot][per_seq floats]: the blocks of one
// sequence one after another) and a whole StreamState's layout ([block][k][block floats]):
// into `whole` (to_slots false) or back into the slots (true).
template <typename Req>
void move_states(const std::vector<int64_t>& blocks, float* slots, int64_t per_seq, float* whole,
                 Req* const* reqs, int64_t k, bool to_slots) {
  int64_t prefix = 0;
  for (const int64_t n : blocks) {
    for (int64_t j = 0; j < k; ++j) {
      float* slot_part = slots + reqs[j]->slot * per_seq + prefix;
      float* whole_part = whole + prefix * k + j * n;
      std::memcpy(to_slots ? slot_part : whole_part, to_slots ? whole_part : slot_part,
                  sizeof(float) * n);
    }
    prefix += n;
  }
}
}  // namespace

CellBatcher::Waiter& CellBatcher::this_threads_waiter() {
  thread_local Waiter waiter;
  return waiter;
}

CellBatcher::CellBatcher(std::shared_ptr<const Backend> backend, int64_t max_batch,
                         double max_delay_s, CompletionSink sink)
    : backend_(std::move(backend)),
      max_batch_(max_batch),
      max_delay_(
          std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(max_delay_s))),
      sink_(std::move(sink)),
      hf_(backend_->h_floats()),
      cf_(backend_->c_floats()),
      input_size_(backend_->input_size()),
      output_size_(backend_->output_size()) {
  if (max_batch < 1) throw std::invalid_argument("max_batch must be >= 1");
  h_slots_.assign(static_cast<size_t>(kInitialSlots * hf_), 0.0f);
  c_slots_.assign(static_cast<size_t>(kInitialSlots * cf_), 0.0f);
  for (int64_t s = kInitialSlots - 1; s >= 0; --s) free_.push_back(s);
}

CellBatcher::~CellBatcher() { close(); }

// -- slots ----------------------------------------------------------------------------------

void CellBatcher::collect_released() {
  std::vector<int64_t> slots;
  {
    std::lock_guard<std::mutex> lock(released_mu_);
    slots.swap(released_);
  }
  for (int64_t slot : slots) {
    std::fill_n(h_row(slot), hf_, 0.0f);
    if (cf_) std::fill_n(c_row(slot), cf_, 0.0f);
    free_.push_back(slot);
    released_count_.fetch_sub(1);
    open_count_.fetch_sub(1);
  }
}

int64_t CellBatcher::open_slot(const float* h, const float* c) {
  std::lock_guard<std::mutex> run(run_mu_);
  collect_released();
  if (free_.empty()) {
    const int64_t old = capacity_locked();
    const int64_t capacity = 2 * std::max<int64_t>(old, 1);
    h_slots_.resize(static_cast<size_t>(capacity * hf_), 0.0f);
    c_slots_.resize(static_cast<size_t>(capacity * cf_), 0.0f);
    for (int64_t s = capacity - 1; s >= old; --s) free_.push_back(s);
  }
  const int64_t slot = free_.back();
  free_.pop_back();
  if (h != nullptr) std::memcpy(h_row(slot), h, sizeof(float) * hf_);
  if (c != nullptr && cf_) std::memcpy(c_row(slot), c, sizeof(float) * cf_);
  open_count_.fetch_add(1);
  return slot;
}

void CellBatcher::release_slot(int64_t slot) {
  std::lock_guard<std::mutex> lock(released_mu_);
  released_.push_back(slot);
  released_count_.fetch_add(1);
}

void CellBatcher::reset_slot(int64_t slot) {
  std::lock_guard<std::mutex> run(run_mu_);
  std::fill_n(h_row(slot), hf_, 0.0f);
  if (cf_) std::fill_n(c_row(slot), cf_, 0.0f);
}

void CellBatcher::read_slot(int64_t slot, float* h, float* c) {
  std::lock_guard<std::mutex> run(run_mu_);
  std::memcpy(h, h_row(slot), sizeof(float) * hf_);
  if (c != nullptr && cf_) std::memcpy(c, c_row(slot), sizeof(float) * cf_);
}

int64_t CellBatcher::live_streams() const { return open_count_.load() - released_count_.load(); }

int64_t CellBatcher::slot_capacity() {
  std::lock_guard<std::mutex> run(run_mu_);
  return capacity_locked();
}

int64_t CellBatcher::capacity_locked() const {
  return static_cast<int64_t>(h_slots_.size()) / std::max<int64_t>(hf_, 1);
}

int64_t CellBatcher::round_size() const {
  const int64_t live = live_streams();
  const int64_t half = live >= 2 * kMinHalfRound ? (live + 1) / 2 : live;
  return std::max<int64_t>(1, std::min(max_batch_, half));
}

// -- chunks -----------------------------------------------------------------------------------

bool CellBatcher::caller_may_run_locked() const {
  return queue_.empty() && held_ == 0 &&
         (max_delay_ == Clock::duration::zero() || live_streams() <= 1 || !engine_busy());
}

bool CellBatcher::engine_busy() const {
  return Clock::now().time_since_epoch().count() < busy_until_.load();
}

void CellBatcher::note_engine_time(Clock::time_point start) {
  if (pretend_.load() != 0) return;
  const Clock::time_point end = Clock::now();
  busy_time_ += end - start;
  const Clock::duration window = end - window_start_;
  if (window < kLoadWindow) return;
  if (2 * busy_time_ >= window) busy_until_.store((end + kLoadWindow).time_since_epoch().count());
  window_start_ = end;
  busy_time_ = Clock::duration::zero();
}

void CellBatcher::enqueue_locked(Request* req) {
  req->arrived = Clock::now();
  queue_.push_back(req);
  if (!worker_) worker_ = std::make_unique<std::thread>([this] { work(); });
  // (a wake-up per chunk would cost a thread switch per chunk)
  if (wake_at_ > 0 && wake_at_ <= static_cast<int64_t>(queue_.size())) {
    wake_at_ = 0;
    queue_cv_.notify_one();
  }
}

void CellBatcher::step(int64_t slot, int64_t steps, const float* x, float* y) {
  Request req(slot, steps, x, y);
  Waiter& waiter = this_threads_waiter();
  {
    std::unique_lock<std::mutex> lock(queue_mu_);
    if (closed_) throw BatcherClosedError("the StreamBatcher is closed");
    if (caller_may_run_locked() && run_mu_.try_lock()) {
      // Nobody to batch with: run here, no thread hand-off.
      lock.unlock();
      std::lock_guard<std::mutex> run(run_mu_, std::adopt_lock);
      collect_released();
      const Clock::time_point start = Clock::now();
      Request* one = &req;
      run_group(&one, 1);
      note_engine_time(start);
      if (req.error) std::rethrow_exception(req.error);
      return;
    }
    waiter.done = false;
    req.waiter = &waiter;
    enqueue_locked(&req);
  }
  {
    std::unique_lock<std::mutex> lock(waiter.mu);
    waiter.cv.wait(lock, [&] { return waiter.done; });
  }
  if (req.error) std::rethrow_exception(req.error);
}

void CellBatcher::submit(int64_t slot, int64_t steps, const float* x, float* y, uint64_t token) {
  auto req = std::make_unique<Request>(slot, steps, x, y, token);
  std::lock_guard<std::mutex> lock(queue_mu_);
  if (closed_) throw BatcherClosedError("the StreamBatcher is closed");
  enqueue_locked(req.release());
}

std::vector<CellBatcher::Request*> CellBatcher::next_batch() {
  std::unique_lock<std::mutex> lock(queue_mu_);
  while (queue_.empty() && !closed_) {
    wake_at_ = 1;
    queue_cv_.wait(lock);
  }
  // While the engine is busy, wait for the other open streams' chunks to fill the round, at
  // most max_delay after the oldest pending chunk arrived (a lone open stream never waits).
  while (!closed_ && max_delay_ > Clock::duration::zero() && engine_busy()) {
    const int64_t want = round_size();
    const Clock::time_point deadline = queue_.front()->arrived + max_delay_;
    if (static_cast<int64_t>(queue_.size()) >= want || Clock::now() >= deadline) break;
    wake_at_ = want;
    queue_cv_.wait_until(lock, deadline);
  }
  wake_at_ = 0;
  if (closed_) return {};
  const int64_t n = std::min(static_cast<int64_t>(queue_.size()), round_size());
  std::vector<Request*> batch(queue_.begin(), queue_.begin() + n);
  queue_.erase(queue_.begin(), queue_.begin() + n);
  held_ = n;
  return batch;
}

void CellBatcher::work() {
  // Leave the callers' threads a CPU to take results and send chunks on while a round runs.
  ThreadPool::leave_cpus_in_this_thread(1);
  for (;;) {
    std::vector<Request*> batch = next_batch();
    if (batch.empty()) return;  // closed (close() failed the pending chunks)
    {
      std::lock_guard<std::mutex> run(run_mu_);
      if (closed_) {
        for (Request* req : batch) req->error = closed_error("the StreamBatcher was closed");
      } else {
        collect_released();
        const Clock::time_point start = Clock::now();
        run_round(batch);
        note_engine_time(start);
      }
    }
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      held_ = 0;
    }
    complete(batch);
  }
}

void CellBatcher::run_round(std::vector<Request*>& batch) {
  // Chunks of equal length run as one engine call; different lengths as separate calls.
  std::stable_sort(batch.begin(), batch.end(),
                   [](const Request* a, const Request* b) { return a->steps < b->steps; });
  size_t begin = 0;
  while (begin < batch.size()) {
    size_t end = begin + 1;
    while (end < batch.size() && batch[end]->steps == batch[begin]->steps) ++end;
    run_group(batch.data() + begin, static_cast<int64_t>(end - begin));
    begin = end;
  }
}

// k chunks of T steps each (run_mu_ held): their states gathered into one engine state, one
// engine call over [T, k, I], the states and outputs scattered back. An engine error fails the
// group and leaves its streams' states as they were.
void CellBatcher::run_group(Request* const* reqs, int64_t k) {
  const int64_t T = reqs[0]->steps;
  const int64_t I = input_size_, O = output_size_;
  try {
    if (fail_steps_.load() == T) throw std::bad_alloc();
    std::unique_ptr<StreamState> state = backend_->open_state(k);
    if (k == 1) {  // one sequence: its slot rows and the caller's rows are the engine's layout
      Request& req = *reqs[0];
      state->set(h_row(req.slot), c_row(req.slot));
      backend_->step(*state, T, Rows<const float>{req.x, I, 0}, Rows<float>{req.y, O, 0});
      state->get(h_row(req.slot), c_row(req.slot));
    } else {
      // The states go into the engine's state with one copy (one transfer on a device), not
      // one per row and block; the chunks are interleaved into [T, k, I].
      const NetworkSizes& sizes = backend_->sizes();
      h_stage_.resize(static_cast<size_t>(k * hf_));
      c_stage_.resize(static_cast<size_t>(k * cf_));
      move_states(sizes.h_blocks, h_slots_.data(), hf_, h_stage_.data(), reqs, k, false);
      move_states(sizes.c_blocks, c_slots_.data(), cf_, c_stage_.data(), reqs, k, false);
      state->set(h_stage_.data(), cf_ ? c_stage_.data() : nullptr);
      x_stage_.resize(static_cast<size_t>(T * k * I));
      y_stage_.resize(static_cast<size_t>(T * k * O));
      for (int64_t j = 0; j < k; ++j) {
        for (int64_t t = 0; t < T; ++t) {
          std::memcpy(&x_stage_[(t * k + j) * I], reqs[j]->x + t * I, sizeof(float) * I);
        }
      }
      backend_->step(*state, T, Rows<const float>{x_stage_.data(), k * I, I},
                     Rows<float>{y_stage_.data(), k * O, O});
      for (int64_t j = 0; j < k; ++j) {
        for (int64_t t = 0; t < T; ++t) {
          std::memcpy(reqs[j]->y + t * O, &y_stage_[(t * k + j) * O], sizeof(float) * O);
        }
      }
      state->get(h_stage_.data(), cf_ ? c_stage_.data() : nullptr);
      move_states(sizes.h_blocks, h_slots_.data(), hf_, h_stage_.data(), reqs, k, true);
      move_states(sizes.c_blocks, c_slots_.data(), cf_, c_stage_.data(), reqs, k, true);
    }
  } catch (...) {
    for (int64_t j = 0; j < k; ++j) reqs[j]->error = std::current_exception();
  }
  rounds_.fetch_add(1);
  chunks_run_.fetch_add(k);
}

void CellBatcher::complete(std::vector<Request*>& done) {
  std::vector<Completion> async_done;
  for (Request* req : done) {
    if (Waiter* waiter = req->waiter) {  // req lives on the caller's stack: not touched after
      {
        std::lock_guard<std::mutex> lock(waiter->mu);
        waiter->done = true;
      }
      waiter->cv.notify_one();
    } else {
      async_done.push_back({req->token, req->error});
      delete req;
    }
  }
  if (!async_done.empty() && sink_) sink_(async_done);
}

void CellBatcher::close() {
  std::vector<Request*> pending;
  std::unique_ptr<std::thread> worker;
  {
    std::lock_guard<std::mutex> lock(queue_mu_);
    if (closed_.exchange(true)) return;
    pending.assign(queue_.begin(), queue_.end());
    queue_.clear();
    worker = std::move(worker_);
    queue_cv_.notify_all();
  }
  for (Request* req : pending) req->error = closed_error("the StreamBatcher was closed");
  complete(pending);
  if (worker) {
    if (worker->get_id() == std::this_thread::get_id()) {
      worker->detach();  // closed from a completion callback: the worker ends by itself
    } else {
      worker->join();
    }
  }
}

void CellBatcher::after_fork_in_child() {
  // The parent's locks may have been held by threads the child does not have.
  new (&queue_mu_) std::mutex();
  new (&queue_cv_) std::condition_variable();
  new (&run_mu_) std::mutex();
  new (&released_mu_) std::mutex();
  queue_.clear();           // their callers are in the parent
  (void)worker_.release();  // not a thread of this process: neither joined nor destroyed
  wake_at_ = 0;
  held_ = 0;
}

}  // namespace pylstm
