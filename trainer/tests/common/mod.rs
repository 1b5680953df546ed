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
