#!/usr/bin/env bash
# Build pylstm's engine with sanitizers in a folder of its own and run tests under them.
#
#   bash tools/sanitize.sh asan [pytest args...]   # AddressSanitizer + UndefinedBehaviorSanitizer
#   bash tools/sanitize.sh tsan [pytest args...]   # ThreadSanitizer (the thread pool, streams)
#
# The committed tree (git archive HEAD; set PYLSTM_SANITIZE_TREE=worktree for the working tree)
# is copied to $PYLSTM_SANITIZE_DIR (default /tmp/pylstm-sanitize/<kind>) and built there with
# `python setup.py build_ext --inplace` (PYLSTM_CUDA=OFF, RelWithDebInfo, CXXFLAGS/LDFLAGS with the
# sanitizer): the editable install of the checkout is never touched. The tests then run from that
# copy (its pylstm/ comes first on sys.path) with the sanitizer runtime in LD_PRELOAD, since the
# Python interpreter itself is not instrumented. Any sanitizer report fails the run
# (halt_on_error) and is printed at the end (from $dir/report.<pid>); leak detection is off
# (CPython and its extensions keep memory until exit).
#
# Default test subset (the engine, its callers and the hostile files; the Keras-live, CUDA, bench,
# distributed and fuzz tests are left out as slow under a sanitizer or not about the engine):
#   asan: test_torch_parity test_torch_files test_safetensors_files test_load test_stream
#         test_threads test_precision test_kernel_paths test_activations test_onnx_ops
#         test_onnx_models test_hostile_files test_endurance
#   tsan: test_threads test_stream test_batcher test_endurance (not the fork tests)
# Run it niced on a shared machine: nice -n 19 bash tools/sanitize.sh asan
set -euo pipefail
kind="${1:-asan}"
shift || true
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${PYLSTM_SANITIZE_DIR:-/tmp/pylstm-sanitize/$kind}"
case "$kind" in
  asan)
    flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g"
    runtime="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
    default_tests=(tests/test_torch_parity.py tests/test_torch_files.py tests/test_safetensors_files.py
      tests/test_load.py tests/test_stream.py tests/test_threads.py tests/test_precision.py
      tests/test_kernel_paths.py tests/test_activations.py tests/test_onnx_ops.py
      tests/test_onnx_models.py tests/test_hostile_files.py tests/test_endurance.py)
    export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86:detect_odr_violation=0:allocator_may_return_null=1:log_path=$dir/report"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87:log_path=$dir/report"
    ;;
  tsan)
    flags="-fsanitize=thread -fno-omit-frame-pointer -g"
    runtime="$(gcc -print-file-name=libtsan.so)"
    # TSan cannot follow a fork of a threaded process: the fork tests are left out
    default_tests=(tests/test_threads.py tests/test_stream.py tests/test_batcher.py
      tests/test_endurance.py -k "not fork")
    export TSAN_OPTIONS="halt_on_error=1:exitcode=88:report_signal_unsafe=0:log_path=$dir/report"
    ;;
  *)
    echo "usage: bash tools/sanitize.sh asan|tsan [pytest args...]" >&2
    exit 2
    ;;
esac
. "${PYLSTM_VENV:-/work/venv}/bin/activate"
rm -rf "$dir"
mkdir -p "$dir"
if [ "${PYLSTM_SANITIZE_TREE:-head}" = worktree ]; then
  (cd "$here" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$dir"
else
  (cd "$here" && git archive HEAD) | tar -xf - -C "$dir"
fi
cd "$dir"
start=$(date +%s)
CXXFLAGS="$flags" CFLAGS="$flags" LDFLAGS="$flags" PYLSTM_CUDA=OFF PYLSTM_BUILD_TYPE=RelWithDebInfo \
  PYLSTM_BUILD_JOBS="${PYLSTM_BUILD_JOBS:-2}" python setup.py -q build_ext --inplace > build.log 2>&1 \
  || { tail -50 build.log; exit 1; }
echo "built in $(( $(date +%s) - start )) s in $dir"
tests=("$@")
[ ${#tests[@]} -eq 0 ] && tests=("${default_tests[@]}")
start=$(date +%s)
# setarch -R: ThreadSanitizer needs the classic address-space layout on kernels with a high
# mmap_rnd_bits; harmless for ASan.
run=(env LD_PRELOAD="$runtime" PYTHONPATH="$dir" python -c "import pylstm, sys; assert pylstm.__file__.startswith('$dir'), pylstm.__file__; sys.exit(__import__('pytest').main(sys.argv[1:]))" -q -p no:cacheprovider "${tests[@]}")
if command -v setarch > /dev/null && setarch "$(uname -m)" -R true 2>/dev/null; then
  run=(setarch "$(uname -m)" -R "${run[@]}")
fi
status=0
"${run[@]}" || status=$?
echo "$kind: tests finished in $(( $(date +%s) - start )) s with status $status"
# pytest captures the test process's stderr: the sanitizer writes its reports to files instead.
# Reports whose stack is inside libhdf5 come from the HDF5 probe's child processes reading the
# deliberately corrupt fixtures (tests/fixtures/hostile): that crash is contained by design.
for report in "$dir"/report.*; do
  [ -e "$report" ] || continue
  echo "=== $report"
  head -60 "$report"
done
exit $status
