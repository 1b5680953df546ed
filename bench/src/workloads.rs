//! thaw's side of every workload in `workloads.json`: the peak GEMM, conv2d
//! forward and backward, whole-backbone forward, a head training step and
//! end-to-end extraction from JPEG files. Each returns a [`Record`];
//! `pytorch_bench.py` does the same work with PyTorch, function for function.
//!
//! FLOPs are 2 per multiply-add and count convolutions and dense layers only
//! (batch norm, ReLU, pooling and adds are left out, as is usual). The
//! depthwise rows also count bytes (`Record::bytes`), since a depthwise
//! layer is bound by memory: the f32 tensors the op must read and write.
//!
//! Every workload takes the [`Device`] it runs on. On a GPU the inputs and
//! weights are moved there before timing, each timed run ends with
//! [`engine::cuda::synchronize`] (ops return once their work is queued), and
//! the row is named `<workload>.cuda-f32` ([`row_name`]), as
//! pytorch_bench.py names its GPU rows. The backbone and extract workloads
//! also run on a GPU with the convolutions in f16 and bf16
//! (`Backbone::set_precision`: 16-bit operands, f32 accumulation on tensor
//! cores), rows `<workload>.cuda-f16` / `.cuda-bf16` ([`row_name_in`]), the
//! names of PyTorch's autocast rows, so they pair at equal precision.

use crate::report::{measure, median, Record};
use crate::spec::{self, Mode};
use engine::ops::{self, Padding};
use engine::optim::{zero_grad, Adam, Optimizer};
use engine::rng::uniform_f32;
use engine::{no_grad, Device, Element, Param, Precision, Tensor};
use models::layers::{Activation, Dense, Dropout, Init};
use models::{Backbone, ModelOptions, Pooling};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Bytes of one 32x32 RGB image.
const IMAGE_BYTES: usize = 32 * 32 * 3;

/// Decodes one 32x32 RGB JPEG into `out` (HWC), as the trainer's image-folder
/// reader does (same `image` crate and codec).
fn decode_image(path: &Path, out: &mut [u8]) -> Result<()> {
    let img = image::open(path)
        .map_err(|e| format!("{}: cannot be decoded: {e}", path.display()))?
        .into_rgb8();
    if img.width() != 32 || img.height() != 32 {
        return Err(format!(
            "{}: is {}x{}, expected a 32x32 CIFAR-10 image",
            path.display(),
            img.width(),
            img.height()
        ));
    }
    out.copy_from_slice(img.as_raw());
    Ok(())
}

/// Errors of the workloads, as text naming the workload.
pub type Result<T> = std::result::Result<T, String>;

/// A workload's row name on `device`: its own name on the CPU,
/// `<name>.cuda-f32` on a GPU (pytorch_bench.py's GPU row names, so
/// `--compare` pairs them).
pub fn row_name(name: &str, device: Device) -> String {
    row_name_in(name, device, Precision::F32)
}

/// [`row_name`] of a row whose convolutions ran in `precision`:
/// `<name>.cuda-f16` / `<name>.cuda-bf16` on a GPU. (16-bit rows run on GPUs
/// only: on the CPU half precision is an emulation, not a speed.)
pub fn row_name_in(name: &str, device: Device, precision: Precision) -> String {
    match device {
        Device::Cpu => name.to_string(),
        Device::Cuda(_) => format!("{name}.cuda-{}", precision.name()),
    }
}

/// Waits for the GPU's queued work before a timer stops (no-op on the CPU).
fn sync(device: Device) -> Result<()> {
    engine::cuda::synchronize(device).map_err(|e| e.to_string())
}

/// `t` moved to `device` (the same tensor on the CPU).
fn on(device: Device, t: Tensor) -> Result<Tensor> {
    t.to_device(device).map_err(|e| e.to_string())
}

/// Prefixes an error with the workload it came from.
fn ctx<E: std::fmt::Display>(name: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{name}: {e}")
}

