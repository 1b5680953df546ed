//! `NAME.predictions.csv` beside the model file: the test split's
//! predictions, one row per test image, from the very probabilities the
//! test accuracy is computed from (with `--tta`, the averaged ones):
//!
//! ```text
//! index,file,true_class,predicted_class,p_airplane,p_automobile,...
//! 0,,cat,dog,0.0123,0.0004,...
//! ```
//!
//! - `index`: the image's row in the test split, in the order thaw reads it
//!   (CIFAR-10 batches: file order; image folders: class by class, files
//!   sorted by name).
//! - `file`: the image file, relative to `--data` (image folders); empty for
//!   CIFAR-10 batches.
//! - `true_class`, `predicted_class`: class names; the prediction is the
//!   class of highest probability (the first one on a tie).
//! - `p_<class>`: the probability of each class, in label order, printed as
//!   the shortest decimal that reads back as the same f32.
//!
//! Fields holding a comma, a quote or a line break are quoted as RFC 4180
//! says. Written atomically, after the test score.

use super::fit::argmax_rows;
use crate::error::Result;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The test split's predictions, as [`write`] takes them.
pub struct Predictions<'a> {
    /// Probabilities `[n, classes]`, row-major.
    pub probs: &'a [f32],
    /// The true label of each image.
    pub labels: &'a [u8],
    /// Class names, in label order.
    pub classes: &'a [String],
    /// The file of each image (empty when the dataset has none).
    pub files: &'a [PathBuf],
    /// The dataset folder the file names are made relative to.
    pub data_root: Option<&'a Path>,
}

/// `field` as a CSV field: quoted (quotes doubled) when it holds a comma, a
/// quote or a line break.
pub fn csv_field(field: &str) -> String {
    match field.contains([',', '"', '\n', '\r']) {
        true => format!("\"{}\"", field.replace('"', "\"\"")),
        false => field.to_string(),
    }
}

/// The CSV text of `p` (see the module docs).
pub fn to_csv(p: &Predictions) -> String {
    let k = p.classes.len();
    let mut s = String::from("index,file,true_class,predicted_class");
    for c in p.classes {
        s.push(',');
        s.push_str(&csv_field(&format!("p_{c}")));
    }
    s.push('\n');
    let predicted = argmax_rows(p.probs, k);
    for (i, (row, &label)) in p.probs.chunks_exact(k).zip(p.labels).enumerate() {
        let file = p.files.get(i).map(|f| {
            let rel = p.data_root.and_then(|r| f.strip_prefix(r).ok());
            rel.unwrap_or(f).to_string_lossy().into_owned()
        });
        let _ = write!(
            s,
            "{i},{},{},{}",
            csv_field(file.as_deref().unwrap_or("")),
            csv_field(&p.classes[label as usize]),
            csv_field(&p.classes[predicted[i]])
        );
        for v in row {
            let _ = write!(s, ",{v}");
        }
        s.push('\n');
    }
    s
}

/// Writes the predictions to `path`, atomically.
pub fn write(path: &Path, p: &Predictions) -> Result<()> {
    crate::npy::write_atomically(path, to_csv(p).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_name_the_classes_and_quote_what_needs_it() {
        let classes = vec!["a,b".to_string(), "say \"c\"".to_string()];
        let files = vec![PathBuf::from("/d/test/x.png"), PathBuf::from("/e/y.png")];
        let csv = to_csv(&Predictions {
            probs: &[0.25, 0.75, 0.5, 0.5],
            labels: &[0, 1],
            classes: &classes,
            files: &files,
            data_root: Some(Path::new("/d")),
        });
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines,
            [
                "index,file,true_class,predicted_class,\"p_a,b\",\"p_say \"\"c\"\"\"",
                "0,test/x.png,\"a,b\",\"say \"\"c\"\"\",0.25,0.75",
                // A tie goes to the first class.
                "1,/e/y.png,\"say \"\"c\"\"\",\"a,b\",0.5,0.5",
            ]
        );
    }
}
