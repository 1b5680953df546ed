//! Fine-tuning on a GPU against the same run on the CPU: a seeded VGG16
//! (`weights::seeded`) with a standardized MLP head fine-tunes `block5` for
//! one epoch of two steps (8 seeded 32x32 images, batch 4, Adam lr 1e-4,
//! 4 validation images), once with everything on the CPU and once with the
//! backbone on GPU 0 (`train::fine_tune::fine_tune` moves the head there).
//!
//! Compared:
//! - the epoch's mean training loss and the validation loss, to 1e-4
//!   relative (cuDNN and cuBLAS sum in other orders: ~1e-6 per layer);
//! - the weight updates (fine-tuned weights minus the seeded start) of every
//!   tensor of block5 and of the head, to 1e-2 relative L2 error. Adam's
//!   first steps move each weight by about ±lr whatever the size of its
//!   gradient, so a gradient within rounding of 0 may step the other way on
//!   the other device: a few such elements are expected, a wrong gradient or
//!   a missing update (error 1) is not;
//! - after the run the head is back on the CPU, the backbone still on the
//!   GPU, and the model file written from there reloads to the in-memory
//!   weights bit for bit.
//!
//! Head training on cached feature rows (`fit_head`, which the trainer runs
//! on the backbone's GPU) is compared the same way: two epochs of a
//! standardized MLP head on seeded rows, on the CPU and on GPU 0.
//!
//! The CPU runs always happen (they check the tests themselves); without a
//! usable GPU the comparisons print SKIPPED. Both ran on an H100 (2026-11-23).

mod common;

use common::TempDir;
use engine::rng::Rng;
use engine::{Device, Tensor};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use trainer::data::stream::Images;
use trainer::data::{Dataset, IMAGE_BYTES};
use trainer::train::fine_tune::{fine_tune, ImageRows, TuneRows};
use trainer::train::{
    feature_cache, fit_head, model_file, save_model, FitConfig, Head, HeadKind, LrSchedule,
    ModelMeta, Rows,
};

const SEED: u64 = 77;
const BLOCK: &str = "block5";

/// `n` seeded uint8 32x32 RGB images and their labels (classes 0..10).
fn images(n: usize, stream: u64) -> (Vec<u8>, Vec<u8>) {
    let px = (0..n * IMAGE_BYTES)
        .map(|i| (engine::rng::random_u64(SEED, stream, i as u64) % 256) as u8)
        .collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    (px, labels)
}

/// What one run leaves: the epoch's training and validation losses, and
/// the weights of block5 and the head by name (host copies).
struct Run {
    loss: f64,
    val_loss: f64,
    weights: BTreeMap<String, Vec<f32>>,
}

/// The seeded VGG16 on `device` with a head standardized on `adapt_rows`.
fn model(
    seeded: &[(String, Tensor)],
    adapt_rows: &[f32],
    device: Device,
) -> (Box<dyn models::Backbone>, Head) {
    let backbone = model_file::build_backbone("vgg16", None).unwrap();
    backbone.load(seeded.to_vec()).unwrap();
    backbone.to_device(device).unwrap();
    let head = Head::new(HeadKind::Mlp, 512, 10, 5)
        .unwrap()
        .adapt(adapt_rows)
        .unwrap();
    (backbone, head)
}

