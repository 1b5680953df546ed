#!/usr/bin/env python3
"""Photos for the image-folder measurements of issue 18 (peak memory of a
streamed dataset, decode + resize speed): the CIFAR-10 JPEG copy's images
upscaled to about 500x375 (the size of the cats-vs-dogs and flowers photos)
and re-encoded as JPEG. They are CIFAR-10 images, not real photos: their
pixels are smooth (bicubic upscaling of 32x32), which makes them somewhat
cheaper to decode than camera photos of the same size.

    python3 bench/make_photos.py OUT [--count 25000] [--source DIR] [--quality 90]

OUT gets one class tree, OUT/<class>/<k>.jpg (the layout `train
--test-split` splits), images taken in turn from each class of SOURCE's
train/ then test/ split (default: /work/data/cifar10-jpeg, or unpack
../shared/data/cifar10-jpeg.tar.xz there first). Sizes alternate between
500x375 (landscape) and 375x500 (portrait), every 7th image 512x341, so
that the resize sees both aspect ratios. Deterministic: the same OUT for
the same arguments. Needs Pillow.
"""
import argparse
import os
import sys

from PIL import Image

SIZES = [(500, 375), (375, 500), (500, 375), (375, 500), (500, 375), (375, 500), (512, 341)]


def sources(root):
    """(class, path) of every CIFAR-10 JPEG, train/ then test/, class by class in turn."""
    lists = []
    for split in ("train", "test"):
        base = os.path.join(root, split)
        if not os.path.isdir(base):
            continue
        for cls in sorted(os.listdir(base)):
            files = sorted(os.listdir(os.path.join(base, cls)))
            lists.append([(cls, os.path.join(base, cls, f)) for f in files])
    # Interleave the classes so that any prefix is balanced.
    k = 0
    while any(k < len(l) for l in lists):
        for l in lists:
            if k < len(l):
                yield l[k]
        k += 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=25000)
    ap.add_argument("--source", default="/work/data/cifar10-jpeg")
    ap.add_argument("--quality", type=int, default=90)
    a = ap.parse_args()
    if not os.path.isdir(a.source):
        sys.exit(f"{a.source} is not a folder: unpack ../shared/data/cifar10-jpeg.tar.xz and pass --source")
    n = 0
    for n, (cls, path) in enumerate(sources(a.source)):
        if n >= a.count:
            break
        w, h = SIZES[n % len(SIZES)]
        folder = os.path.join(a.out, cls)
        os.makedirs(folder, exist_ok=True)
        dst = os.path.join(folder, f"{n:05d}.jpg")
        if os.path.exists(dst):
            continue
        img = Image.open(path).convert("RGB").resize((w, h), Image.BICUBIC)
        img.save(dst + ".tmp", "JPEG", quality=a.quality)
        os.replace(dst + ".tmp", dst)
        if n % 1000 == 999:
            print(f"{n + 1} photos", file=sys.stderr)
    print(f"{min(n + 1, a.count)} photos in {a.out}")


if __name__ == "__main__":
    main()
