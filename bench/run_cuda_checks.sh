#!/usr/bin/env bash
# The checks that need a GPU, in one go (run from the repository root, pylstm installed with
# the CUDA backend and torch with CUDA in the active environment):
#
#   1. the CUDA tests, plainly;
#   2. the same under compute-sanitizer: memcheck (out-of-bounds / misaligned accesses, leaks),
#      racecheck and synccheck (shared-memory races and barrier misuse in the persistent kernel)
#      on a subset, initcheck (reads of uninitialized device memory);
#   3. the CUDA benchmark against cuDNN, writing bench/results/cuda-<date>.json.
#
# Usage: bash bench/run_cuda_checks.sh [--quick]     (--quick: a short benchmark grid)
# Logs go to bench/results/cuda-checks-<date>/; the script stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=$(date +%Y%m%d-%H%M%S)
logs=bench/results/cuda-checks-$stamp
mkdir -p "$logs"
quick=""
[[ "${1:-}" == "--quick" ]] && quick="--quick"

python - <<'PY'
import pylstm
info = pylstm.info()
print("pylstm", info["version"], "CUDA compiled:", info["cuda_compiled"], "devices:", info["cuda_devices"])
if not info["cuda_devices"]:
    raise SystemExit("no CUDA device: " + info["cuda_status"])
PY

sanitizer=$(command -v compute-sanitizer || true)
for candidate in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
  [[ -z "$sanitizer" && -x "$candidate" ]] && sanitizer=$candidate
done

tests="tests/test_cuda_parity.py tests/test_cuda_arrays.py tests/test_cuda_build.py"
echo "== 1. CUDA tests"
python -m pytest $tests -q -rs 2>&1 | tee "$logs/tests.log"

if [[ -n "$sanitizer" ]]; then
  # PyTorch's caching allocator hides out-of-bounds accesses inside its pools from memcheck;
  # PYTORCH_NO_CUDA_MEMORY_CACHING=1 makes every tensor its own allocation.
  export PYTORCH_NO_CUDA_MEMORY_CACHING=1
  san="$sanitizer --error-exitcode 99 --target-processes all --print-limit 20"
  echo "== 2a. compute-sanitizer memcheck (leak check on)"
  $san --tool memcheck --leak-check full \
    python -m pytest $tests -q -x -k "not threads and not stream_is_respected" 2>&1 | tee "$logs/memcheck.log"
  echo "== 2b. compute-sanitizer racecheck / synccheck (persistent kernel, small cases)"
  for tool in racecheck synccheck; do
    PYLSTM_CUDA_STRATEGY=persistent $san --tool $tool \
      python -m pytest tests/test_cuda_parity.py -q -x -k "variants and persistent and 2" 2>&1 | tee "$logs/$tool.log"
  done
  echo "== 2c. compute-sanitizer initcheck"
  $san --tool initcheck \
    python -m pytest tests/test_cuda_parity.py -q -x -k "against_cpu and (steps or persistent)" 2>&1 | tee "$logs/initcheck.log"
else
  echo "compute-sanitizer not found (it ships with the CUDA toolkit: /usr/local/cuda/bin); skipped" | tee "$logs/sanitizer-skipped.log"
fi

echo "== 3. benchmark against cuDNN"
python -m pylstm.bench.cuda $quick --json "bench/results/cuda-$stamp.json" 2>&1 | tee "$logs/bench.log"
echo "logs in $logs; record bench/results/cuda-$stamp.json"
