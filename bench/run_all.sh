#!/usr/bin/env bash
# Runs thaw's benchmark, then PyTorch's on the same workloads
# (bench/workloads.json), then prints the thaw/PyTorch ratio table.
#
#     bench/run_all.sh [--quick] [--threads N]
#
# Run from anywhere; works in the repository root. Results go to
# target/bench/{thaw,pytorch}.json and the ratio table to
# target/bench/compare.md. PYTHON picks the interpreter with torch and
# torchvision (default: /work/venv-torch/bin/python if present, else python3).
# The extract workloads read the CIFAR-10 JPEG test split, unpacked once into
# target/bench-data from ../shared/data/cifar10-jpeg.tar.xz (or set
# THAW_BENCH_DATA to a cifar10-jpeg/test folder).
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
threads=$(nproc)
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) args+=(--quick) ;;
        --threads) threads="$2"; shift ;;
        *) echo "usage: bench/run_all.sh [--quick] [--threads N]" >&2; exit 2 ;;
    esac
    shift
done

if [ -z "${PYTHON:-}" ]; then
    if [ -x /work/venv-torch/bin/python ]; then PYTHON=/work/venv-torch/bin/python; else PYTHON=python3; fi
fi

data="${THAW_BENCH_DATA:-target/bench-data/cifar10-jpeg/test}"
tarball=../shared/data/cifar10-jpeg.tar.xz
if [ ! -d "$data" ] && [ -z "${THAW_BENCH_DATA:-}" ] && [ -f "$tarball" ]; then
    echo "unpacking the CIFAR-10 JPEG test split into target/bench-data ..." >&2
    mkdir -p target/bench-data
    tar -xJf "$tarball" -C target/bench-data cifar10-jpeg/test
fi

mkdir -p target/bench
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)" >&2
cargo build --release -p bench
cargo run --release -q -p bench -- "${args[@]}" --threads "$threads" --data "$data" \
    --json target/bench/thaw.json | tee target/bench/thaw.md
"$PYTHON" bench/pytorch_bench.py "${args[@]}" --threads "$threads" --data "$data" \
    --json target/bench/pytorch.json | tee target/bench/pytorch.md
cargo run --release -q -p bench -- --compare target/bench/thaw.json target/bench/pytorch.json \
    | tee target/bench/compare.md
