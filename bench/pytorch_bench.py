#!/usr/bin/env python3
"""PyTorch's side of thaw's benchmark: the workloads of bench/workloads.json,
run the way a PyTorch user would run them, timed by the same rule as
thaw-bench (untimed warm-up runs, then the median of timed runs), written in
the same --json format so `thaw-bench --compare` can join the two by name.

CPU: eager mode, channels_last tensors and models, torch.inference_mode()
for everything that needs no gradient, torch.set_num_threads(--threads).

GPU (where torch.cuda.is_available(), or --device cuda): every workload also
runs there as rows named `<workload>.cuda-<dtype>`, the names
`thaw-bench --device cuda` gives its rows: the peak (a larger SGEMM,
workloads.json's `cuda.peak`), conv2d forward and backward, backbones and
extract in f32 and with autocast f16/bf16 (channels_last), the head step in
f32. The f32 rows run with TF32 off (torch.backends.cudnn.allow_tf32 and
torch.backends.cuda.matmul.allow_tf32 False), as thaw does by default.
cuDNN algorithms: --cudnn benchmark (the default: cudnn.benchmark on,
autotuned algorithms, as a tuned PyTorch user runs) or heuristic
(cudnn.benchmark off); cudnn.deterministic stays False (nondeterministic
algorithms allowed). `thaw-bench --cudnn` takes the same values and sets
thaw's policy to match, so the two sides' GPU rows choose alike.
Backbone and extract batches are at least `cuda.min_batch`, extract reads at
least `cuda.extract_min_images` images. conv2d backward on the GPU uses
loss = y.sum() (thaw has no GPU multiply yet), on the CPU sum(y * dy).

    python bench/pytorch_bench.py [--quick] [--json pytorch.json] [--threads 2] [--device all|cpu|cuda]

Needs torch, torchvision, numpy and Pillow (torchvision's own dependency).
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image

CL = torch.channels_last
# Keras's 'caffe' preprocessing: RGB -> BGR, minus these ImageNet means (B, G, R).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def measure(warmup, reps, fn, sync=None):
    """`warmup` untimed runs, then max(reps, 1) timed runs; seconds, in order."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(max(reps, 1)):
        t = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t)
    return times


def record(name, shape, times, flops, items, unit, skipped=None, bytes_moved=0):
    return {
        "name": name,
        "shape": shape,
        "median_s": statistics.median(times) if times else 0.0,
        "times_s": times,
        "flops": float(flops),
        "bytes": float(bytes_moved),
        "items": float(items),
        "unit": unit,
        "skipped": skipped,
    }


def rand(shape, scale, gen, device="cpu"):
    """Uniform in [-scale, scale)."""
    return ((torch.rand(shape, generator=gen) * 2 - 1) * scale).to(device)


# ---------------------------------------------------------------- workloads


def peak(p, mode, gen, device="cpu", suffix=""):
    a = rand((p["m"], p["k"]), 1.0, gen, device)
    b = rand((p["k"], p["n"]), 1.0, gen, device)
    c = torch.empty(p["m"], p["n"], device=device)
    sync = torch.cuda.synchronize if device == "cuda" else None
    times = measure(p["warmup"], reps(p, mode), lambda: torch.mm(a, b, out=c), sync)
    shape = f'{p["m"]}x{p["k"]} . {p["k"]}x{p["n"]}'
    return record(p["name"] + suffix, shape, times, 2.0 * p["m"] * p["k"] * p["n"], 0, "")


