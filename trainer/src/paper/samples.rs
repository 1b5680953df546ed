//! The test images themselves, for the picture at the top of the paper and
//! the figure of confident mistakes: found again from the run record, shown
//! at a readable size with their labels, right ones set apart from wrong.
//!
//! - CIFAR-10 batches: image `index` of the predictions is record `index`
//!   of `test_batch.bin` (its label byte is checked against the true class).
//! - Image folders: the predictions' `file`, under the dataset folder.
//!
//! The dataset folder is the record's `dataset.path` (schema 2), else
//! `--data` as given, else CIFAR-10 in the cache. When the images are no
//! longer there, or no longer the ones the run scored, the figure is left
//! out with a note saying why, and the rest of the paper is written.
//!
//! Each image is scaled so its longer side is [`TILE`] pixels: nearest
//! neighbour when that is a whole-number enlargement (a 32 px CIFAR-10
//! image: each pixel a 3x3 block, nothing invented), bilinear otherwise.

use super::saved_run::{Prediction, SavedRun};
use crate::data::{self, cifar_binary, decode};
use crate::train::report::{no_font_note, render_png_over};
use image::{imageops, Rgb, RgbImage};
use plotters::prelude::*;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The side, in pixels, each test image is shown at.
pub const TILE: u32 = 96;

/// Space around each image, in pixels.
const PAD: u32 = 10;

/// Height of the two label lines under each image.
const LABEL: u32 = 38;

/// Frame of a right prediction: thin, green.
const RIGHT: (u32, Rgb<u8>) = (2, Rgb([0, 140, 60]));

/// Frame of a wrong prediction: thick, red.
const WRONG: (u32, Rgb<u8>) = (5, Rgb([210, 0, 0]));

/// Where a run's test images are.
pub enum Source {
    /// `test_batch.bin` of CIFAR-10 batches.
    Batch(PathBuf),
    /// The dataset folder the files are relative to.
    Folder(PathBuf),
}

impl Source {
    /// The run's test images (see the module docs); Err says why they
    /// cannot be shown.
    pub fn of(run: &SavedRun) -> Result<Source, String> {
        let path = match (run.text("/dataset/path"), run.text("/options/data")) {
            (Some(p), _) | (None, Some(p)) => PathBuf::from(p),
            (None, None) => crate::download::cache_dir()
                .map(|c| crate::download::cifar10_batches(&c))
                .map_err(|e| e.to_string())?,
        };
        let gone = || {
            format!(
                "the test images are no longer at {} (the dataset the run read); restore them \
                 there and run `trainer report` again",
                path.display()
            )
        };
        if !path.exists() {
            return Err(gone());
        }
        match data::detect(&path) {
            Ok(data::Format::ImageFolder) => Ok(Source::Folder(path)),
            Ok(_) => cifar_binary::batch_dir(&path)
                .map(|d| Source::Batch(d.join(cifar_binary::TEST_BATCH)))
                .filter(|s| matches!(s, Source::Batch(b) if b.is_file()))
                .ok_or_else(gone),
            Err(e) => Err(format!("{e}; {}", gone())),
        }
    }

    /// The pixels of test image `p`, checked against the run (the batch's
    /// size and label byte); Err says what is wrong.
    pub fn image(&self, p: &Prediction, run: &SavedRun) -> Result<RgbImage, String> {
        match self {
            Source::Batch(file) => batch_image(file, p, run.predictions.len()),
            Source::Folder(root) => {
                if p.file.is_empty() {
                    return Err(format!(
                        "the predictions name no file for test image {}",
                        p.index
                    ));
                }
                let path = match Path::new(&p.file).is_absolute() {
                    true => PathBuf::from(&p.file),
                    false => root.join(&p.file),
                };
                decode::read_rgb8(&path, decode::SizeRule::Any).map_err(|e| e.to_string())
            }
        }
    }
}

/// Record `p.index` of the batch `file`, which must hold `n` records.
fn batch_image(file: &Path, p: &Prediction, n: usize) -> Result<RgbImage, String> {
    let record = cifar_binary::RECORD_BYTES as u64;
    let changed = |what: String| {
        format!(
            "{} is not the test batch the run scored ({what}); restore it and run `trainer \
             report` again",
            file.display()
        )
    };
    let mut f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    if len != n as u64 * record {
        return Err(changed(format!(
            "{len} bytes, {n} records of {record} expected"
        )));
    }
    let mut bytes = vec![0u8; record as usize];
    f.seek(SeekFrom::Start(p.index as u64 * record))
        .and_then(|_| f.read_exact(&mut bytes))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let (pixels, labels) = cifar_binary::decode(&bytes, file).map_err(|e| e.to_string())?;
    if labels[0] as usize != p.truth {
        return Err(changed(format!(
            "image {} is labelled {}, the predictions say {}",
            p.index, labels[0], p.truth
        )));
    }
    let side = data::IMAGE_SIDE as u32;
    RgbImage::from_raw(side, side, pixels).ok_or_else(|| "a record of the wrong size".into())
}

/// `img` scaled so its longer side is [`TILE`] (see the module docs).
pub fn readable(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    let long = w.max(h).max(1);
    let filter = match TILE.is_multiple_of(long) {
        true => imageops::FilterType::Nearest,
        false => imageops::FilterType::Triangle,
    };
    let scale = |v: u32| ((v as f64 * TILE as f64 / long as f64).round() as u32).max(1);
    imageops::resize(img, scale(w), scale(h), filter)
}

