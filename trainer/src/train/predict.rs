//! `trainer predict`: the classes of one image, or of every image in a
//! folder, by a saved model (or the top ImageNet classes with `--weights`).
//!
//! ```text
//! IMAGE or FOLDER ─▶ decode + resize as the model's training images were
//!   (input_side, crop_to_aspect_ratio: see model_file) ─▶ evaluate::image_probabilities
//!   ─▶ the ranking on stdout (one image) / CSV of file, class, probability (--out; a folder's default)
//! ```
//!
//! The CSV (written atomically, never over an input) has one row per image,
//! in sorted path order: the file (relative to the folder), its most
//! probable class and that class's probability. Unreadable files in a
//! folder are an error listing them, or with `--skip-bad-images` left out
//! and counted.

use super::evaluate::{check_batch_fits, image_probabilities, load_for_inference};
use super::fit::argmax_rows;
use super::model_file::LoadedModel;
use super::predictions::csv_field;
use crate::cli::PredictArgs;
use crate::data::{image_folder, Dataset, ImageOptions};
use crate::error::{Error, Result};
use crate::outputs::{refuse_inputs_as_outputs, Input, Output};
use std::path::{Path, PathBuf};

/// Runs `trainer predict`: for one image, its `--top` classes, most
/// probable first (printed); for a folder, each image's most probable
/// class and its probability, in file order (written to the CSV).
pub fn run_predict(args: &PredictArgs) -> Result<Vec<(String, f32)>> {
    let device = crate::device::resolve(args.device)?;
    let folder = args.image.is_dir();
    let out = match (&args.out, folder) {
        (Some(out), _) => Some(out.clone()),
        (None, true) => Some(default_csv(&args.image)),
        (None, false) => None,
    };
    let Some(model_file) = &args.model_file else {
        let Some(weights) = &args.weights else {
            return Err(Error::Usage(
                "predict needs --model-file (a model saved by `trainer train`) or --weights \
                 (with-top ImageNet weights, for the top ImageNet classes)"
                    .into(),
            ));
        };
        if folder || args.out.is_some() {
            return Err(Error::Usage(format!(
                "{}: --weights classifies one image into ImageNet classes and prints them; a \
                 folder and --out take --model-file (a model saved by `trainer train`)",
                args.image.display()
            )));
        }
        let ranked = crate::imagenet::predict(
            &args.model,
            args.alpha,
            weights,
            &args.image,
            args.top.max(1),
        )?;
        print_ranking(&args.image, &ranked);
        return Ok(ranked);
    };
    if args.batch_size == 0 {
        return Err(Error::Usage("--batch-size must be at least 1".into()));
    }
    if let Some(out) = &out {
        refuse_inputs_as_outputs(
            &[
                Input {
                    what: "the image or folder",
                    path: &args.image,
                },
                Input {
                    what: "--model-file",
                    path: model_file,
                },
            ],
            &[Output {
                what: "the CSV (--out)",
                path: out,
            }],
        )?;
    }
    let loaded = load_for_inference(model_file, args.alpha, device, engine::Precision::F32)?;
    let batch = if folder { args.batch_size } else { 1 };
    check_batch_fits(&loaded, batch, "--batch-size", device)?;
    let LoadedModel {
        backbone,
        head,
        meta,
    } = loaded;
    let opts = ImageOptions {
        resize_to: Some(meta.input_side),
        crop_to_aspect_ratio: meta.crop_to_aspect_ratio || args.images.crop_to_aspect_ratio,
        skip_bad_images: args.images.skip_bad_images,
    };
    let (root, (files, skipped)) = match folder {
        true => {
            let files = image_folder::files_under(&args.image)?;
            (
                args.image.clone(),
                image_folder::readable(&args.image, files, &opts)?,
            )
        }
        false => {
            crate::data::decode::probe(&args.image)?;
            (PathBuf::new(), (vec![args.image.clone()], Vec::new()))
        }
    };
    if files.is_empty() {
        return Err(Error::data(
            &args.image,
            "holds no image to classify; point predict at an image or a folder of images",
        ));
    }
    let n = files.len();
    let images = Dataset::streamed(
        meta.input_side,
        opts.crop_to_aspect_ratio,
        vec![0; n],
        meta.classes.clone(),
        files,
    );
    let probs = image_probabilities(
        backbone.as_ref(),
        &head,
        &images,
        meta.image_size,
        args.batch_size,
        meta.tta,
        "predict",
    )?;
    let k = meta.classes.len();
    let best: Vec<(String, f32)> = argmax_rows(&probs, k)
        .into_iter()
        .enumerate()
        .map(|(i, c)| (meta.classes[c].clone(), probs[i * k + c]))
        .collect();
    if let Some(out) = &out {
        write_csv(out, &root, &images.files, &best)?;
        eprintln!(
            "predict: {n} images classified{}; file, class and probability in {}",
            match skipped.len() {
                0 => String::new(),
                s => format!(" ({s} unreadable files skipped)"),
            },
            out.display()
        );
    }
    if folder {
        return Ok(best);
    }
    let mut ranked: Vec<(String, f32)> = meta.classes.iter().cloned().zip(probs).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(args.top.max(1));
    print_ranking(&args.image, &ranked);
    Ok(ranked)
}

/// A folder's default CSV: `FOLDER.predictions.csv` beside it.
fn default_csv(folder: &Path) -> PathBuf {
    let name = folder
        .file_name()
        .map_or("images".into(), |n| n.to_string_lossy().into_owned());
    folder.with_file_name(format!("{name}.predictions.csv"))
}

/// Writes `file,class,probability` rows (files relative to `root`) to
/// `out`, atomically.
fn write_csv(out: &Path, root: &Path, files: &[PathBuf], best: &[(String, f32)]) -> Result<()> {
    let mut text = String::from("file,class,probability\n");
    for (file, (class, p)) in files.iter().zip(best) {
        let name = file.strip_prefix(root).unwrap_or(file).to_string_lossy();
        text.push_str(&format!("{},{},{p}\n", csv_field(&name), csv_field(class)));
    }
    crate::npy::write_atomically(out, text.as_bytes())
}

/// Prints classes with their probabilities, most probable first.
fn print_ranking(image: &Path, ranked: &[(String, f32)]) {
    println!("{}:", image.display());
    for (class, p) in ranked {
        println!("  {:>6.2}%  {class}", 100.0 * p);
    }
}