def conv_out(size, k, stride, same):
    return -(-size // stride) if same else (size - k) // stride + 1


def conv_flops(c):
    same = c["padding"] == "same"
    oh = conv_out(c["h"], c["k"], c["stride"], same)
    ow = conv_out(c["w"], c["k"], c["stride"], same)
    return 2.0 * c["n"] * oh * ow * c["k"] * c["k"] * c["c"] * c["o"]


def conv_shape(c):
    return (f'n={c["n"]} {c["h"]}x{c["w"]}x{c["c"]} -> {c["o"]} '
            f'k{c["k"]}/{c["stride"]} {c["padding"]}')


def conv(c, timing, mode, gen, device="cpu", dtype=None, suffix=""):
    """conv2d forward (inference_mode) and backward (dx and dW): two records.

    Backward is timed as thaw's side does it: loss = sum(conv2d(x, W) * dy)
    (on the GPU sum(conv2d(x, W)), as thaw there) is built once, each timed
    run calls loss.backward(retain_graph=True)."""
    # 'same' is only used at stride 1 with an odd kernel: symmetric k // 2.
    pad = c["k"] // 2 if c["padding"] == "same" else 0
    x = rand((c["n"], c["c"], c["h"], c["w"]), 1.0, gen, device).contiguous(memory_format=CL)
    scale = (6.0 / (c["k"] * c["k"] * c["c"])) ** 0.5
    w = rand((c["o"], c["c"], c["k"], c["k"]), scale, gen, device).contiguous(memory_format=CL)
    sync = torch.cuda.synchronize if device == "cuda" else None
    r = reps(timing, mode)
    flops = conv_flops(c)

    def autocast():
        if dtype is None:
            return torch.autocast("cpu", enabled=False)
        return torch.autocast(device, dtype=dtype)

    def fwd():
        with torch.inference_mode(), autocast():
            F.conv2d(x, w, None, c["stride"], pad)

    t_fwd = measure(timing["warmup"], r, fwd, sync)
    records = [record(f'{c["name"]}.fwd{suffix}', conv_shape(c), t_fwd, flops, c["n"], "img/s")]
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    with autocast():
        y = F.conv2d(xg, wg, None, c["stride"], pad)
    if device == "cpu":
        loss = (y * rand(tuple(y.shape), 1.0, gen).contiguous(memory_format=CL)).sum()
    else:
        loss = y.float().sum()

    def bwd():
        xg.grad = None
        wg.grad = None
        loss.backward(retain_graph=True)

    t_bwd = measure(timing["warmup"], r, bwd, sync)
    if xg.grad is None or wg.grad is None:
        sys.exit(f'{c["name"]}.bwd: backward did not produce dx and dW')
    records.append(record(f'{c["name"]}.bwd{suffix}', conv_shape(c), t_bwd, 2 * flops, c["n"],
                          "img/s"))
    return records


def depthwise(d, timing, mode, gen):
    """Depthwise convolution forward (inference_mode) and backward (dx and dW)
    on the CPU: two records, timed as conv() times conv2d. The layer is
    nn.Conv2d(c, c, k, stride, pad, groups=c, bias=False) in channels_last:
    Keras's MobileNet depthwise layers have no bias, nor has thaw's row.
    Bytes as thaw-bench counts them: 4 (x + y + K) forward, 4 (2x + y + 2K)
    backward (it reads x, dy, K and writes dx, dK)."""
    n, c, k, s, pad = d["n"], d["c"], d["k"], d["stride"], d["pad"]
    oh = (d["h"] + 2 * pad - k) // s + 1
    ow = (d["w"] + 2 * pad - k) // s + 1
    layer = nn.Conv2d(c, c, k, s, pad, groups=c, bias=False).to(memory_format=CL)
    with torch.no_grad():
        layer.weight.copy_(rand((c, 1, k, k), (6.0 / (k * k)) ** 0.5, gen))
    x = rand((n, c, d["h"], d["w"]), 1.0, gen).contiguous(memory_format=CL)
    r = reps(timing, mode)
    flops = 2.0 * n * oh * ow * c * k * k
    xs, ys, ks = n * d["h"] * d["w"] * c, n * oh * ow * c, k * k * c
    shape = f'n={n} {d["h"]}x{d["w"]}x{c} k{k}/{s} pad {pad}'

    def fwd():
        with torch.inference_mode():
            layer(x)

    t_fwd = measure(timing["warmup"], r, fwd)
    records = [record(f'{d["name"]}.fwd', shape, t_fwd, flops, n, "img/s",
                      bytes_moved=4 * (xs + ys + ks))]
    xg = x.clone().requires_grad_()
    y = layer(xg)
    loss = (y * rand(tuple(y.shape), 1.0, gen).contiguous(memory_format=CL)).sum()

    def bwd():
        xg.grad = None
        layer.weight.grad = None
        loss.backward(retain_graph=True)

    t_bwd = measure(timing["warmup"], r, bwd)
    if xg.grad is None or layer.weight.grad is None:
        sys.exit(f'{d["name"]}.bwd: backward did not produce dx and dW')
    records.append(record(f'{d["name"]}.bwd', shape, t_bwd, 2 * flops, n, "img/s",
                          bytes_moved=4 * (2 * xs + ys + 2 * ks)))
    return records


def build_backbone(model, size):
    """The backbone as keras.applications (or, for EfficientNet-Lite, the
    checkpoint's own code) builds it without its top, with global average
    pooling, channels_last, in eval mode, random weights, for `size` px."""
    if model in ("vgg16", "vgg19"):
        # features ends with block5_pool, as Keras's VGG16 and VGG19.
        vgg = getattr(torchvision.models, model)(weights=None)
        net = nn.Sequential(vgg.features, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    elif model == "resnet50":
        r = torchvision.models.resnet50(weights=None)
        # Keras's ResNet50 is v1: a stage's stride 2 sits in its first 1x1
        # conv; torchvision's (v1.5) in the 3x3. Move it, so both run the
        # same shapes (and the same FLOPs).
        for stage in (r.layer2, r.layer3, r.layer4):
            stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
        net = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2,
                            r.layer3, r.layer4, r.avgpool, nn.Flatten())
    elif model == "inception_v3":
        # Keras's InceptionV3 without its top: torchvision's Inception3 up to
        # Mixed_7c, without the auxiliary classifier and the input transform.
        # The convolutions are the same (equal FLOPs); its average pools count
        # the padded cells (count_include_pad=True), Keras's do not.
        i = torchvision.models.inception_v3(weights=None, aux_logits=False,
                                            transform_input=False, init_weights=False)
        net = nn.Sequential(i.Conv2d_1a_3x3, i.Conv2d_2a_3x3, i.Conv2d_2b_3x3, i.maxpool1,
                            i.Conv2d_3b_1x1, i.Conv2d_4a_3x3, i.maxpool2,
                            i.Mixed_5b, i.Mixed_5c, i.Mixed_5d, i.Mixed_6a, i.Mixed_6b,
                            i.Mixed_6c, i.Mixed_6d, i.Mixed_6e, i.Mixed_7a, i.Mixed_7b,
                            i.Mixed_7c, i.avgpool, nn.Flatten())
    elif model == "efficientnet_lite0":
        net = efficientnet_lite0(size)
    else:
        sys.exit(f"unknown model {model!r}: use vgg16, vgg19, resnet50, inception_v3 or efficientnet_lite0")
    return net.eval().to(memory_format=CL)


def tf_same_pad(size, k, s):
    """TensorFlow 'SAME' padding of one side pair: (before, after)."""
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def efficientnet_lite0(size):
    """EfficientNet-Lite0 without its top, as a fast PyTorch model pads it:
    `padding=k//2` at stride 1, an explicit TensorFlow-'SAME' pad only before
    the five stride-2 layers (at even sizes that is (0, 1) for k=3 and (1, 2)
    for k=5). Batch norm eps 1e-3, ReLU6, no squeeze-excite."""
    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3)

    def strided(cin, cout, k, groups, size):
        lo, hi = tf_same_pad(size, k, 2)
        return [nn.ZeroPad2d((lo, hi, lo, hi)),
                nn.Conv2d(cin, cout, k, 2, 0, groups=groups, bias=False)]

    class Block(nn.Module):
        def __init__(self, cin, cout, k, s, e, size):
            super().__init__()
            mid = cin * e
            layers = [nn.Conv2d(cin, mid, 1, bias=False), bn(mid), nn.ReLU6()] if e != 1 else []
            if s == 1:
                layers.append(nn.Conv2d(mid, mid, k, 1, k // 2, groups=mid, bias=False))
            else:
                layers += strided(mid, mid, k, mid, size)
            layers += [bn(mid), nn.ReLU6(), nn.Conv2d(mid, cout, 1, bias=False), bn(cout)]
            self.body = nn.Sequential(*layers)
            self.residual = s == 1 and cin == cout

        def forward(self, x):
            y = self.body(x)
            return x + y if self.residual else y

    layers = strided(3, 32, 3, 1, size) + [bn(32), nn.ReLU6()]
    size, cin = -(-size // 2), 32
    # (kernel, first block's stride, expand ratio, output channels, repeats)
    for k, s, e, cout, repeats in [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2),
                                   (3, 2, 6, 80, 3), (5, 1, 6, 112, 3), (5, 2, 6, 192, 4),
                                   (3, 1, 6, 320, 1)]:
        for r in range(repeats):
            stride = s if r == 0 else 1
            layers.append(Block(cin, cout, k, stride, e, size))
            size, cin = -(-size // stride), cout
    layers += [nn.Conv2d(320, 1280, 1, bias=False), bn(1280), nn.ReLU6(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def flops_per_image(net, size, device="cpu"):
    """2 per multiply-add of every Conv2d and Linear, from the shapes of one
    forward pass on one image (hooks on the layers)."""
    total = [0.0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            total[0] += 2.0 * out[0].numel() * kh * kw * mod.in_channels // mod.groups
        elif isinstance(mod, nn.Linear):
            total[0] += 2.0 * out[0].numel() * mod.in_features

    hooks = [m.register_forward_hook(hook) for m in net.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        net(torch.zeros(1, 3, size, size, device=device).contiguous(memory_format=CL))
    for h in hooks:
        h.remove()
    return total[0]


def backbone(b, mode, gen, device="cpu", dtype=None, suffix="", batch=None):
    net = build_backbone(b["model"], b["size"]).to(device)
    batch = batch or b["batch"]
    flops = batch * flops_per_image(net, b["size"], device)
    x = rand((batch, 3, b["size"], b["size"]), 120.0, gen, device).contiguous(memory_format=CL)
    sync = torch.cuda.synchronize if device == "cuda" else None

    def fwd():
        with torch.inference_mode(), torch.autocast(device, dtype=dtype or torch.bfloat16,
                                                    enabled=dtype is not None):
            net(x)

    times = measure(b["warmup"], reps(b, mode), fwd, sync)
    return record(b["name"] + suffix, f'n={batch} {b["size"]}x{b["size"]}x3', times,
                  flops, batch, "img/s")


def head_flops(h):
    b, f, hid, c = h["batch"], h["features"], h["hidden"], h["classes"]
    return 2.0 * b * (f * hid + hid * c) + 2.0 * b * f * hid + 4.0 * b * hid * c


def head(h, mode, gen, device="cpu", suffix=""):
    """One step: Linear+ReLU -> Dropout -> Linear -> cross-entropy, backward,
    Adam step, gradients cleared (the features are constants)."""
    net = nn.Sequential(nn.Linear(h["features"], h["hidden"]), nn.ReLU(),
                        nn.Dropout(h["dropout"]), nn.Linear(h["hidden"], h["classes"]))
    net.train().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=h["lr"])
    x = rand((h["batch"], h["features"]), 1.0, gen, device)
    labels = (torch.arange(h["batch"]) % h["classes"]).to(device)

    def step():
        F.cross_entropy(net(x), labels).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device == "cuda" else None
    times = measure(h["warmup"], reps(h, mode), step, sync)
    shape = (f'b={h["batch"]} {h["features"]}->{h["hidden"]} relu->dropout {h["dropout"]}'
             f'->{h["classes"]}, Adam')
    return record(h["name"] + suffix, shape, times, head_flops(h), 1, "step/s")


def select_images(folder, images):
    """images / 10 files from each class folder (folders and files in name order)."""
    def listing(d):
        return sorted(os.path.join(d, n) for n in os.listdir(d) if not n.startswith("."))
    classes = [d for d in listing(folder) if os.path.isdir(d)]
    if len(classes) != 10:
        raise ValueError(f"{folder} has {len(classes)} class folders, expected CIFAR-10's 10")
    files = []
    for d in classes:
        f = listing(d)
        if len(f) < images // 10:
            raise ValueError(f"{d} has {len(f)} images, the workload needs {images // 10}")
        files += f[: images // 10]
    return files


def extract(e, files, mode, threads, device="cpu", dtype=None, suffix="", batch=None):
    """JPEG files -> decode (PIL, `threads` at a time) -> resize 32 -> size
    (bilinear, half-pixel) -> the model's preprocessing (Keras 'caffe', 'tf'
    for InceptionV3, or (x - 127) / 128 for EfficientNet-Lite) -> backbone -> pooled
    features. On the GPU the uint8 pixels are uploaded and resized and
    preprocessed there, the backbone runs under autocast `dtype` when given,
    and the features come back to the host (as thaw's side does)."""
    net = build_backbone(e["model"], e["size"]).to(device)
    batch = batch or e["batch"]
    flops = len(files) * flops_per_image(net, e["size"], device)
    mean = torch.tensor(CAFFE_MEAN_BGR, device=device).view(1, 3, 1, 1)
    pool = ThreadPoolExecutor(threads)
    sync = torch.cuda.synchronize if device == "cuda" else None

    def decode(path):
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))

    def run():
        features = []
        with torch.inference_mode():
            for i in range(0, len(files), batch):
                pixels = np.stack(list(pool.map(decode, files[i:i + batch])))
                x = torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2).float()  # NHWC memory
                if e["size"] != 32:
                    x = F.interpolate(x, size=(e["size"], e["size"]), mode="bilinear",
                                      align_corners=False, antialias=False)
                if e["model"].startswith("efficientnet_lite"):
                    x = ((x - 127.0) / 128.0).contiguous(memory_format=CL)
                elif e["model"] == "inception_v3":  # Keras 'tf'
                    x = (x / 127.5 - 1.0).contiguous(memory_format=CL)
                else:
                    x = (x[:, [2, 1, 0]] - mean).contiguous(memory_format=CL)
                with torch.autocast(device, dtype=dtype or torch.bfloat16,
                                    enabled=dtype is not None):
                    features.append(net(x).float().cpu())
        return features

    times = measure(e["warmup"], reps(e, mode), run, sync)
    pool.shutdown()
    shape = f'N={len(files)} 32->{e["size"]} px, batch {batch}'
    return record(e["name"] + suffix, shape, times, flops, len(files), "img/s")


# ---------------------------------------------------------------- driver


def reps(w, mode):
    return w["reps"][0 if mode == "quick" else 1]


def load_average():
    try:
        return list(os.getloadavg())
    except OSError:
        return []


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def sig(x):
    if x == 0 or x != x:
        return str(x)
    import math
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:.{digits}f}"


def rate_text(r):
    parts = []
    if r["unit"] and r["median_s"] > 0:
        parts.append(f'{sig(r["items"] / r["median_s"])} {r["unit"]}')
    if r["flops"] > 0 and r["median_s"] > 0:
        parts.append(f'{sig(r["flops"] / r["median_s"] / 1e9)} GFLOP/s')
    if r.get("bytes", 0) > 0 and r["median_s"] > 0:
        parts.append(f'{sig(r["bytes"] / r["median_s"] / 1e9)} GB/s')
    return ", ".join(parts)


def table(results):
    i = results["info"]
    out = (f'{i["engine"]} {i["version"]} ({i["mode"]} mode, {i["threads"]} threads) on '
           f'{i["cpu"]}, {i["date"]}; load before {i["load_before"]}, after {i["load_after"]}\n')
    if i.get("gpu"):
        out += f'GPU: {i["gpu"]}\n'
    recs = results["records"]

    def is_gpu(name):
        return ".cuda-" in name

    # The f32 peak of each device: % of peak for a row uses its own device's.
    peaks = {is_gpu(r["name"]): r["flops"] / r["median_s"] / 1e9 for r in recs
             if r["name"].startswith("peak.") and r["median_s"] > 0}
    if peaks:
        out += "peak (large sgemm): " + ", ".join(
            f'{sig(g)} GFLOP/s ({"cuda-f32" if gpu else "cpu"})' for gpu, g in peaks.items()) + "\n"
    out += "\n| workload | shape / batch | median ms | rate | % of peak |\n|---|---|---:|---|---:|\n"
    for r in recs:
        if r["skipped"]:
            out += f'| {r["name"]} | {r["shape"]} | skipped | {r["skipped"]} | |\n'
            continue
        pct = ""
        peak_g = peaks.get(is_gpu(r["name"]))
        if peak_g and r["flops"] > 0 and not r["name"].endswith(("f16", "bf16")):
            pct = f'{100 * r["flops"] / r["median_s"] / 1e9 / peak_g:.0f}%'
        out += f'| {r["name"]} | {r["shape"]} | {sig(r["median_s"] * 1e3)} | {rate_text(r)} | {pct} |\n'
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="only the workloads marked quick, fewer repetitions (under a minute)")
    ap.add_argument("--json", metavar="FILE", help="also write the results here (for --compare)")
    ap.add_argument("--filter", metavar="TEXT",
                    help="only workloads whose name contains TEXT (the peak always runs)")
    ap.add_argument("--spec", default=os.path.join(here, "workloads.json"))
    ap.add_argument("--data", metavar="DIR",
                    default=os.environ.get("THAW_BENCH_DATA", "target/bench-data/cifar10-jpeg/test"),
                    help="CIFAR-10 JPEG test folder (class subfolders) for the extract workloads")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="torch.set_num_threads, and the JPEG decoding threads")
    ap.add_argument("--device", choices=("all", "cpu", "cuda"), default="all",
                    help="all: the CPU rows, and the GPU rows when torch sees a GPU; cpu: CPU "
                         "rows only; cuda: GPU rows only (an error without a GPU)")
    ap.add_argument("--no-cuda", action="store_true", help="same as --device cpu")
    ap.add_argument("--cudnn", choices=("benchmark", "heuristic"), default="benchmark",
                    help="GPU rows: benchmark = torch.backends.cudnn.benchmark on (cudnnFind, "
                         "as thaw-bench --cudnn benchmark), heuristic = off (cuDNN's heuristic, "
                         "as thaw-bench --cudnn heuristic); nondeterministic algorithms allowed "
                         "either way")
    args = ap.parse_args()
    if args.no_cuda:
        args.device = "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no GPU (torch.cuda.is_available() is False); "
                 "run with --device cpu")

    with open(args.spec) as f:
        spec = json.load(f)
    mode = "quick" if args.quick else "full"
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    cpu = args.device in ("all", "cpu")
    cuda = args.device == "cuda" or (args.device == "all" and torch.cuda.is_available())
    info = {
        "engine": "pytorch",
        "version": f"torch {torch.__version__}, torchvision {torchvision.__version__}",
        "mode": mode,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "load_before": load_average(),
        "load_after": [],
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    print(f"pytorch_bench: {mode} mode, {info['threads']} threads, load {info['load_before']}, "
          f"cuda {'yes: ' + torch.cuda.get_device_name() if cuda else 'no'}", file=sys.stderr)

    def wanted(w):
        return (mode == "full" or w["quick"]) and (not args.filter or args.filter in w["name"])

    records = []

    def push(r):
        print(f'  {r["name"]:<44} {r["median_s"] * 1e3:>10.2f} ms  {rate_text(r)}', file=sys.stderr)
        records.append(r)

    def images_for(e, images, suffix=""):
        """The extract workload's files, or None after recording why it is skipped."""
        try:
            return select_images(args.data, images)
        except (OSError, ValueError) as why:
            print(f'  {e["name"] + suffix:<44} skipped: {why}', file=sys.stderr)
            records.append(record(e["name"] + suffix, f'N={images} 32->{e["size"]} px', [], 0,
                                  0, "img/s", f"{why} (unpack ../shared/data/cifar10-jpeg.tar.xz:"
                                  " bench/run_all.sh does)"))
            return None

    if cpu:
        push(peak(spec["peak"], mode, gen))
        for c in filter(wanted, spec["conv2d"]):
            for r in conv(c, spec["conv2d_timing"], mode, gen):
                push(r)
        for d in filter(wanted, spec["depthwise_conv2d"]):
            for r in depthwise(d, spec["depthwise_timing"], mode, gen):
                push(r)
        for b in filter(wanted, spec["backbone"]):
            push(backbone(b, mode, gen))
        if wanted(spec["head"]):
            push(head(spec["head"], mode, gen))
        for e in filter(wanted, spec["extract"]):
            files = images_for(e, e["images"])
            if files is not None:
                push(extract(e, files, mode, args.threads))

    if cuda:
        # The GPU rows: channels_last, f32 (TF32 off, as thaw) and autocast
        # f16/bf16; batches and image counts from workloads.json's "cuda".
        g = spec["cuda"]
        # The same algorithm policy as thaw-bench --cudnn (see the docstring).
        torch.backends.cudnn.benchmark = args.cudnn == "benchmark"
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        push(peak(g["peak"], mode, gen, "cuda", ".cuda-f32"))
        if wanted(spec["head"]):
            push(head(spec["head"], mode, gen, "cuda", ".cuda-f32"))
        for dtype, tag in ((None, "f32"), (torch.float16, "f16"), (torch.bfloat16, "bf16")):
            for c in filter(wanted, spec["conv2d"]):
                for r in conv(c, spec["conv2d_timing"], mode, gen, "cuda", dtype, f".cuda-{tag}"):
                    push(r)
            for b in filter(wanted, spec["backbone"]):
                push(backbone(b, mode, gen, "cuda", dtype, f".cuda-{tag}",
                              max(b["batch"], g["min_batch"])))
            for e in filter(wanted, spec["extract"]):
                files = images_for(e, max(e["images"], g["extract_min_images"]), f".cuda-{tag}")
                if files is not None:
                    push(extract(e, files, mode, args.threads, "cuda", dtype, f".cuda-{tag}",
                                 max(e["batch"], g["min_batch"])))

    info["load_after"] = load_average()
    results = {"info": info, "records": records}
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
