//! What a run leaves for people to read: the per-epoch metrics file (CSV),
//! the learning-curve and confusion-matrix pictures (PNG), and the text
//! tables printed at the end (accuracy, per-class accuracy, confusion
//! matrix, time per phase).
//!
//! Files sit next to the model file: for `--out cifar10.safetensors` they
//! are `cifar10.metrics.csv`, `cifar10.curves.png` and
//! `cifar10.confusion.png`.
//!
//! Pictures are drawn with `plotters` into an RGB buffer and written as PNG
//! with the `image` crate. Text needs a TrueType font: `$THAW_FONT`, else
//! DejaVu Sans or Liberation Sans from the usual system folders; without
//! one the pictures are skipped with a note (the CSV has every number).

use super::evaluate::Evaluation;
use super::fit::EpochMetrics;
use crate::error::{Error, Result};
use image::ImageEncoder as _;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `dir/stem.<suffix>` for a model file `dir/stem.safetensors`.
pub fn sibling(model_file: &Path, suffix: &str) -> PathBuf {
    let stem = model_file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    model_file.with_file_name(format!("{stem}.{suffix}"))
}

/// The header of the metrics file.
pub const METRICS_HEADER: &str = "epoch,phase,loss,train_acc,val_loss,val_acc,lr,seconds";

