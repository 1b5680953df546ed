//! Helpers shared by the trainer's integration tests: temporary folders
//! that delete themselves, the real CIFAR-10 subset, running the binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh folder under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempDir {
    /// Creates `$TMPDIR/thaw-test-<tag>-<pid>-<k>`.
    pub fn new(tag: &str) -> TempDir {
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("thaw-test-{tag}-{}-{k}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Names of the entries of `dir`, sorted (hidden ones included).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The repository root (the trainer crate's parent folder).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The shared archive of real CIFAR-10 JPEGs, if this checkout has it.
pub fn archive() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/cifar10-jpeg.tar.xz");
    p.is_file().then_some(p)
}

/// Unpacks 30 training and 10 test images per class into `dir`; returns the
/// image folder (`train/` and `test/`, one subfolder per class).
pub fn unpack_subset(archive: &Path, dir: &Path) -> PathBuf {
    let status = Command::new("tar")
        .arg("-xJf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .args([
            "--wildcards",
            "cifar10-jpeg/train/*/00[0-2][0-9].jpg",
            "cifar10-jpeg/test/*/000[0-9].jpg",
        ])
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar failed to unpack the subset");
    dir.join("cifar10-jpeg")
}

/// Runs the trainer binary; returns (stdout, stderr), failing with both on a non-zero exit.
pub fn trainer(args: &[&str], cache: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .env("THAW_CACHE_DIR", cache)
        .output()
        .expect("trainer binary runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "trainer {args:?} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// The `accuracy: 0.1234 (12 of 100 images)` line: (accuracy text, correct, n).
pub fn accuracy_line(text: &str) -> (String, usize, usize) {
    let line = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once("accuracy: ")
                .filter(|(pre, _)| pre.is_empty() || *pre == "test ")
                .map(|(_, rest)| rest.to_string())
        })
        .unwrap_or_else(|| panic!("no accuracy line in:\n{text}"));
    let mut parts = line.split_whitespace();
    let acc = parts.next().unwrap().to_string();
    let correct = parts
        .next()
        .unwrap()
        .trim_start_matches('(')
        .parse()
        .unwrap();
    let n = parts.nth(1).unwrap().parse().unwrap();
    (acc, correct, n)
}

/// Says that a test could not run (part of) its check on this machine and
/// why. Written straight to the process's stderr, past the test harness's
/// output capture, so `cargo test` (and CI's log) shows it even though the
/// test passes; `println!` would be swallowed.
pub fn skipped(why: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// MobileNet alpha 0.25's seeded weights (no top, seed `seed`) saved in
/// `dir` as `mobilenet-<seed>.safetensors`: the smallest backbone.
pub fn small_weights(dir: &Path, seed: u64) -> PathBuf {
    let options = models::ModelOptions {
        alpha: Some(0.25),
        ..models::ModelOptions::default()
    };
    let backbone = models::build("mobilenet", &options).unwrap();
    let tensors = weights::seeded::generate(&backbone.weight_spec(), seed);
    let path = dir.join(format!("mobilenet-{seed}.safetensors"));
    weights::save_safetensors(&path, &tensors, &Default::default()).unwrap();
    path
}

/// The flags that make a run of the smallest backbone on the CPU at 32 px.
pub const SMALL_MODEL: &[&str] = &[
    "--model",
    "mobilenet",
    "--alpha",
    "0.25",
    "--device",
    "cpu",
    "--image-size",
    "32",
];

/// A CIFAR-10 binary folder in `dir/cifar`: data_batch_1..5.bin of
/// `per_batch` images each and test_batch.bin of `test` images, pixels and
/// labels (0..9) from a fixed LCG.
pub fn random_cifar(dir: &Path, per_batch: usize, test: usize) -> PathBuf {
    let root = dir.join("cifar");
    std::fs::create_dir_all(&root).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u8
    };
    let names = (1..=5).map(|i| (format!("data_batch_{i}.bin"), per_batch));
    for (name, n) in names.chain([("test_batch.bin".to_string(), test)]) {
        let mut bytes = Vec::with_capacity(n * 3073);
        for _ in 0..n {
            bytes.push(next() % 10);
            bytes.extend((0..3072).map(|_| next()));
        }
        std::fs::write(root.join(name), bytes).unwrap();
    }
    root
}