/// A tensor of `shape` with values uniform in `[-scale, scale)`, seeded by `stream`.
fn random(shape: &[usize], scale: f32, stream: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|i| (uniform_f32(11, stream, i as u64) * 2.0 - 1.0) * scale)
        .collect();
    Tensor::from_vec(v, shape).expect("length equals the product of the shape")
}

fn record(
    name: &str,
    shape: String,
    times: Vec<f64>,
    flops: f64,
    items: f64,
    unit: &str,
) -> Record {
    Record {
        name: name.to_string(),
        shape,
        median_s: median(&times),
        times_s: times,
        flops,
        bytes: 0.0,
        items,
        unit: unit.to_string(),
        skipped: None,
    }
}

/// The peak: `C = A·B`, f32, through the GEMM every engine op uses. On the
/// CPU that is `Element::gemm` (thaw's own sgemm on AVX-512 CPUs, else
/// matrixmultiply's) into one output
/// buffer; on a GPU `ops::matmul`, i.e. cuBLAS SGEMM with TF32 off unless
/// `THAW_ALLOW_TF32=1`, allocating its output each call as every op does.
pub fn peak(p: &spec::Peak, mode: Mode, device: Device) -> Result<Record> {
    let name = row_name(&p.name, device);
    let a = random(&[p.m, p.k], 1.0, 1);
    let b = random(&[p.k, p.n], 1.0, 2);
    let times = match device {
        Device::Cpu => cpu_gemm(p, mode, &a.to_vec_f32(), &b.to_vec_f32())?,
        Device::Cuda(_) => {
            let (a, b) = (on(device, a)?, on(device, b)?);
            let _guard = no_grad();
            measure(p.warmup, p.reps.get(mode), || {
                ops::matmul(&a, &b).map_err(|e| e.to_string())?;
                sync(device)
            })
            .map_err(ctx(&name))?
        }
    };
    let flops = 2.0 * (p.m * p.k * p.n) as f64;
    Ok(record(
        &name,
        format!("{}x{} . {}x{}", p.m, p.k, p.k, p.n),
        times,
        flops,
        0.0,
        "",
    ))
}

/// The CPU peak's timed runs: `c = a·b` into one preallocated buffer.
fn cpu_gemm(p: &spec::Peak, mode: Mode, a: &[f32], b: &[f32]) -> Result<Vec<f64>> {
    let mut c = vec![0f32; p.m * p.n];
    measure::<String>(p.warmup, p.reps.get(mode), || {
        f32::gemm(
            p.m,
            p.k,
            p.n,
            1.0,
            a,
            (p.k as isize, 1),
            b,
            (p.n as isize, 1),
            0.0,
            &mut c,
            (p.n as isize, 1),
        );
        Ok(())
    })
}

/// Output height (or width) of a conv, as TensorFlow computes it.
fn conv_out(size: usize, k: usize, stride: usize, same: bool) -> usize {
    if same {
        size.div_ceil(stride)
    } else {
        (size - k) / stride + 1
    }
}

/// FLOPs of one conv2d forward: 2·n·oh·ow·kh·kw·cin·cout.
pub fn conv_flops(c: &spec::Conv) -> f64 {
    let same = c.padding == "same";
    let (oh, ow) = (
        conv_out(c.h, c.k, c.stride, same),
        conv_out(c.w, c.k, c.stride, same),
    );
    2.0 * (c.n * oh * ow * c.k * c.k * c.c * c.o) as f64
}

fn conv_shape(c: &spec::Conv) -> String {
    format!(
        "n={} {}x{}x{} -> {} k{}/{} {}",
        c.n, c.h, c.w, c.c, c.o, c.k, c.stride, c.padding
    )
}