/// The metrics file: one CSV row per epoch, flushed as each epoch ends, so
/// an interrupted run keeps the rows of its finished epochs.
pub struct MetricsFile {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsFile {
    /// Creates (truncates) the file and writes the header.
    pub fn create(path: &Path) -> Result<MetricsFile> {
        let mut file = std::fs::File::create(path).map_err(|e| Error::io(path, "creating", e))?;
        writeln!(file, "{METRICS_HEADER}").map_err(|e| Error::io(path, "writing", e))?;
        Ok(MetricsFile {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one epoch.
    pub fn append(&mut self, m: &EpochMetrics) -> Result<()> {
        writeln!(
            self.file,
            "{},{},{:.6},{:.6},{:.6},{:.6},{:.6e},{:.3}",
            m.epoch, m.phase, m.loss, m.train_acc, m.val_loss, m.val_acc, m.lr, m.seconds
        )
        .and_then(|()| self.file.flush())
        .map_err(|e| Error::io(&self.path, "writing", e))
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One epoch as a progress line.
pub fn epoch_line(m: &EpochMetrics, total_epochs: usize, improved: bool) -> String {
    format!(
        "[{}] epoch {}/{}: loss {:.4}, acc {:.4}, val_loss {:.4}, val_acc {:.4}, lr {:.2e}, {:.1} s{}",
        m.phase,
        m.epoch,
        total_epochs,
        m.loss,
        m.train_acc,
        m.val_loss,
        m.val_acc,
        m.lr,
        m.seconds,
        if improved { "  (best so far)" } else { "" }
    )
}

/// Accuracy, per-class accuracy and the confusion matrix as text.
pub fn evaluation_text(e: &Evaluation, classes: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "accuracy: {:.4} ({} of {} images)",
        e.accuracy, e.correct, e.n
    );
    let width = classes.iter().map(|c| c.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(s, "per-class accuracy:");
    for (c, acc) in classes.iter().zip(&e.per_class) {
        let _ = writeln!(s, "  {c:<width$}  {acc:.4}");
    }
    let _ = writeln!(
        s,
        "confusion matrix (rows: true class, columns: predicted):"
    );
    let _ = write!(s, "  {:<width$}", "");
    for k in 0..classes.len() {
        let _ = write!(s, " {:>5}", k);
    }
    let _ = writeln!(s);
    for (k, (c, row)) in classes.iter().zip(&e.confusion).enumerate() {
        let _ = write!(s, "  {:<width$}", format!("{k} {c}"));
        for v in row {
            let _ = write!(s, " {v:>5}");
        }
        let _ = writeln!(s);
    }
    s
}

/// Finds and registers a TrueType font for the pictures (once per process);
/// false when none was found.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = std::env::var_os("THAW_FONT")
            .map(PathBuf::from)
            .into_iter()
            .collect();
        candidates.extend(
            [
                "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/TTF/DejaVuSans.ttf",
                "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
                "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
                "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
                "/Library/Fonts/Arial.ttf",
                "/System/Library/Fonts/Supplemental/Arial.ttf",
                "C:\\Windows\\Fonts\\arial.ttf",
            ]
            .iter()
            .map(PathBuf::from),
        );
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// A drawing on a plotters bitmap area.
pub type Drawing<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Draws into a white RGB buffer of `w x h` with `draw` and encodes it as
/// PNG; None when no font was found (the pictures need one for their text).
pub fn render_png(
    (w, h): (u32, u32),
    draw: impl FnOnce(Drawing) -> std::result::Result<(), String>,
) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![255u8; (w * h * 3) as usize];
    render_png_over(&mut buf, (w, h), draw)
}

/// [`render_png`] over `buf` (`w x h` RGB, already holding pixels: the
/// drawing goes on top of them).
pub fn render_png_over(
    buf: &mut [u8],
    (w, h): (u32, u32),
    draw: impl FnOnce(Drawing) -> std::result::Result<(), String>,
) -> Result<Option<Vec<u8>>> {
    if !font_ready() {
        return Ok(None);
    }
    {
        let root = BitMapBackend::with_buffer(buf, (w, h)).into_drawing_area();
        draw(root).map_err(|e| Error::Usage(format!("drawing a {w}x{h} picture: {e}")))?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(buf, w, h, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::Usage(format!("encoding a {w}x{h} picture as PNG: {e}")))?;
    Ok(Some(png))
}

/// The note printed, and put in the report, when a picture needs a font
/// that was not found.
pub fn no_font_note(what: &str) -> String {
    format!(
        "no TrueType font found, so {what} was not drawn; set THAW_FONT to a .ttf file \
         (e.g. DejaVuSans.ttf) to get the pictures"
    )
}

/// Writes a rendered picture to `path` atomically; returns whether there
/// was one (else prints why not).
fn write_png(path: &Path, png: Option<Vec<u8>>) -> Result<bool> {
    let Some(png) = png else {
        eprintln!("note: {}", no_font_note(&path.display().to_string()));
        return Ok(false);
    };
    crate::npy::write_atomically(path, &png)?;
    Ok(true)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The learning curves (loss and accuracy per epoch, training and
/// validation) as a PNG file; returns whether it was drawn.
pub fn plot_curves(path: &Path, history: &[EpochMetrics]) -> Result<bool> {
    if history.is_empty() {
        return Ok(false);
    }
    write_png(path, curves_png(history)?)
}

/// The learning curves as PNG bytes (None without a font).
pub fn curves_png(history: &[EpochMetrics]) -> Result<Option<Vec<u8>>> {
    let last = history.len() as f64 + 0.5;
    let max_loss = history
        .iter()
        .flat_map(|m| [m.loss, m.val_loss])
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        * 1.05
        + 1e-6;
    render_png((1000, 420), |root| {
        root.fill(&WHITE).map_err(err)?;
        let (left, right) = root.split_horizontally(500);
        let panels: [(&DrawingArea<_, _>, &str, f64, [fn(&EpochMetrics) -> f64; 2]); 2] = [
            (&left, "loss", max_loss, [|m| m.loss, |m| m.val_loss]),
            (&right, "accuracy", 1.0, [|m| m.train_acc, |m| m.val_acc]),
        ];
        for (area, name, top, [train, val]) in panels {
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{name} per epoch"), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(0.5f64..last, 0f64..top)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                // Epochs are whole numbers: leave the in-between ticks unlabelled.
                .x_label_formatter(&|x| {
                    if x.fract().abs() < 1e-9 {
                        format!("{x:.0}")
                    } else {
                        String::new()
                    }
                })
                .y_desc(name)
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(err)?;
            for (series, color, label) in [(train, BLUE, "train"), (val, RED, "validation")] {
                let points: Vec<(f64, f64)> = history
                    .iter()
                    .enumerate()
                    .map(|(i, m)| ((i + 1) as f64, series(m)))
                    .collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                    .map_err(err)?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(err)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)
    })
}

/// The confusion matrix as a PNG file; returns whether it was drawn.
pub fn plot_confusion(path: &Path, e: &Evaluation, classes: &[String]) -> Result<bool> {
    write_png(path, confusion_png(e, classes)?)
}

/// The confusion matrix as a PNG heat map with counts (None without a font).
pub fn confusion_png(e: &Evaluation, classes: &[String]) -> Result<Option<Vec<u8>>> {
    let k = classes.len();
    let cell = 52i32;
    let (left, top) = (110i32, 60i32);
    let w = (left + cell * k as i32 + 20) as u32;
    let h = (top + cell * k as i32 + 90) as u32;
    render_png((w, h), |root| {
        root.fill(&WHITE).map_err(err)?;
        let title = format!(
            "confusion matrix: accuracy {:.2}% of {} (rows true, columns predicted)",
            100.0 * e.accuracy,
            e.n
        );
        root.draw(&Text::new(title, (10, 15), ("sans-serif", 16)))
            .map_err(err)?;
        for (t, row) in e.confusion.iter().enumerate() {
            let total = row.iter().sum::<usize>().max(1) as f64;
            for (p, &count) in row.iter().enumerate() {
                let frac = count as f64 / total;
                let shade = (255.0 * (1.0 - frac)) as u8;
                let (x0, y0) = (left + p as i32 * cell, top + t as i32 * cell);
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell, y0 + cell)],
                    RGBColor(shade, shade, 255).filled(),
                ))
                .map_err(err)?;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell, y0 + cell)],
                    RGBColor(200, 200, 200),
                ))
                .map_err(err)?;
                let color = if frac > 0.5 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    count.to_string(),
                    (x0 + 6, y0 + cell / 2 - 7),
                    ("sans-serif", 14).into_font().color(&color),
                ))
                .map_err(err)?;
            }
        }
        for (i, c) in classes.iter().enumerate() {
            let y = top + i as i32 * cell + cell / 2 - 7;
            root.draw(&Text::new(c.clone(), (8, y), ("sans-serif", 14)))
                .map_err(err)?;
            let x = left + i as i32 * cell + 4;
            let short: String = c.chars().take(6).collect();
            root.draw(&Text::new(
                short,
                (x, top + k as i32 * cell + 8),
                ("sans-serif", 12),
            ))
            .map_err(err)?;
        }
        root.draw(&Text::new(
            "predicted class",
            (left, top + k as i32 * cell + 30),
            ("sans-serif", 14),
        ))
        .map_err(err)?;
        root.present().map_err(err)
    })
}
