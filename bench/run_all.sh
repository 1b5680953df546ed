#!/usr/bin/env bash
# Runs thaw's benchmark, then PyTorch's on the same workloads
# (bench/workloads.json), then prints the thaw/PyTorch ratio table.
#
#     bench/run_all.sh [--quick] [--threads N] [--rounds R] [--filter TEXT]
#
# Run from anywhere; works in the repository root. Results go to
# target/bench/{thaw,pytorch}.json and the ratio table to
# target/bench/compare.md. With --rounds R (R > 1) both engines run R times,
# taking turns at going first (round 1 thaw first, round 2 PyTorch first,
# ...), into target/bench/{thaw,pytorch}.rN.json, and compare.md starts with
# each row's ratio per round, their median and range: on a shared machine
# one run's row can be off by 2x, so quote the median of several rounds.
# --filter TEXT runs only the workloads whose names contain TEXT (and the
# peak), on both sides: `--filter dw.` gives the depthwise rows.
# PYTHON picks the interpreter with torch and
# torchvision (default: /work/venv-torch/bin/python if present, else python3).
# The extract workloads read the CIFAR-10 JPEG test split, unpacked once into
# target/bench-data from ../shared/data/cifar10-jpeg.tar.xz (or set
# THAW_BENCH_DATA to a cifar10-jpeg/test folder). With THAW_BENCH_PHOTOS set
# to a folder of photos (bench/make_photos.py), the decode + resize row of
# image folders runs last (target/bench/decode.md).
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
threads=$(nproc)
rounds=1
usage="usage: bench/run_all.sh [--quick] [--threads N] [--rounds R] [--filter TEXT]"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) args+=(--quick) ;;
        --threads) threads="${2:?$usage}"; shift ;;
        --rounds) rounds="${2:?$usage}"; shift ;;
        --filter) args+=(--filter "${2:?$usage}"); shift ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
    shift
done
if ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]]; then
    echo "--rounds wants a whole number of rounds, 1 or more (got '$rounds'). $usage" >&2
    exit 2
fi

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
cargo build --release -p bench
thaw_bench=(cargo run --release -q -p bench --)

run_thaw() {  # $1: file stem (target/bench/$1.json, .md)
    echo "load before thaw: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)" >&2
    "${thaw_bench[@]}" "${args[@]}" --threads "$threads" --data "$data" \
        --json "target/bench/$1.json" | tee "target/bench/$1.md"
}
run_pytorch() {
    echo "load before PyTorch: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)" >&2
    "$PYTHON" bench/pytorch_bench.py "${args[@]}" --threads "$threads" --data "$data" \
        --json "target/bench/$1.json" | tee "target/bench/$1.md"
}

if [ "$rounds" = 1 ]; then
    run_thaw thaw
    run_pytorch pytorch
    pairs=(target/bench/thaw.json target/bench/pytorch.json)
else
    pairs=()
    for r in $(seq "$rounds"); do
        echo "== round $r of $rounds ==" >&2
        if [ $((r % 2)) = 1 ]; then
            run_thaw "thaw.r$r"; run_pytorch "pytorch.r$r"
        else
            run_pytorch "pytorch.r$r"; run_thaw "thaw.r$r"
        fi
        pairs+=("target/bench/thaw.r$r.json" "target/bench/pytorch.r$r.json")
    done
fi
"${thaw_bench[@]}" --compare "${pairs[@]}" | tee target/bench/compare.md

# Decode + resize of image folders (issue 18), when THAW_BENCH_PHOTOS names
# a folder of photos (bench/make_photos.py makes them from the CIFAR-10
# JPEG copy): thaw's streamed reader and torchvision on the same files,
# 2 threads each, 224 px, into target/bench/decode.md.
if [ -n "${THAW_BENCH_PHOTOS:-}" ]; then
    {
        echo "load before decode: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
        cargo run --release -q -p bench --bin thaw-decode-bench -- "$THAW_BENCH_PHOTOS" --size 224
        "$PYTHON" bench/decode_bench.py "$THAW_BENCH_PHOTOS" --size 224 --threads 2
    } | tee target/bench/decode.md
fi
