#!/usr/bin/env python3
"""Runs a command and prints its peak resident memory (the kernel's
ru_maxrss of that one child, via os.wait4) and wall time:

    python3 bench/peak_rss.py -- target/release/trainer train --data PHOTOS ...

Issue 18's measurement (25,000 photos of about 500x375 made by
bench/make_photos.py, 224 px; aim: under 2 GiB), on a quiet machine:

    python3 bench/make_photos.py /tmp/photos25k --count 25000
    python3 bench/peak_rss.py -- target/release/trainer extract --model mobilenet_v2 \\
        --data /tmp/photos25k --image-size 224 --pooling avg --out /tmp/photos25k.npy --device cpu
    python3 bench/peak_rss.py -- target/release/trainer train --model mobilenet_v2 \\
        --data /tmp/photos25k --test-split 0.2 --image-size 224 --out /tmp/photos.safetensors
"""
import os
import subprocess
import sys
import time


def main():
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.exit(__doc__)
    start = time.time()
    proc = subprocess.Popen(args)
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.time() - start
    code = os.waitstatus_to_exitcode(status)
    print(
        f"peak RSS {usage.ru_maxrss / 1024:.1f} MiB ({usage.ru_maxrss} KB), "
        f"{secs:.1f} s wall, exit status {code}",
        file=sys.stderr,
    )
    sys.exit(code)


if __name__ == "__main__":
    main()
