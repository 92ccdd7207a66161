// Read bandwidth per core from each cache level, both cores at once: the floor of a step that
// streams the recurrent weights (README, "Speed"). Each core sums its own buffer (huge pages,
// AVX-512 loads, 8 independent accumulators) repeatedly; one sweep's time is reported.
//
//   gcc -O2 -mavx512f -fopenmp bench/cache_bandwidth.c -o /tmp/cache_bandwidth && /tmp/cache_bandwidth
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
  const size_t huge = 2 << 20;
  const size_t sizes[] = {256 << 10, 512 << 10, 1536 << 10, 8 << 20, 16 << 20};
  for (int si = 0; si < 5; si++) {
    const size_t bytes = sizes[si];
    double best = 1e9;
#pragma omp parallel num_threads(2)
    {
      const size_t n = bytes / sizeof(float);
      float* a = aligned_alloc(huge, (bytes + huge - 1) / huge * huge);
      madvise(a, bytes, MADV_HUGEPAGE);
      for (size_t i = 0; i < n; i++) a[i] = i * 1e-9f;
      __m512 acc[8];
      for (int j = 0; j < 8; j++) acc[j] = _mm512_setzero_ps();
      const int reps = (int)((256u << 20) / bytes);
      for (int r = 0; r < 3; r++) {
#pragma omp barrier
        const double t0 = now();
        for (int k = 0; k < reps; k++) {
          for (size_t i = 0; i < n; i += 128) {
            for (int j = 0; j < 8; j++) acc[j] = _mm512_add_ps(acc[j], _mm512_load_ps(a + i + 16 * j));
          }
        }
#pragma omp barrier
        const double t = (now() - t0) / reps;
#pragma omp critical
        if (omp_get_thread_num() == 0 && t < best) best = t;
      }
      float s = 0;
      for (int j = 0; j < 8; j++) s += _mm512_reduce_add_ps(acc[j]);
      if (s == 1.2345f) printf(" ");  // keeps the sums alive
      free(a);
    }
    printf("%6zu KB per core: one sweep %8.2f us, %5.1f GB/s per core\n", bytes >> 10, best * 1e6,
           bytes / best / 1e9);
  }
  return 0;
}