fn fine_tune_on(
    device: Device,
    seeded: &[(String, Tensor)],
    adapt_rows: &[f32],
    out: Option<&std::path::Path>,
) -> trainer::Result<Run> {
    let (backbone, head) = model(seeded, adapt_rows, device);
    let (tpx, tly) = images(8, 1);
    let (vpx, vly) = images(4, 2);
    let cfg = FitConfig {
        epochs: 1,
        batch_size: 4,
        lr: 1e-4,
        schedule: LrSchedule::Constant,
        patience: usize::MAX,
        seed: 3,
    };
    let stop = AtomicBool::new(false);
    let meta = ModelMeta {
        model: "vgg16".into(),
        alpha: None,
        classes: (0..10).map(|c| format!("class{c}")).collect(),
        image_size: 32,
        input_side: 32,
        crop_to_aspect_ratio: false,
        head: HeadKind::Mlp,
        tta: false,
        standardize: true,
        val_accuracy: None,
    };
    let outcome = fine_tune(
        backbone.as_ref(),
        &head,
        BLOCK,
        &TuneRows::Images(ImageRows {
            images: (&tpx).into(),
            labels: &tly,
            flips: false,
        }),
        &TuneRows::Images(ImageRows {
            images: (&vpx).into(),
            labels: &vly,
            flips: false,
        }),
        32,
        &cfg,
        1,
        f64::NEG_INFINITY, // the one epoch always counts, so its weights are kept
        &stop,
        &mut |_, _| Ok(()),
    )?;
    assert_eq!(outcome.history.len(), 1);
    assert_eq!(head.device(), Device::Cpu, "the head comes back to the CPU");
    assert_eq!(backbone.device(), device, "the backbone stays where it was");
    if let Some(out) = out {
        // Saved from the GPU: the file holds host copies of the same values.
        save_model(out, backbone.as_ref(), &head, &meta)?;
        let (saved, _) = weights::load_safetensors(out).unwrap();
        let saved: BTreeMap<_, _> = saved.into_iter().collect();
        for (name, t) in backbone
            .named_tensors()
            .into_iter()
            .chain(head.named_tensors())
        {
            let want: Vec<u32> = t.to_vec_f32().iter().map(|v| v.to_bits()).collect();
            let got: Vec<u32> = saved[&name]
                .to_vec_f32()
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(got, want, "{name}: the saved file differs from the model");
        }
    }
    let weights = backbone
        .named_tensors()
        .into_iter()
        .filter(|(n, _)| n.starts_with(BLOCK))
        .chain(head.named_tensors())
        .map(|(n, t)| (n, t.to_vec_f32()))
        .collect();
    Ok(Run {
        loss: outcome.history[0].loss,
        val_loss: outcome.history[0].val_loss,
        weights,
    })
}

/// Why the GPU half cannot run here, or None when it can.
fn no_gpu() -> Option<String> {
    match engine::cuda::probe() {
        Err(e) => Some(e.to_string()),
        Ok(info) if !(info.cublas && info.cudnn) => Some(format!("{info} lacks cuBLAS or cuDNN")),
        Ok(_) => None,
    }
}

/// ‖b − a‖ / ‖a‖ (L2).
fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((y - x) as f64).powi(2)).sum();
    let den: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

/// Prints the relative L2 error between `name`'s updates on the two devices
/// and records it in `failures` when above 1e-2 (see the module docs).
fn check_update(name: &str, du_cpu: &[f32], du_gpu: &[f32], failures: &mut Vec<String>) {
    let err = relative_l2(du_cpu, du_gpu);
    println!("{name:<28} update error {err:.1e}");
    if err.is_nan() || err > 1e-2 {
        failures.push(format!("{name}: update differs by {err:.1e} (L2) > 1e-2"));
    }
}

