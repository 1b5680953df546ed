#!/usr/bin/env bash
# Runs thaw's GPU checks on a machine that has a GPU but no Rust toolchain
# (the lent device machine): build and bundle here, run there. See tests/gpu/README.md.
#
#   tests/gpu/run_on_device.sh build          # here: builds, strips and bundles into gpu-bundle/
#   tests/gpu/run_on_device.sh tests          # there: cuda_kernels, cuda_parity, model_parity, fine_tune_gpu
#   tests/gpu/run_on_device.sh extract MODEL [BATCH] [f32|f16|bf16]  # there: extract on all 60,000 images at 224 px
#   tests/gpu/run_on_device.sh finetune MODEL [SIZE] # there: train + fine-tune on CIFAR-10 on the GPU
#   tests/gpu/run_on_device.sh bench [--quick] [--cudnn benchmark|heuristic] # there: thaw-bench and pytorch_bench.py on the GPU, ratios
#   tests/gpu/run_on_device.sh weights        # there: look for ImageNet-pretrained weights already on disk
#
# The bundle (test executables, trainer, seeded_weights, thaw-bench with
# workloads.json and pytorch_bench.py, the CIFAR-10 JPEG tarball) stays under
# the 64 MiB the device tool carries: name gpu-bundle in `carry`. Results go
# to $OUT (logs) when it is set, else to gpu-out/.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUNDLE=gpu-bundle
OUT_DIR="${OUT:-gpu-out}"

build() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
    rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/bin"
    local exclude
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qx "/$BUNDLE/" "$exclude" 2>/dev/null || echo "/$BUNDLE/" >>"$exclude"
    # Test executables: cargo prints each one's path as JSON.
    nice -n 19 cargo test --release --no-run -p tests \
        --test cuda_kernels --test cuda_parity --test model_parity --message-format=json |
        grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | while read -r exe; do
        name=$(basename "$exe" | sed 's/-[0-9a-f]*$//')
        cp "$exe" "$BUNDLE/bin/$name"
    done
    nice -n 19 cargo test --release --no-run -p trainer --test fine_tune_gpu --message-format=json |
        grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | while read -r exe; do
        cp "$exe" "$BUNDLE/bin/fine_tune_gpu"
    done
    nice -n 19 cargo build --release -p trainer -p tests -p bench \
        --bin trainer --bin seeded_weights --bin thaw-bench
    cp "$CARGO_TARGET_DIR/release/trainer" "$CARGO_TARGET_DIR/release/seeded_weights" \
        "$CARGO_TARGET_DIR/release/thaw-bench" "$BUNDLE/bin/"
    strip "$BUNDLE"/bin/*
    # The benchmark's shared workload list and PyTorch's side of it.
    cp bench/workloads.json bench/pytorch_bench.py "$BUNDLE/"
    # The tests read fixtures through the path they were compiled in (env!("CARGO_MANIFEST_DIR")).
    echo "$PWD/tests" >"$BUNDLE/manifest_dir"
    data=../shared/data/cifar10-jpeg.tar.xz
    [ -f "$data" ] && cp "$data" "$BUNDLE/" || echo "note: $data not found; 'extract' will need it"
    du -sh "$BUNDLE"/* && du -sh "$BUNDLE"
}

# The folder holding shared library $1, searched where CUDA 13 and cuDNN 9
# are installed system-wide first (the dynamic loader's cache, /usr/local/cuda*,
# the distribution's library folder), then in the Python packages
# (nvidia-cublas, nvidia-cudnn-cu13, nvidia-cuda-nvrtc). Empty if none has it.
find_lib() {
    local lib=$1 d site
    d=$(ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l && /x86-64/ { print $NF; exit }')
    [ -n "$d" ] && { dirname "$d"; return; }
    for d in /usr/local/cuda*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib \
        /usr/lib/x86_64-linux-gnu /usr/local/cuda*/lib; do
        [ -e "$d/$lib" ] && { echo "$d"; return; }
    done
    site=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)
    [ -n "$site" ] && find $site -name "$lib" -printf '%h\n' 2>/dev/null | head -1
    return 0
}

# cuBLAS, cuDNN and NVRTC (for our kernels) on LD_LIBRARY_PATH, wherever they are.
setup() {
    local lib d dirs=""
    for lib in libcublas.so.13 libcudnn.so.9 libnvrtc.so.13; do
        d=$(find_lib "$lib")
        [ -n "$d" ] || {
            echo "no $lib: not in ldconfig -p, /usr/local/cuda*/{lib64,targets/x86_64-linux/lib}," \
                "/usr/lib/x86_64-linux-gnu, nor Python's site-packages; install CUDA 13 / cuDNN 9"
            exit 1
        }
        echo "found $lib in $d"
        case ":$dirs:" in *":$d:"*) ;; *) dirs="$dirs:$d" ;; esac
        [ "$lib" = libnvrtc.so.13 ] && export THAW_NVRTC_LIB="$d"
    done
    export LD_LIBRARY_PATH="${dirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    # Fixtures at the compiled-in path (the repo copy lives elsewhere there).
    local manifest
    manifest=$(cat "$BUNDLE/manifest_dir")
    if [ ! -e "$manifest" ]; then
        mkdir -p "$(dirname "$manifest")"
        ln -s "$PWD/tests" "$manifest"
    fi
    mkdir -p "$OUT_DIR"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT_DIR/gpu.txt"
}

tests() {
    setup
    local status=0
    for t in cuda_kernels cuda_parity model_parity fine_tune_gpu; do
        echo "== $t"
        "$BUNDLE/bin/$t" --nocapture --test-threads=1 2>&1 | tee "$OUT_DIR/$t.log" || status=1
    done
    return $status
}