/// Entries of `dir` that are temporary files (`.NAME.tmp-PID-...`,
/// `.NAME.partial-PID-...`) or anything else with `tmp` or `partial` in its
/// name; none when `dir` does not exist.
pub fn temp_files(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    entries(dir)
        .into_iter()
        .filter(|n| n.contains("tmp") || n.contains("partial"))
        .collect()
}

/// Runs the trainer binary with `args` and the cache in `cache`, whatever
/// its exit status: (status code, stdout, stderr).
pub fn run_trainer(args: &[&str], cache: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .env("THAW_CACHE_DIR", cache)
        .output()
        .expect("trainer binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A model file of the small backbone (seeded) with a linear head over
/// CIFAR-10's classes, recording `image_size`.
pub fn model_file_with_size(dir: &Path, image_size: usize) -> PathBuf {
    let backbone = trainer::train::model_file::build_backbone("mobilenet", Some(0.25)).unwrap();
    backbone
        .load(weights::seeded::generate(&backbone.weight_spec(), 3))
        .unwrap();
    let head = trainer::train::Head::new(trainer::train::HeadKind::Linear, 256, 10, 0).unwrap();
    let meta = trainer::train::ModelMeta {
        model: "mobilenet".into(),
        alpha: Some(0.25),
        classes: trainer::data::CIFAR10_CLASSES.map(String::from).to_vec(),
        image_size,
        input_side: 32,
        crop_to_aspect_ratio: false,
        head: trainer::train::HeadKind::Linear,
        tta: false,
        standardize: false,
        val_accuracy: Some(0.5),
    };
    let path = dir.join(format!("model-{image_size}.safetensors"));
    trainer::train::save_model(&path, backbone.as_ref(), &head, &meta).unwrap();
    path
}

/// A 32x32 PNG at `path` (whatever its extension).
pub fn png(path: &Path) {
    image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 * 8, y as u8 * 8, 99]))
        .save_with_format(path, image::ImageFormat::Png)
        .unwrap();
}

/// Asserts that a run (from [`run_trainer`]) was refused with status 1
/// and a message holding every one of `words`; returns the message.
pub fn refused(r: (Option<i32>, String, String), words: &[&str]) -> String {
    let (code, _, err) = r;
    println!("{}", err.trim());
    assert_eq!(code, Some(1), "not refused with status 1:\n{err}");
    for w in words {
        assert!(err.contains(w), "the message lacks {w:?}:\n{err}");
    }
    err
}

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An image folder in `dir/name` holding `split/class/k.png` (32x32 PNGs)
/// for each of `splits` (empty: the class folders at the top) and `classes`.
pub fn png_folder(dir: &Path, name: &str, splits: &[&str], classes: &[&str]) -> PathBuf {
    let root = dir.join(name);
    let tops: Vec<PathBuf> = match splits {
        [] => vec![root.clone()],
        s => s.iter().map(|s| root.join(s)).collect(),
    };
    for top in tops {
        for (c, class) in classes.iter().enumerate() {
            let folder = top.join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for k in 0..3u8 {
                let img = image::RgbImage::from_fn(32, 32, |x, y| {
                    image::Rgb([x as u8 * 8, y as u8 * 8, k * 40 + c as u8 * 100])
                });
                img.save(folder.join(format!("{k}.png"))).unwrap();
            }
        }
    }
    root
}

/// `train` (1 epoch) of the small model on `data` with `weights`, to `out`, plus `extra`.
pub fn train_small(
    data: &Path,
    weights: &Path,
    out: &Path,
    extra: &[&str],
    cache: &Path,
) -> (Option<i32>, String) {
    let mut args = vec!["train"];
    args.extend(SMALL_MODEL);
    let (d, w, o) = (
        data.to_str().unwrap(),
        weights.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    args.extend(["--data", d, "--weights", w, "--out", o, "--epochs", "1"]);
    args.extend(extra);
    let (code, _, err) = run_trainer(&args, cache);
    (code, err)
}

/// Asserts exit status 1 and every one of `words` in the message.
pub fn assert_refused(r: (Option<i32>, String), words: &[&str]) {
    let (code, err) = r;
    println!("{}", err.trim());
    assert_eq!(code, Some(1), "not refused:\n{err}");
    for w in words {
        assert!(err.contains(w), "the message lacks {w:?}:\n{err}");
    }
}

/// The fields of one CSV line (RFC 4180 quoting; no line breaks in fields),
/// parsed here, apart from the trainer's own code, for the tests that
/// recompute a run's numbers from its files.
#[allow(dead_code)]
pub fn csv_fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}
