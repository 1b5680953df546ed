#!/usr/bin/env python3
"""torchvision's side of the decode + resize row (issue 18): images/s of
reading each JPEG file, `torchvision.io.decode_jpeg`, and
`torchvision.transforms.v2.Resize((S, S), antialias=False)` (bilinear, no
antialiasing: the work thaw's reader does; PIL's resize antialiases and
would not be the same work), on THREADS threads (torch ops release the
GIL; torch's own threads set to 1 each).

    python3 bench/decode_bench.py FOLDER [--size 224] [--threads 2] [--limit 2000]

thaw's side, on the same files: `cargo run --release -p bench --bin
thaw-decode-bench -- FOLDER --size 224 --limit 2000` (2 worker threads,
trainer::data::stream).
"""
import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import torch
import torchvision
from torchvision.transforms import v2


def files_under(root):
    out = []
    for dirpath, dirnames, names in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [os.path.join(dirpath, n) for n in sorted(names) if not n.startswith(".")]
    return sorted(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=2000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    files = files_under(a.folder)[: a.limit]
    resize = v2.Resize((a.size, a.size), antialias=False)

    def one(path):
        data = torchvision.io.read_file(path)
        img = torchvision.io.decode_jpeg(data, mode=torchvision.io.ImageReadMode.RGB)
        return resize(img).shape[0]

    with ThreadPoolExecutor(a.threads) as pool:
        list(pool.map(one, files[: min(50, len(files))]))  # warm-up
        start = time.perf_counter()
        n = sum(1 for _ in pool.map(one, files))
        secs = time.perf_counter() - start
    print(
        f"torchvision decode_jpeg + Resize({a.size}, antialias=False), {a.threads} threads: "
        f"{n} images in {secs:.2f} s = {n / secs:.1f} images/s "
        f"(torch {torch.__version__}, torchvision {torchvision.__version__})"
    )


if __name__ == "__main__":
    main()