/// conv2d forward (under `no_grad`) and backward (dx and dkernel), as two records.
///
/// Backward is timed as PyTorch's side does it: the graph
/// `loss = sum(conv2d(x, K) * dy)` is built once, and each timed run calls
/// `loss.backward()` (sum and mul backward are elementwise passes over the
/// output, small next to the two GEMMs of the conv's backward). On a GPU
/// `mul` has no CUDA arm yet, so the loss is `sum(conv2d(x, K))` (dy = 1,
/// one fill instead of a fill and a multiply); pytorch_bench.py's GPU rows
/// do the same.
pub fn conv(c: &spec::Conv, t: &spec::Timing, mode: Mode, device: Device) -> Result<[Record; 2]> {
    let padding = if c.padding == "same" {
        Padding::Same
    } else {
        Padding::Valid
    };
    let stride = (c.stride, c.stride);
    let x = on(device, random(&[c.n, c.h, c.w, c.c], 1.0, 3))?;
    let scale = (6.0 / (c.k * c.k * c.c) as f32).sqrt();
    let k = on(device, random(&[c.k, c.k, c.c, c.o], scale, 4))?;
    let flops = conv_flops(c);
    let reps = t.reps.get(mode);

    let fwd_name = row_name(&format!("{}.fwd", c.name), device);
    let fwd = {
        let _guard = no_grad();
        measure(t.warmup, reps, || {
            ops::conv2d(&x, &k, None, stride, padding).map_err(|e| e.to_string())?;
            sync(device)
        })
        .map_err(ctx(&fwd_name))?
    };

    let bwd_name = row_name(&format!("{}.bwd", c.name), device);
    let (xp, kp) = (Param::new("x", x), Param::new("kernel", k));
    let loss = (|| {
        let y = ops::conv2d(&xp.tensor(), &kp.tensor(), None, stride, padding)?;
        match device {
            Device::Cpu => ops::sum(&ops::mul(&y, &random(y.shape(), 1.0, 5))?),
            Device::Cuda(_) => ops::sum(&y),
        }
    })()
    .map_err(ctx(&bwd_name))?;
    let bwd = measure(t.warmup, reps, || {
        xp.zero_grad();
        kp.zero_grad();
        loss.backward().map_err(|e| e.to_string())?;
        sync(device)
    })
    .map_err(ctx(&bwd_name))?;
    if xp.grad().is_none() || kp.grad().is_none() {
        return Err(format!(
            "{bwd_name}: backward did not produce dx and dkernel"
        ));
    }

    let shape = conv_shape(c);
    Ok([
        record(&fwd_name, shape.clone(), fwd, flops, c.n as f64, "img/s"),
        record(&bwd_name, shape, bwd, 2.0 * flops, c.n as f64, "img/s"),
    ])
}