/// How [`readable`] enlarged images of `w x h`, for a caption.
pub fn scaling_words(w: u32, h: u32) -> String {
    let long = w.max(h).max(1);
    match TILE.is_multiple_of(long) {
        true => format!(
            "enlarged from {w}x{h} px by nearest neighbour ({0}x{0} px per pixel)",
            TILE / long
        ),
        false => format!("scaled from {w}x{h} px (bilinear) to {TILE} px on the longer side"),
    }
}

/// One test image in a grid: its pixels and its two label lines.
pub struct Tile {
    /// The image as read (its own size).
    pub image: RgbImage,
    /// Predicted class and probability; true class.
    pub lines: [String; 2],
    /// Whether the prediction is right.
    pub right: bool,
}

impl Tile {
    /// The tile of prediction `p` with the image `image`.
    pub fn new(p: &Prediction, image: RgbImage, classes: &[String]) -> Tile {
        Tile {
            image,
            lines: [
                format!(
                    "{} {:.0}%",
                    short(&classes[p.predicted]),
                    100.0 * p.confidence()
                ),
                format!("true: {}", short(&classes[p.truth])),
            ],
            right: p.right(),
        }
    }
}

/// A class name cut to fit under a tile.
fn short(name: &str) -> String {
    match name.chars().count() > 14 {
        true => format!("{}.", name.chars().take(13).collect::<String>()),
        false => name.to_string(),
    }
}

/// The tiles of `chosen` (None: an empty cell), each image read from
/// `source`; Err says why one could not be read.
pub fn tiles(
    run: &SavedRun,
    source: &Source,
    chosen: &[Option<&Prediction>],
) -> Result<Vec<Option<Tile>>, String> {
    chosen
        .iter()
        .map(|p| match p {
            Some(p) => Ok(Some(Tile::new(p, source.image(p, run)?, &run.classes))),
            None => Ok(None),
        })
        .collect()
}

/// The tiles as one PNG, `columns` a row (None: an empty cell): each image
/// at [`TILE`] px in its frame (thin green: right; thick red: wrong), the
/// predicted class and probability (green or red) and the true class under it.
pub fn grid_png(tiles: &[Option<Tile>], columns: usize) -> Result<Vec<u8>, String> {
    let columns = columns.clamp(1, tiles.len().max(1)) as u32;
    let rows = (tiles.len() as u32).div_ceil(columns);
    let (cell_w, cell_h) = (TILE + 2 * PAD, TILE + 2 * PAD + LABEL);
    let (w, h) = (columns * cell_w, rows.max(1) * cell_h);
    let mut canvas = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let mut labels = Vec::new();
    for (i, t) in tiles.iter().enumerate() {
        let Some(t) = t else { continue };
        let (x0, y0) = (
            (i as u32 % columns) * cell_w + PAD,
            (i as u32 / columns) * cell_h + PAD,
        );
        let (frame, color) = if t.right { RIGHT } else { WRONG };
        let img = readable(&t.image);
        // The image centred in its TILE x TILE square, the frame around that square.
        let side = TILE + 2 * frame;
        let border = RgbImage::from_pixel(side, side, color);
        imageops::overlay(
            &mut canvas,
            &border,
            (x0 - frame) as i64,
            (y0 - frame) as i64,
        );
        let blank = RgbImage::from_pixel(TILE, TILE, Rgb([255, 255, 255]));
        imageops::overlay(&mut canvas, &blank, x0 as i64, y0 as i64);
        let (ox, oy) = ((TILE - img.width()) / 2, (TILE - img.height()) / 2);
        imageops::overlay(&mut canvas, &img, (x0 + ox) as i64, (y0 + oy) as i64);
        labels.push((x0 as i32, (y0 + TILE + WRONG.0 + 4) as i32, color, &t.lines));
    }
    let mut buf = canvas.into_raw();
    let png = render_png_over(&mut buf, (w, h), |root| {
        for (x, y, color, lines) in labels {
            let c = RGBColor(color[0], color[1], color[2]);
            let style = ("sans-serif", 14).into_font().color(&c);
            root.draw(&Text::new(lines[0].clone(), (x, y), style))
                .map_err(|e| e.to_string())?;
            let style = ("sans-serif", 14).into_font().color(&BLACK);
            root.draw(&Text::new(lines[1].clone(), (x, y + 17), style))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())?;
    png.ok_or_else(|| no_font_note("the figure"))
}

/// The first `per_class` test images of each class, in index order
/// (chosen before looking at the predictions: not by outcome), row by row:
/// row `r` holds each class's `r`-th image, in class order (None where a
/// class has fewer, so that each class keeps its column).
pub fn first_of_each_class(
    preds: &[Prediction],
    classes: usize,
    per_class: usize,
) -> Vec<Option<&Prediction>> {
    let mut by_class: Vec<Vec<&Prediction>> = vec![Vec::new(); classes];
    for p in preds {
        if by_class[p.truth].len() < per_class {
            by_class[p.truth].push(p);
        }
    }
    (0..per_class)
        .flat_map(|r| by_class.iter().map(move |c| c.get(r).copied()))
        .collect()
}

/// The `n` wrong predictions made with the highest probability (the
/// lowest index first on a tie).
pub fn confident_mistakes(preds: &[Prediction], n: usize) -> Vec<&Prediction> {
    let mut wrong: Vec<&Prediction> = preds.iter().filter(|p| !p.right()).collect();
    wrong.sort_by(|a, b| {
        b.confidence()
            .total_cmp(&a.confidence())
            .then(a.index.cmp(&b.index))
    });
    wrong.truncate(n);
    wrong
}
