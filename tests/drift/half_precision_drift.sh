#!/usr/bin/env bash
# How far f16/bf16 features move from f32 (docs/cuda.md, "Half precision"):
# `trainer extract` in f32, f16 and bf16 on the CPU (the emulation, which
# the GPU path is checked against) on N CIFAR-10 test JPEGs per class, with
# seeded weights (not ImageNet's), then max |Δ| and relative L2 per model.
#
#   tests/drift/half_precision_drift.sh [SIZE] [PER_CLASS]    # default 224 px, 7 images per class
#
# Needs: release builds of `trainer` and `seeded_weights` in
# $CARGO_TARGET_DIR (default target/), ../shared/data/cifar10-jpeg.tar.xz,
# python3 with numpy (or $PYTHON). Work files go to $WORK (default /tmp/thaw-drift).
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${1:-224}
PER_CLASS=${2:-7}
BIN="${CARGO_TARGET_DIR:-target}/release"
WORK="${WORK:-/tmp/thaw-drift}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$WORK"
[ -d "$WORK/cifar10-jpeg/test" ] ||
    tar -xJf ../shared/data/cifar10-jpeg.tar.xz -C "$WORK" --wildcards 'cifar10-jpeg/test/*'
# The first PER_CLASS files (sorted by name) of each class.
rm -rf "$WORK/subset" && mkdir -p "$WORK/subset/test"
for class_dir in "$WORK"/cifar10-jpeg/test/*; do
    class=$(basename "$class_dir")
    mkdir -p "$WORK/subset/test/$class"
    mapfile -t files < <(find "$class_dir" -name '*.jpg' | sort)
    cp "${files[@]:0:$PER_CLASS}" "$WORK/subset/test/$class/"
done
for model in vgg16 resnet50; do
    "$BIN/seeded_weights" "$model" "$WORK/$model.safetensors"
    for p in f32 f16 bf16; do
        "$BIN/trainer" extract --model "$model" --weights "$WORK/$model.safetensors" \
            --data "$WORK/subset/test" --image-size "$SIZE" --pooling avg \
            --device cpu --batch-size 35 --precision "$p" --out "$WORK/$model-$SIZE-$p.npy"
    done
done
"$PYTHON" - "$WORK" "$SIZE" <<'PY'
import sys
import numpy as np
work, size = sys.argv[1], sys.argv[2]
for m in ["vgg16", "resnet50"]:
    f = np.load(f"{work}/{m}-{size}-f32.npy").astype(np.float64)
    for p in ["f16", "bf16"]:
        d = np.load(f"{work}/{m}-{size}-{p}.npy").astype(np.float64) - f
        print(f"{m} @{size} {p}: {f.shape[0]} images, {f.shape[1]} features, max |f32| {np.abs(f).max():.4g}, "
              f"max |d| {np.abs(d).max():.3e}, relative L2 {np.linalg.norm(d) / np.linalg.norm(f):.3e}")
PY