#[test]
fn vgg16_fine_tune_on_the_gpu_matches_the_cpu() {
    let backbone = model_file::build_backbone("vgg16", None).unwrap();
    let seeded = weights::seeded::generate(&backbone.weight_spec(), SEED);
    backbone.load(seeded.clone()).unwrap();
    // The head's standardization, adapted once on the CPU on the training
    // images (as `--standardize` does), the same for both runs.
    let (adapt_px, _) = images(8, 1); // the training images
    let adapt_rows = feature_cache::extract_features(
        backbone.as_ref(),
        &adapt_px,
        32,
        8,
        false,
        "adapt",
        None,
        None,
    )
    .unwrap();
    drop(backbone);
    let start: BTreeMap<String, Vec<f32>> = {
        let (b, h) = model(&seeded, &adapt_rows, Device::Cpu);
        b.named_tensors()
            .into_iter()
            .filter(|(n, _)| n.starts_with(BLOCK))
            .chain(h.named_tensors())
            .map(|(n, t)| (n, t.to_vec_f32()))
            .collect()
    };

    let cpu = fine_tune_on(Device::Cpu, &seeded, &adapt_rows, None).unwrap();
    assert!(cpu.loss.is_finite() && cpu.val_loss.is_finite());
    // block5: 3 convolutions (kernel, bias); the head: norm mean, variance, 2 dense layers.
    assert_eq!(cpu.weights.len(), 6 + 2 + 4);
    let moved = cpu.weights.iter().filter(|(n, w)| start[*n] != **w).count();
    assert_eq!(
        moved,
        6 + 4,
        "every trainable tensor moves; the norm's statistics do not"
    );
    if let Some(why) = no_gpu() {
        common::skipped(format_args!(
            "fine-tuning ran on the CPU only (loss {:.4}); no GPU: {why}",
            cpu.loss
        ));
        return;
    }
    let dir = TempDir::new("fine-tune-gpu");
    let gpu = fine_tune_on(
        Device::Cuda(0),
        &seeded,
        &adapt_rows,
        Some(&dir.path().join("gpu.safetensors")),
    )
    .unwrap();
    let loss_err = (gpu.loss - cpu.loss).abs() / cpu.loss.abs();
    let val_err = (gpu.val_loss - cpu.val_loss).abs() / cpu.val_loss.abs();
    println!(
        "training loss cpu {:.6} gpu {:.6} (rel {loss_err:.1e}); validation loss cpu {:.6} \
         gpu {:.6} (rel {val_err:.1e})",
        cpu.loss, gpu.loss, cpu.val_loss, gpu.val_loss
    );
    let mut failures = Vec::new();
    if !(loss_err <= 1e-4 && val_err <= 1e-4) {
        failures.push(format!(
            "losses differ: training {loss_err:.1e}, validation {val_err:.1e} > 1e-4"
        ));
    }
    for (name, w0) in &start {
        let update = |w: &[f32]| w.iter().zip(w0).map(|(a, b)| a - b).collect::<Vec<f32>>();
        let (du_cpu, du_gpu) = (update(&cpu.weights[name]), update(&gpu.weights[name]));
        if du_cpu.iter().all(|&d| d == 0.0) {
            // The normalization's statistics: frozen on both.
            if du_gpu.iter().any(|&d| d != 0.0) {
                failures.push(format!("{name}: frozen on the CPU, moved on the GPU"));
            }
            continue;
        }
        check_update(name, &du_cpu, &du_gpu, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "fine-tuning on the GPU differs from the CPU:\n{}",
        failures.join("\n")
    );
}

/// Weights by name, as host values.
type Weights = BTreeMap<String, Vec<f32>>;

/// The head after two epochs of `fit_head` on `device` (from the same seeded
/// start on every device), its per-epoch (training, validation) losses, and
/// its weights by name.
fn fit_head_on(device: Device) -> (Vec<(f64, f64)>, Weights) {
    // 10 classes of 48 features: class k has mean +2 on feature k, noise in [-1, 1).
    let (dim, n, n_train) = (48, 400, 320);
    let mut rng = Rng::new(SEED, 9);
    let x: Vec<f32> = (0..n * dim)
        .map(|i| {
            (if i % dim == (i / dim) % 10 { 2.0 } else { 0.0 } + rng.uniform(-1.0, 1.0)) as f32
        })
        .collect();
    let y: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let train = Rows::new(&x[..n_train * dim], &y[..n_train], dim).unwrap();
    let val = Rows::new(&x[n_train * dim..], &y[n_train..], dim).unwrap();
    let head = Head::new(HeadKind::Mlp, dim, 10, SEED)
        .unwrap()
        .adapt(&x[..n_train * dim])
        .unwrap();
    head.to_device(device).unwrap();
    let cfg = FitConfig {
        epochs: 2,
        batch_size: 32,
        lr: 1e-2,
        schedule: LrSchedule::Cosine,
        patience: usize::MAX,
        seed: SEED,
    };
    let outcome = fit_head(
        &head,
        &train,
        &val,
        &cfg,
        &AtomicBool::new(false),
        &mut |_, _| Ok(()),
    )
    .unwrap();
    assert_eq!(head.device(), device, "the head trains where it was put");
    let losses = outcome
        .history
        .iter()
        .map(|m| (m.loss, m.val_loss))
        .collect();
    let weights = head
        .named_tensors()
        .into_iter()
        .map(|(name, t)| (name, t.to_vec_f32()))
        .collect();
    (losses, weights)
}

#[test]
fn head_training_on_the_gpu_matches_the_cpu() {
    let start: BTreeMap<String, Vec<f32>> = Head::new(HeadKind::Mlp, 48, 10, SEED)
        .unwrap()
        .named_tensors()
        .into_iter()
        .filter(|(name, _)| !name.contains("norm"))
        .map(|(name, t)| (name, t.to_vec_f32()))
        .collect();
    let (cpu_losses, cpu) = fit_head_on(Device::Cpu);
    assert!(cpu_losses
        .iter()
        .all(|(l, v)| l.is_finite() && v.is_finite()));
    assert!(
        cpu_losses[1].0 < cpu_losses[0].0,
        "the CPU run learns: {cpu_losses:?}"
    );
    if let Some(why) = no_gpu() {
        common::skipped(format_args!(
            "head training ran on the CPU only (losses {cpu_losses:?}); no GPU: {why}"
        ));
        return;
    }
    let (gpu_losses, gpu) = fit_head_on(Device::Cuda(0));
    let mut failures = Vec::new();
    for (epoch, (c, g)) in cpu_losses.iter().zip(&gpu_losses).enumerate() {
        let (train_err, val_err) = ((g.0 - c.0).abs() / c.0, (g.1 - c.1).abs() / c.1);
        println!(
            "epoch {}: training loss cpu {:.6} gpu {:.6} (rel {train_err:.1e}), validation loss \
             cpu {:.6} gpu {:.6} (rel {val_err:.1e})",
            epoch + 1,
            c.0,
            g.0,
            c.1,
            g.1
        );
        if !(train_err <= 1e-4 && val_err <= 1e-4) {
            failures.push(format!(
                "epoch {}: losses differ by more than 1e-4",
                epoch + 1
            ));
        }
    }
    for (name, w0) in &start {
        let update = |w: &[f32]| w.iter().zip(w0).map(|(a, b)| a - b).collect::<Vec<f32>>();
        check_update(
            name,
            &update(&cpu[name]),
            &update(&gpu[name]),
            &mut failures,
        );
    }
    assert!(
        failures.is_empty(),
        "head training on the GPU differs from the CPU:\n{}",
        failures.join("\n")
    );
}

/// Features of 29 images in batches of 8 (the last one 5) through
/// `feature_cache::extract_features` (the loop `for_each_batch`), from
/// memory and streamed from PNG files by the decoding threads, against
/// `extract::features_of_batch` batch by batch on the images in memory:
/// equal bit for bit, rows in order.
fn extracted_and_batch_by_batch(device: Device) -> [(Vec<f32>, Vec<f32>); 2] {
    let backbone = model_file::build_backbone("vgg16", None).unwrap();
    backbone
        .load(weights::seeded::generate(&backbone.weight_spec(), SEED))
        .unwrap();
    backbone.to_device(device).unwrap();
    let (px, labels) = images(29, 4);
    let dir = TempDir::new("gpu-streamed");
    let files: Vec<_> = px
        .chunks(IMAGE_BYTES)
        .enumerate()
        .map(|(i, image)| {
            let path = dir.path().join(format!("{i:02}.png"));
            image::RgbImage::from_raw(32, 32, image.to_vec())
                .unwrap()
                .save(&path)
                .unwrap();
            path
        })
        .collect();
    let streamed = Dataset::streamed(32, false, labels, vec!["c".into(); 10], files);
    let extract = |images: Images| {
        feature_cache::extract_features(backbone.as_ref(), images, 32, 8, false, "loop", None, None)
            .unwrap()
    };
    let mut one_by_one = Vec::new();
    for batch in px.chunks(8 * IMAGE_BYTES) {
        let y = trainer::extract::features_of_batch(backbone.as_ref(), batch, 32).unwrap();
        one_by_one.extend(y.to_vec_f32());
    }
    [
        (extract((&px).into()), one_by_one.clone()),
        (extract((&streamed).into()), one_by_one),
    ]
}

#[test]
fn extraction_from_memory_and_streamed_equals_batch_by_batch() {
    let [memory, streamed] = extracted_and_batch_by_batch(Device::Cpu);
    for (what, (extracted, one_by_one)) in [("memory", memory), ("streamed", streamed)] {
        assert_eq!(extracted.len(), 29 * 512, "CPU, {what}");
        assert_eq!(extracted, one_by_one, "CPU, {what}: the batches in order");
    }
    if let Some(why) = no_gpu() {
        common::skipped(format_args!(
            "extraction checked on the CPU only; no GPU: {why}"
        ));
        return;
    }
    let [memory, streamed] = extracted_and_batch_by_batch(Device::Cuda(0));
    for (what, (extracted, one_by_one)) in [("memory", memory), ("streamed", streamed)] {
        assert_eq!(extracted.len(), 29 * 512, "GPU, {what}");
        let equal = extracted
            .iter()
            .zip(&one_by_one)
            .filter(|(a, b)| a.to_bits() == b.to_bits())
            .count();
        println!(
            "GPU, {what}: {equal} of {} features bit-equal to the batch-by-batch ones",
            extracted.len()
        );
        assert_eq!(equal, extracted.len(), "GPU, {what}: features differ");
    }
}
