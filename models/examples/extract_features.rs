//! The trainer's data path without its command line: JPEGs to backbone features.
//!
//!     cargo run --release -p models --example extract_features -- [DIR] [--model NAME]
//!         [--size S] [--limit N] [--weights FILE.safetensors]
//!
//! ```text
//! JPEG/PNG files ─▶ 8-bit RGB ─▶ bilinear_resize to S×S ─▶ preprocess_input (the model's mode)
//!   ─▶ Backbone::forward under no_grad ─▶ [n, h, w, C] ─▶ global_avg_pool ─▶ features [n, C]
//! ```
//!
//! DIR is searched for images at any depth (default: an unpacked CIFAR-10
//! test folder, `../shared/data/cifar10-jpeg/test` or
//! `target/example-images/cifar10-jpeg/test`, where CI unpacks ten), sorted by file name, then folder (so
//! CIFAR-10's come one per class), and the first N (default 4) taken. Without
//! `--weights` (a .safetensors file, as `trainer convert` writes) the
//! backbone gets `weights::seeded` values, no download: the shapes and the
//! path are real, the feature values are not ImageNet's.

use engine::{ops, Tensor};
use models::ModelOptions;
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const DEFAULT_DIRS: [&str; 2] = [
    "../shared/data/cifar10-jpeg/test",
    "target/example-images/cifar10-jpeg/test",
];
const NO_IMAGES: &str = "no image folder given, and neither default is one; unpack a few \
    (tar -xJf ../shared/data/cifar10-jpeg.tar.xz -C /tmp --wildcards 'cifar10-jpeg/test/*/000?.jpg') \
    and pass their folder: -- /tmp/cifar10-jpeg/test";

/// The image files under `dir`, at any depth.
fn image_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            image_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("jpg" | "jpeg" | "png")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// One image as a float tensor `[1, size, size, 3]` of 0..255 RGB values:
/// decoded by content (not by file name), converted to 8-bit RGB, resized
/// bilinearly with half-pixel centres (as Keras).
fn load_image(path: &Path, size: usize) -> Result<Tensor> {
    let rgb = image::ImageReader::open(path)?
        .with_guessed_format()?
        .decode()?
        .to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let pixels: Vec<f32> = rgb.into_raw().into_iter().map(f32::from).collect();
    let x = Tensor::from_vec(pixels, &[1, h, w, 3])?;
    Ok(ops::bilinear_resize(&x, size, size)?)
}

fn run(args: Vec<String>) -> Result<()> {
    let mut args = args.into_iter().peekable();
    let dir = args.next_if(|a| !a.starts_with("--")).map(PathBuf::from);
    let (mut model, mut size, mut limit, mut weights) = ("resnet50".to_string(), None, 4, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse()
                .map_err(|_| format!("{flag} {value}: give a whole number"))
        };
        match flag.as_str() {
            "--size" => size = Some(number()?),
            "--limit" => limit = number()?,
            "--model" => model = value,
            "--weights" => weights = Some(value),
            _ => return Err(format!("unknown option {flag}; see the file's header").into()),
        }
    }
    let entry = models::registry::find(&model)?;
    let size = size.unwrap_or(entry.sizes.default);
    let default = || DEFAULT_DIRS.iter().map(PathBuf::from).find(|d| d.is_dir());
    let dir = dir.or_else(default).ok_or(NO_IMAGES)?;
    let mut files = Vec::new();
    image_files(&dir, &mut files).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    files.sort_by(|a, b| (a.file_name(), a).cmp(&(b.file_name(), b)));
    files.truncate(limit);
    if files.is_empty() {
        return Err(format!("no .jpg, .jpeg or .png files under {}", dir.display()).into());
    }

    // The batch: resized images side by side, then the model's preprocessing.
    let mut pixels = Vec::new();
    for path in &files {
        let one = load_image(path, size).map_err(|e| format!("{}: {e}", path.display()))?;
        pixels.extend(one.to_vec_f32());
    }
    let x = Tensor::from_vec(pixels, &[files.len(), size, size, 3])?;
    let x = models::preprocess_input(entry.preprocessing, &x)?;

    // The backbone without its top; pooling is done below, by hand.
    let backbone = models::build(&model, &ModelOptions::default())?;
    match weights {
        Some(file) => backbone.load(weights::load_safetensors(file)?.0)?,
        None => {
            // He-scaled seeded values (the tests' stand-in for ImageNet's): no download.
            backbone.load(weights::seeded::generate(&backbone.weight_spec(), 1))?;
            println!("{model}: seeded weights, not ImageNet's (pass --weights FILE)");
        }
    }
    let _frozen = engine::no_grad(); // inference: no tape, each activation freed after use
    let maps = backbone.forward(&x, false)?;
    let features = ops::global_avg_pool(&maps)?;
    println!(
        "input {:?} ({}) -> maps {:?} -> features {:?}",
        x.shape(),
        entry.preprocessing,
        maps.shape(),
        features.shape()
    );
    let width = features.shape()[1];
    for (path, row) in files.iter().zip(features.to_vec_f32().chunks(width)) {
        println!("{}: {:.4?} ...", path.display(), &row[..5.min(width)]);
    }
    Ok(())
}

fn main() {
    if let Err(e) = run(std::env::args().skip(1).collect()) {
        eprintln!("extract_features: {e}");
        std::process::exit(2);
    }
}
