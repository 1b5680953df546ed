"""Writes the seed corpora of the fuzz targets: a few tiny valid files of each
format, under fuzz/corpus/<target>/ (each well under 30 KB).

    python3 fuzz/gen_seeds.py

Needs numpy, pillow and torch (CPU). The Keras .h5 seeds are copies of the
tiny files of tests/fixtures/keras (see gen_tiny_h5.py there); the CIFAR seed
is the first two records of tests/fixtures/keras/cifar_sample.bin.
"""

import io
import json
import os
import shutil
import struct
import zipfile

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KERAS = os.path.join(ROOT, "tests", "fixtures", "keras")


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    """The safetensors layout: u64 header length, JSON header, data."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, a) in tensors.items():
        raw = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def main():
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype("<f4")  # noqa: E731

    # keras_h5: the spec in fuzz_targets/keras_h5.rs is the tiny model's.
    for name in ["tiny_keras.h5", "tiny_new_names.h5", "tiny_old_names.h5", "tiny_split_names.h5"]:
        d = os.path.join(HERE, "corpus", "keras_h5")
        os.makedirs(d, exist_ok=True)
        shutil.copy(os.path.join(KERAS, name), os.path.join(d, name))

    # safetensors: a weights file, an f64 one, and a model file with its metadata.
    out("safetensors", "weights.safetensors", safetensors({"conv/kernel": ("F32", f32(1, 1, 2, 3)), "conv/bias": ("F32", f32(3))}))
    out("safetensors", "f64.safetensors", safetensors({"x": ("F64", rng.standard_normal(4))}))
    meta = {
        "format": "thaw-classifier-v1", "model": "mobilenet", "alpha": "0.25",
        "classes": json.dumps(["cat", "dog"]), "image_size": "32", "preprocessing": "tf",
        "pooling": "avg", "head": "linear", "input_layout": "NHWC uint8 RGB 32x32, bilinear resize to image_size",
        "tta": "false", "standardize": "true", "val_accuracy": "0.500000",
    }
    out("safetensors", "model.safetensors", safetensors({"head_dense1/kernel": ("F32", f32(4, 2)), "head_dense1/bias": ("F32", f32(2))}, meta))

    # npy: each dtype thaw reads, format 1.0 and 2.0.
    for name, a in [("f4.npy", f32(2, 3)), ("i8.npy", np.arange(5, dtype="<i8")), ("u1.npy", np.arange(6, dtype="u1").reshape(3, 2))]:
        b = io.BytesIO()
        np.save(b, a)
        out("npy", name, b.getvalue())
    b = io.BytesIO()
    np.lib.format.write_array(b, f32(2, 2), version=(2, 0))
    out("npy", "f4_v2.npy", b.getvalue())

    # cifar_binary: two records (label byte, then 3x32x32 planes).
    with open(os.path.join(KERAS, "cifar_sample.bin"), "rb") as f:
        out("cifar_binary", "two_records.bin", f.read(2 * 3073))

    # image: 32x32 RGB PNG and JPEG, and a grayscale PNG (read as RGB).
    px = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for name, img, fmt in [("rgb.png", Image.fromarray(px), "PNG"), ("rgb.jpg", Image.fromarray(px), "JPEG"),
                           ("gray.png", Image.fromarray(px[:, :, 0]), "PNG")]:
        b = io.BytesIO()
        img.save(b, format=fmt)
        out("image", name, b.getvalue())

    # pytorch: a small state dict in the zip and legacy formats, and a wheel holding one.
    sd = {"conv.weight": torch.randn(3, 2, 1, 1), "bn.running_var": torch.rand(3),
          "bn.num_batches_tracked": torch.tensor(1), "fc.weight": torch.randn(2, 3).half()}
    b = io.BytesIO()
    torch.save(sd, b)
    zipped = b.getvalue()
    out("pytorch", "zip.pth", zipped)
    b = io.BytesIO()
    torch.save(sd, b, _use_new_zipfile_serialization=False)
    out("pytorch", "legacy.pth", b.getvalue())
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("pkg/__init__.py", "")
        z.writestr("pkg/weights.pth", zipped)
    out("pytorch", "wheel.whl", b.getvalue())


if __name__ == "__main__":
    main()