extract() {
    local model=$1 batch=${2:-64} precision=${3:-f32}
    setup
    [ -d /tmp/cifar10-jpeg ] || tar -xJf "$BUNDLE/cifar10-jpeg.tar.xz" -C /tmp
    "$BUNDLE/bin/seeded_weights" "$model" "/tmp/$model.safetensors"
    # Peak GPU memory: nvidia-smi sampled every 100 ms while extract runs.
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"/tmp/mem-$model.txt" &
    local sampler=$!
    for split in train test; do
        "$BUNDLE/bin/trainer" extract --model "$model" --weights "/tmp/$model.safetensors" \
            --data /tmp/cifar10-jpeg --split "$split" --image-size 224 --pooling avg \
            --batch-size "$batch" --device cuda --precision "$precision" \
            --out "/tmp/$model-$precision-$split.npy" 2>&1 |
            tee -a "$OUT_DIR/extract-$model-$precision.log"
    done
    kill "$sampler"
    echo "$model $precision: peak GPU memory $(sort -n "/tmp/mem-$model.txt" | tail -1) MiB (nvidia-smi, whole GPU)" |
        tee -a "$OUT_DIR/extract-$model-$precision.log"
}

# `trainer train` on the GPU with seeded weights (ImageNet weights cannot be
# downloaded there): features, the head, then one epoch of fine-tuning of
# the last block, end to end on the GPU; the log has the phase times.
finetune() {
    local model=$1 size=${2:-224} block
    case "$model" in vgg16) block=block5 ;; resnet50) block=conv5 ;; *) echo "vgg16 or resnet50"; exit 2 ;; esac
    setup
    [ -d /tmp/cifar10-jpeg ] || tar -xJf "$BUNDLE/cifar10-jpeg.tar.xz" -C /tmp
    "$BUNDLE/bin/seeded_weights" "$model" "/tmp/$model.safetensors"
    THAW_CACHE_DIR=/tmp/thaw-cache "$BUNDLE/bin/trainer" train --model "$model" \
        --weights "/tmp/$model.safetensors" --data /tmp/cifar10-jpeg --image-size "$size" \
        --epochs 2 --standardize --fine-tune "$block" --fine-tune-epochs 1 --device cuda \
        --out "/tmp/$model-ft.safetensors" 2>&1 | tee "$OUT_DIR/finetune-$model.log"
}

# thaw-bench --device cuda, then pytorch_bench.py's GPU rows with this
# machine's python3, then the ratio table; everything in $OUT. Both get the
# same arguments, so `--cudnn heuristic` (default benchmark) applies to both.
bench() {
    setup
    [ -d /tmp/cifar10-jpeg ] || tar -xJf "$BUNDLE/cifar10-jpeg.tar.xz" -C /tmp
    local data=/tmp/cifar10-jpeg/test status=0
    "$BUNDLE/bin/thaw-bench" --device cuda "$@" --spec "$BUNDLE/workloads.json" --data "$data" \
        --json "$OUT_DIR/thaw-cuda.json" 2>&1 | tee "$OUT_DIR/thaw-cuda.md" || status=1
    python3 "$BUNDLE/pytorch_bench.py" --device cuda "$@" --spec "$BUNDLE/workloads.json" \
        --data "$data" --json "$OUT_DIR/pytorch-cuda.json" 2>&1 | tee "$OUT_DIR/pytorch-cuda.md" || status=1
    if [ -f "$OUT_DIR/thaw-cuda.json" ] && [ -f "$OUT_DIR/pytorch-cuda.json" ]; then
        "$BUNDLE/bin/thaw-bench" --compare "$OUT_DIR/thaw-cuda.json" "$OUT_DIR/pytorch-cuda.json" |
            tee "$OUT_DIR/compare-cuda.md"
    else
        echo "no ratio table: a side wrote no results (see the logs above)"
        status=1
    fi
    return $status
}

# Issue 5 asks what pretrained weights the GPU machine already holds: the
# Keras .h5 files would give real accuracy directly; torchvision's VGG16
# matches our VGG16 (with torchvision's preprocessing); its ResNet50 is v1.5,
# a different network from Keras's. Looks in the usual caches, then by name.
weights() {
    mkdir -p "$OUT_DIR"
    {
        echo "== caches (TORCH_HOME, torch hub, Hugging Face, Keras), files over 1 MB"
        for d in "${TORCH_HOME:-$HOME/.cache/torch}" "${HF_HOME:-$HOME/.cache/huggingface}" \
            "$HOME/.keras" /root/.cache /opt /models /data; do
            if [ -d "$d" ]; then
                find "$d" -maxdepth 6 -type f \( -name '*.pth' -o -name '*.pt' -o -name '*.h5' \
                    -o -name '*.safetensors' -o -name '*.bin' \) -size +1M \
                    -printf '%s\t%p\n' 2>/dev/null || true
            fi
        done | sort -u
        echo "== by name anywhere on local disks: vgg16*, resnet50*, over 10 MB"
        find / -xdev \( -path /proc -o -path /sys \) -prune -o -type f \
            \( -iname 'vgg16*' -o -iname 'resnet50*' \) -size +10M -printf '%s\t%p\n' 2>/dev/null |
            sort -u || true
        echo "(sizes in bytes; an empty section means nothing was found)"
    } | tee "$OUT_DIR/weights.txt"
}

case "${1:-}" in
build) build ;;
tests) tests ;;
bench) shift; bench "$@" ;;
weights) weights ;;
extract) extract "${2:?extract needs vgg16 or resnet50}" "${3:-64}" "${4:-f32}" ;;
finetune) finetune "${2:?finetune needs vgg16 or resnet50}" "${3:-224}" ;;
*)
    sed -n '2,15p' "$0"
    exit 2
    ;;
esac