/// Depthwise convolution forward (under `no_grad`) and backward (dx and
/// dkernel), as two records, timed as [`conv`] times conv2d (the backward
/// through `loss = sum(y · dy)`, so its time includes that loss's
/// elementwise backward on both engines).
///
/// Bytes: forward reads x and K and writes y; backward reads x, dy and K and
/// writes dx and dK: `4·(x + y + K)` and `4·(2x + y + 2K)`, in f32 elements.
pub fn depthwise(
    d: &spec::Depthwise,
    t: &spec::Timing,
    mode: Mode,
    device: Device,
) -> Result<[Record; 2]> {
    let padding = Padding::Explicit {
        top: d.pad,
        bottom: d.pad,
        left: d.pad,
        right: d.pad,
    };
    let stride = (d.stride, d.stride);
    let (oh, ow) = d.out();
    let x = on(device, random(&[d.n, d.h, d.w, d.c], 1.0, 3))?;
    let scale = (6.0 / (d.k * d.k) as f32).sqrt();
    let k = on(device, random(&[d.k, d.k, d.c, 1], scale, 4))?;
    let flops = 2.0 * (d.n * oh * ow * d.c * d.k * d.k) as f64;
    let (xs, ys, ks) = (d.n * d.h * d.w * d.c, d.n * oh * ow * d.c, d.k * d.k * d.c);
    let fwd_bytes = 4.0 * (xs + ys + ks) as f64;
    let bwd_bytes = 4.0 * (2 * xs + ys + 2 * ks) as f64;
    let reps = t.reps.get(mode);
    let shape = format!(
        "n={} {}x{}x{} k{}/{} pad {}",
        d.n, d.h, d.w, d.c, d.k, d.stride, d.pad
    );

    let fwd_name = row_name(&format!("{}.fwd", d.name), device);
    let fwd = {
        let _guard = no_grad();
        measure(t.warmup, reps, || {
            ops::depthwise_conv2d(&x, &k, None, stride, padding).map_err(|e| e.to_string())?;
            sync(device)
        })
        .map_err(ctx(&fwd_name))?
    };

    let bwd_name = row_name(&format!("{}.bwd", d.name), device);
    let (xp, kp) = (Param::new("x", x), Param::new("kernel", k));
    let loss = (|| {
        let y = ops::depthwise_conv2d(&xp.tensor(), &kp.tensor(), None, stride, padding)?;
        match device {
            Device::Cpu => ops::sum(&ops::mul(&y, &random(y.shape(), 1.0, 5))?),
            Device::Cuda(_) => ops::sum(&y),
        }
    })()
    .map_err(ctx(&bwd_name))?;
    let bwd = measure(t.warmup, reps, || {
        xp.zero_grad();
        kp.zero_grad();
        loss.backward().map_err(|e| e.to_string())?;
        sync(device)
    })
    .map_err(ctx(&bwd_name))?;
    if xp.grad().is_none() || kp.grad().is_none() {
        return Err(format!(
            "{bwd_name}: backward did not produce dx and dkernel"
        ));
    }
    let with_bytes = |r: Record, bytes| Record { bytes, ..r };
    Ok([
        with_bytes(
            record(&fwd_name, shape.clone(), fwd, flops, d.n as f64, "img/s"),
            fwd_bytes,
        ),
        with_bytes(
            record(&bwd_name, shape, bwd, 2.0 * flops, d.n as f64, "img/s"),
            bwd_bytes,
        ),
    ])
}

/// A backbone without its top, with global average pooling (what `extract`
/// computes), with its initial (seeded Glorot) weights: speed does not
/// depend on the weights' values.
fn build_backbone(model: &str) -> Result<Box<dyn Backbone>> {
    let options = ModelOptions {
        include_top: false,
        pooling: Pooling::Avg,
        input_size: None,
        init_seed: 0,
        alpha: None,
    };
    let m = models::build(model, &options).map_err(ctx(model))?;
    m.set_trainable(false);
    Ok(m)
}

/// FLOPs of one image through `model` at `size` x `size`, counted from the
/// model's own layers: every weight named `<layer>/kernel` of rank 4 (a
/// conv) or 2 (a dense layer), or `<layer>/depthwise_kernel`, is matched with that layer's output shape,
/// read from a forward pass on one image with every such layer tapped.
pub fn backbone_flops_per_image(model: &dyn Backbone, size: usize) -> Result<f64> {
    let mut kernels = Vec::new();
    for layer in model.weighted_layers() {
        let names = [
            format!("{}/kernel", layer.name()),
            format!("{}/depthwise_kernel", layer.name()),
        ];
        if let Some(k) = layer
            .weights()
            .iter()
            .find(|p| names.iter().any(|n| p.name() == n))
        {
            kernels.push((layer.name().to_string(), k.shape()));
        }
    }
    let taps: Vec<&str> = kernels.iter().map(|(n, _)| n.as_str()).collect();
    let x = random(&[1, size, size, 3], 100.0, 6);
    let _guard = no_grad();
    let (_, outputs) = model
        .forward_with_taps(&x, &taps)
        .map_err(ctx(model.name()))?;
    let mut flops = 0.0;
    for (name, k) in &kernels {
        let y = outputs
            .get(name)
            .ok_or_else(|| format!("{}: layer {name} was not tapped", model.name()))?;
        let out_pixels: usize = y.shape()[1..y.rank() - 1].iter().product();
        // k = [kh, kw, cin, cout], [in, out], or a depthwise [kh, kw, c, m]
        // (c·m outputs of kh·kw each): multiply-adds per output pixel = product of k.
        flops += 2.0 * (out_pixels * k.iter().product::<usize>()) as f64;
    }
    Ok(flops)
}

