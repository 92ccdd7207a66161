// The machine's fp32 multiply-add peak with one instruction set's kernels (fma_peak.hpp), on
// several threads at once: the bench's "% peak" column divides by it.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "dispatch.hpp"

namespace pylstm {
namespace {

// Seconds that `rounds` rounds of the chains take; *flops: the flops done.
double seconds_of(const KernelSet& k, int64_t rounds, int64_t* flops) {
  static volatile float seed = 0.5f;  // unknown to the compiler; the chains stay finite (|x| < 1)
  float value = seed;
  const auto start = std::chrono::steady_clock::now();
  *flops = k.fma_chains(rounds, &value);
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  if (value == 42.f) seed = value;  // the result is used (never true)
  return took.count();
}

}  // namespace

double fma_peak_gflops(const std::string& isa, int threads, double seconds) {
  const KernelSet& k = select_kernels(isa);
  threads = std::max(1, threads);
  int64_t flops = 0, rounds = 1 << 12;
  double took = 0.0;
  while ((took = seconds_of(k, rounds, &flops)) < 2e-3 && rounds < (int64_t{1} << 40)) {
    rounds *= 2;  // calibrate on a run of at least 2 ms
  }
  rounds = std::max<int64_t>(1, static_cast<int64_t>(rounds * seconds / took));
  double best = 0.0;
  for (int repeat = 0; repeat < 3; ++repeat) {  // the best of three: other work may interrupt
    std::atomic<bool> go{false};
    std::vector<double> rate(threads, 0.0);
    std::vector<std::thread> team;
    for (int t = 0; t < threads; ++t) {
      team.emplace_back([&, t] {
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        int64_t done = 0;
        const double s = seconds_of(k, rounds, &done);
        rate[t] = static_cast<double>(done) / s / 1e9;
      });
    }
    go.store(true, std::memory_order_release);
    for (auto& member : team) member.join();
    double total = 0.0;
    for (double r : rate) total += r;
    best = std::max(best, total);
  }
  return best;
}

}  // namespace pylstm
