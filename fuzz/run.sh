#!/usr/bin/env bash
# Builds every fuzz target and runs each, one after the other in one process,
# for RUNS executions (default 1,000,000), with bounds on memory and time:
#   -rss_limit_mb=2048   the process's resident memory
#   -malloc_limit_mb=1024 any single allocation (ASan's allocator reports it)
#   -timeout=10          seconds for one input (a hang is a failure)
#
#   fuzz/run.sh [RUNS] [TARGET...]        e.g. fuzz/run.sh 100000 npy image
#
# MAX_TIME=S stops each target after S seconds even if RUNS is not reached.
#
# Seeds are read from fuzz/corpus/<target>/ (committed); what the fuzzer adds
# goes to fuzz/work/<target>/, crashes to fuzz/artifacts/<target>/, logs to
# fuzz/work/logs/ (all git-ignored). Needs cargo-fuzz (`cargo install
# cargo-fuzz`) and a nightly toolchain; without nightly it builds with the
# stable one and RUSTC_BOOTSTRAP=1. Everything runs under `nice -n 19`.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-1000000}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(pytorch npy cifar_binary safetensors image keras_h5)
fi

if rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
else
  echo "no nightly toolchain: building with stable and RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  toolchain=()
fi
# The image target writes each input to a file in $TMPDIR: a RAM disk if there is one.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ]; then export TMPDIR=/dev/shm; fi

nice -n 19 cargo "${toolchain[@]}" fuzz build --fuzz-dir fuzz

mkdir -p fuzz/work/logs
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
  log="fuzz/work/logs/$t.log"
  echo "== $t: $runs executions (log: $log)"
  start=$(date +%s)
  if nice -n 19 cargo "${toolchain[@]}" fuzz run --fuzz-dir fuzz "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
    -runs="$runs" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -detect_leaks=0 \
    -print_final_stats=1 ${MAX_TIME:+-max_total_time=$MAX_TIME} >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log and fuzz/artifacts/$t/)"
    status=1
  fi
  secs=$(($(date +%s) - start))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -oE '(DONE|#[0-9]+).*cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || echo '?')
  echo "$t: $result; $execs executions in ${secs}s; $cov" | tee -a fuzz/work/logs/summary.txt
done
exit $status