/// Whole-backbone forward under `no_grad`, inference mode, on
/// preprocessed-range inputs already on `device`, `batch` images per call
/// (the workload's batch on the CPU, [`spec::Cuda::batch`] on a GPU).
/// The convolutions run in `precision` (f32, or f16/bf16 on a GPU).
pub fn backbone(
    b: &spec::Backbone,
    mode: Mode,
    device: Device,
    batch: usize,
    precision: Precision,
) -> Result<Record> {
    let name = row_name_in(&b.name, device, precision);
    let model = build_backbone(&b.model)?;
    let flops = batch as f64 * backbone_flops_per_image(model.as_ref(), b.size)?;
    model.to_device(device).map_err(ctx(&name))?;
    model.set_precision(precision);
    let x = on(device, random(&[batch, b.size, b.size, 3], 120.0, 7))?;
    let _guard = no_grad();
    let times = measure(b.warmup, b.reps.get(mode), || {
        model.forward(&x, false).map_err(|e| e.to_string())?;
        sync(device)
    })
    .map_err(ctx(&name))?;
    Ok(record(
        &name,
        format!("n={batch} {}x{}x3", b.size, b.size),
        times,
        flops,
        batch as f64,
        "img/s",
    ))
}

/// FLOPs of one head training step: forward `2b(f·h + h·c)`; backward
/// computes dW of both layers and dx of the second only (the features are
/// constants), `2b·f·h + 4b·h·c`.
pub fn head_flops(h: &spec::Head) -> f64 {
    let (b, f, hid, c) = (
        h.batch as f64,
        h.features as f64,
        h.hidden as f64,
        h.classes as f64,
    );
    2.0 * b * (f * hid + hid * c) + 2.0 * b * f * hid + 4.0 * b * hid * c
}

/// One training step of the classifier head on fixed features:
/// Dense(hidden, relu) -> Dropout -> Dense(classes) -> softmax cross-entropy,
/// backward, Adam step, gradients cleared. Every op of the step has a CUDA
/// arm (matmul, bias add, relu, dropout, softmax cross-entropy, Adam without
/// weight decay), so on a GPU the parameters and features live there. (The
/// trainer keeps its head on the CPU; this row shows what the GPU would do.)
pub fn head(h: &spec::Head, mode: Mode, device: Device) -> Result<Record> {
    let name = row_name(&h.name, device);
    let mut init = Init::new(1);
    let fc1 = Dense::new("fc1", h.features, h.hidden, Activation::Relu, &mut init);
    let dropout = Dropout::new("dropout", h.dropout, 1).map_err(ctx(&h.name))?;
    let fc2 = Dense::new("logits", h.hidden, h.classes, Activation::Linear, &mut init);
    let params: Vec<Param> = [&fc1, &fc2]
        .iter()
        .flat_map(|d| [d.kernel.clone(), d.bias.clone()])
        .collect();
    for p in &params {
        let moved = on(device, p.value())?;
        p.set_value(moved).map_err(ctx(&name))?;
    }
    let x = on(device, random(&[h.batch, h.features], 1.0, 8))?;
    let labels: Vec<usize> = (0..h.batch).map(|i| i % h.classes).collect();
    let mut adam = Adam::new(h.lr);
    let step = || -> Result<()> {
        (|| -> models::Result<()> {
            let hidden = dropout.forward(&fc1.forward(&x)?, true)?;
            let logits = fc2.forward(&hidden)?;
            ops::softmax_cross_entropy(&logits, &labels)?.backward()?;
            adam.step(&params)?;
            zero_grad(&params);
            Ok(())
        })()
        .map_err(|e| e.to_string())?;
        sync(device)
    };
    let times = measure(h.warmup, h.reps.get(mode), step).map_err(ctx(&name))?;
    Ok(record(
        &name,
        format!(
            "b={} {}->{} relu->dropout {}->{}, Adam",
            h.batch, h.features, h.hidden, h.dropout, h.classes
        ),
        times,
        head_flops(h),
        1.0,
        "step/s",
    ))
}

