//! `trainer predict`: the classes of one image, or of every image in a
//! folder, by a saved model (`--model-file`) or by a model with its
//! ImageNet top (`--weights`; one image at a time, see
//! [`crate::imagenet`]).
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
        return predict_imagenet(args, weights, out.as_deref());
    };
    if args.batch_size == 0 {
        return Err(Error::Usage("--batch-size must be at least 1".into()));
    }
    if let Some(out) = &out {
        refuse_input_as_csv(args, "--model-file", model_file, out)?;
    }
    let loaded = load_for_inference(model_file, args.alpha, device, engine::Precision::F32)?;
    let batch = if folder { args.batch_size } else { 1 };
    check_batch_fits(&loaded, batch, "--batch-size", device)?;
    let LoadedModel {
        backbone,
        head,
        meta,
    } = loaded;
    let crop = meta.crop_to_aspect_ratio || args.images.crop_to_aspect_ratio;
    let Listed {
        root,
        files,
        skipped,
    } = list_images(args)?;
    let n = files.len();
    let images = Dataset::streamed(
        meta.input_side,
        crop,
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
        write_csv(out, &root, &images.files, &best, skipped)?;
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

/// `predict --weights`: the top ImageNet classes of one image (printed),
/// or of each image of a folder its most probable class (the CSV `out`),
/// one image at a time through [`crate::imagenet::classify`], so that an
/// image gets the same probabilities alone or in a folder.
fn predict_imagenet(
    args: &PredictArgs,
    weights: &Path,
    out: Option<&Path>,
) -> Result<Vec<(String, f32)>> {
    if let Some(out) = out {
        refuse_input_as_csv(args, "--weights", weights, out)?;
    }
    let classifier = crate::imagenet::load_classifier(&args.model, args.alpha, weights)?;
    let Listed {
        root,
        files,
        skipped,
    } = list_images(args)?;
    let folder = args.image.is_dir();
    let top = if folder { 1 } else { args.top.max(1) };
    let mut ranked = files
        .iter()
        .map(|f| crate::imagenet::classify(classifier.as_ref(), f, top))
        .collect::<Result<Vec<_>>>()?;
    let best: Vec<(String, f32)> = ranked.iter().map(|r| r[0].clone()).collect();
    if let Some(out) = out {
        write_csv(out, &root, &files, &best, skipped)?;
    }
    if folder {
        return Ok(best);
    }
    print_ranking(&args.image, &ranked[0]);
    Ok(ranked.remove(0))
}

/// Refuses a CSV `out` that is, or lies in, an input: the image or folder,
/// or the model (`flag`, at `model`).
fn refuse_input_as_csv(args: &PredictArgs, flag: &str, model: &Path, out: &Path) -> Result<()> {
    refuse_inputs_as_outputs(
        &[
            Input {
                what: "the image or folder",
                path: &args.image,
            },
            Input {
                what: flag,
                path: model,
            },
        ],
        &[Output {
            what: "the CSV (--out)",
            path: out,
        }],
    )
}

/// The images `predict` classifies.
struct Listed {
    /// What the CSV's file names are relative to: the folder (empty for one image).
    root: PathBuf,
    /// The images, in sorted path order.
    files: Vec<PathBuf>,
    /// Unreadable files left out (`--skip-bad-images`).
    skipped: usize,
}

/// The image, or the images of the folder (recursively, hidden files
/// skipped) whose headers read; the others listed in an error, or with
/// `--skip-bad-images` left out and counted.
fn list_images(args: &PredictArgs) -> Result<Listed> {
    let listed = match args.image.is_dir() {
        true => {
            let opts = ImageOptions {
                resize_to: None,
                crop_to_aspect_ratio: false,
                skip_bad_images: args.images.skip_bad_images,
            };
            let all = image_folder::files_under(&args.image)?;
            let (files, skipped) = image_folder::readable(&args.image, all, &opts)?;
            Listed {
                root: args.image.clone(),
                files,
                skipped: skipped.len(),
            }
        }
        false => {
            crate::data::decode::probe(&args.image)?;
            Listed {
                root: PathBuf::new(),
                files: vec![args.image.clone()],
                skipped: 0,
            }
        }
    };
    if listed.files.is_empty() {
        return Err(Error::data(
            &args.image,
            "holds no image to classify; point predict at an image or a folder of images",
        ));
    }
    Ok(listed)
}

/// A folder's default CSV: `FOLDER.predictions.csv` beside it.
fn default_csv(folder: &Path) -> PathBuf {
    let name = folder
        .file_name()
        .map_or("images".into(), |n| n.to_string_lossy().into_owned());
    folder.with_file_name(format!("{name}.predictions.csv"))
}

/// Writes `file,class,probability` rows (files relative to `root`) to
/// `out`, atomically, and says so (with the count of `skipped` files).
fn write_csv(
    out: &Path,
    root: &Path,
    files: &[PathBuf],
    best: &[(String, f32)],
    skipped: usize,
) -> Result<()> {
    let mut text = String::from("file,class,probability\n");
    for (file, (class, p)) in files.iter().zip(best) {
        let name = file.strip_prefix(root).unwrap_or(file).to_string_lossy();
        text.push_str(&format!("{},{},{p}\n", csv_field(&name), csv_field(class)));
    }
    crate::npy::write_atomically(out, text.as_bytes())?;
    eprintln!(
        "predict: {} images classified{}; file, class and probability in {}",
        files.len(),
        match skipped {
            0 => String::new(),
            s => format!(" ({s} unreadable files skipped)"),
        },
        out.display()
    );
    Ok(())
}

/// Prints classes with their probabilities, most probable first.
fn print_ranking(image: &Path, ranked: &[(String, f32)]) {
    println!("{}:", image.display());
    for (class, p) in ranked {
        println!("  {:>6.2}%  {class}", 100.0 * p);
    }
}