/// The images an extract workload reads: `images / 10` files from each
/// class folder of `dir` (class folders and files in name order).
pub fn select_images(dir: &Path, images: usize) -> Result<Vec<PathBuf>> {
    let sorted = |d: &Path| -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(|e| format!("cannot list {}: {e}", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        v.sort();
        Ok(v)
    };
    let classes: Vec<PathBuf> = sorted(dir)?.into_iter().filter(|p| p.is_dir()).collect();
    if classes.len() != 10 {
        return Err(format!(
            "{} has {} class folders, expected CIFAR-10's 10 (HINT: point --data at cifar10-jpeg/test)",
            dir.display(),
            classes.len()
        ));
    }
    let mut files = Vec::new();
    for class in &classes {
        let f = sorted(class)?;
        if f.len() < images / 10 {
            return Err(format!(
                "{} has {} images, the workload needs {}",
                class.display(),
                f.len(),
                images / 10
            ));
        }
        files.extend(f.into_iter().take(images / 10));
    }
    Ok(files)
}

/// End-to-end feature extraction: decode JPEG files (in parallel), then per
/// batch the trainer's own `features_of_batch` (what `trainer extract`
/// runs): on the CPU resize 32 -> size (bilinear) and Keras 'caffe'
/// preprocessing, on a GPU upload the uint8 pixels and resize + preprocess
/// in one kernel; backbone forward with global average pooling; features
/// back on the host, kept in memory. `batch` images per forward pass.
pub fn extract(
    e: &spec::Extract,
    files: &[PathBuf],
    mode: Mode,
    device: Device,
    batch: usize,
    precision: Precision,
) -> Result<Record> {
    let name = row_name_in(&e.name, device, precision);
    let model = build_backbone(&e.model)?;
    let flops = files.len() as f64 * backbone_flops_per_image(model.as_ref(), e.size)?;
    model.to_device(device).map_err(ctx(&name))?;
    model.set_precision(precision);
    let run = || -> Result<()> {
        let mut features = Vec::with_capacity(files.len());
        for chunk in files.chunks(batch) {
            let mut pixels = vec![0u8; chunk.len() * IMAGE_BYTES];
            pixels
                .par_chunks_mut(IMAGE_BYTES)
                .zip(chunk.par_iter())
                .try_for_each(|(out, path)| decode_image(path, out))?;
            let y = trainer::extract::features_of_batch(model.as_ref(), &pixels, e.size)
                .map_err(|x| x.to_string())?;
            features.push(y);
        }
        // The features are on the host already (the copy waits); nothing left to wait for.
        sync(device)
    };
    let times = measure(e.warmup, e.reps.get(mode), run).map_err(ctx(&name))?;
    Ok(record(
        &name,
        format!("N={} 32->{} px, batch {batch}", files.len(), e.size),
        times,
        flops,
        files.len() as f64,
        "img/s",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VGG's conv FLOPs in closed form: block b (filters 64, 128, 256, 512,
    /// 512; `convs[b]` convolutions) runs at size/2^b; 2·s²·9·cin·cout per conv.
    fn vgg_closed_form(convs: [usize; 5], size: usize) -> f64 {
        let (mut c, mut s, mut total) = (3usize, size, 0.0);
        for (o, n) in [64, 128, 256, 512, 512].into_iter().zip(convs) {
            for _ in 0..n {
                total += 2.0 * (s * s * 9 * c * o) as f64;
                c = o;
            }
            s /= 2;
        }
        total
    }

    #[test]
    fn tapped_flop_count_equals_the_closed_form_for_vgg16_and_vgg19() {
        for (name, convs) in [("vgg16", [2, 2, 3, 3, 3]), ("vgg19", [2, 2, 4, 4, 4])] {
            let model = build_backbone(name).unwrap();
            let counted = backbone_flops_per_image(model.as_ref(), 32).unwrap();
            assert_eq!(counted, vgg_closed_form(convs, 32), "{name}");
        }
        // At 224 the closed form gives the well-known ~30.7 GFLOP (15.35 GMAC)
        // for VGG16, and for VGG19 what pytorch_bench.py's hooks count for
        // torchvision's vgg19 features (39,016,857,600), so the bench row
        // backbone.vgg19@224 compares equal work.
        assert!((vgg_closed_form([2, 2, 3, 3, 3], 224) / 1e9 - 30.7).abs() < 0.1);
        assert_eq!(vgg_closed_form([2, 2, 4, 4, 4], 224), 39_016_857_600.0);
    }

    /// EfficientNet-Lite0's conv FLOPs in closed form from its stage table
    /// (kernel, first stride, expand ratio, output channels, repeats): per
    /// block a 1x1 expand at the input size (when the ratio is not 1), a
    /// depthwise kxk and a 1x1 project at the output size.
    fn efficientnet_lite0_closed_form(size: usize) -> f64 {
        let stages = [
            (3, 1, 1, 16, 1),
            (3, 2, 6, 24, 2),
            (5, 2, 6, 40, 2),
            (3, 2, 6, 80, 3),
            (5, 1, 6, 112, 3),
            (5, 2, 6, 192, 4),
            (3, 1, 6, 320, 1),
        ];
        let mut s = size.div_ceil(2);
        let mut macs = s * s * 9 * 3 * 32;
        let mut c = 32;
        for (k, stride, e, o, repeats) in stages {
            for r in 0..repeats {
                let mid = c * e;
                if e != 1 {
                    macs += s * s * c * mid;
                }
                s = s.div_ceil(if r == 0 { stride } else { 1 });
                macs += s * s * (k * k * mid + mid * o);
                c = o;
            }
        }
        2.0 * (macs + s * s * 320 * 1280) as f64
    }

    #[test]
    fn tapped_flop_count_equals_the_closed_form_for_efficientnet_lite0() {
        let model = build_backbone("efficientnet_lite0").unwrap();
        let counted = backbone_flops_per_image(model.as_ref(), 64).unwrap();
        assert_eq!(counted, efficientnet_lite0_closed_form(64));
        // At 224 that is the published ~0.39 GMAC (0.78 GFLOP) of Lite0 without its top.
        let g = efficientnet_lite0_closed_form(224) / 1e9;
        assert!((0.70..0.80).contains(&g), "{g} GFLOP");
    }

    #[test]
    fn inception_v3_flop_count_equals_torchvision_s() {
        // What pytorch_bench.py's hooks count for torchvision's Inception3
        // (aux_logits=False, transform_input=False) from Conv2d_1a_3x3 to
        // Mixed_7c, one image (bench/pytorch_bench.py's flops_per_image,
        // torchvision 0.29.2): the bench rows backbone.inception_v3@299 and
        // extract.inception_v3@299 compare equal work. 75 px is the same at
        // the smallest input.
        let model = build_backbone("inception_v3").unwrap();
        for (size, torchvision) in [(299, 11_422_336_192.0), (75, 402_955_456.0)] {
            let counted = backbone_flops_per_image(model.as_ref(), size).unwrap();
            assert_eq!(counted, torchvision, "{size} px");
        }
    }

    #[test]
    fn conv_flops_follow_the_output_size() {
        let c = spec::Conv {
            name: "c".into(),
            n: 2,
            h: 230,
            w: 230,
            c: 3,
            o: 64,
            k: 7,
            stride: 2,
            padding: "valid".into(),
            quick: true,
        };
        // ResNet50 conv1: 112x112 outputs, 7·7·3 taps, 64 filters.
        assert_eq!(conv_flops(&c), 2.0 * (2 * 112 * 112 * 147 * 64) as f64);
    }
}
