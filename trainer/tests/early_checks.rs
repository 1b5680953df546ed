//! `train` checks what can be checked before it reads the weights: the
//! real binary on small inputs (MobileNet alpha 0.25, seeded, 32 px; a few
//! random CIFAR-10 images or 32x32 PNGs).
//!
//! Most cases give `--weights` a file that does not exist: a run that got
//! as far as reading the weights would fail on it, so the expected message
//! proves the check came first.

mod common;

use common::{
    assert_refused, png_folder, random_cifar, small_weights, train_small as train, TempDir,
};
use std::path::Path;

#[test]
fn bad_flags_and_data_are_refused_before_the_weights_are_read() {
    let dir = TempDir::new("early-checks");
    let d = dir.path();
    let missing = d.join("no-weights.safetensors");
    let out = d.join("m.safetensors");
    let cache = d.join("cache");
    let data = random_cifar(d, 4, 4);
    // A block MobileNet does not have.
    assert_refused(
        train(&data, &missing, &out, &["--fine-tune", "block99"], &cache),
        &["--fine-tune block99", "conv_dw_13"],
    );
    // One class.
    let one = png_folder(d, "one", &["train", "test"], &["cat"]);
    assert_refused(
        train(&one, &missing, &out, &[], &cache),
        &["at least two classes", "[cat]"],
    );
    // --out a folder, or where no file can be made (even root cannot
    // create files in /proc).
    assert_refused(train(&data, &missing, d, &[], &cache), &["is a folder"]);
    let proc_out = Path::new("/proc/thaw-test.safetensors");
    assert_refused(
        train(&data, &missing, proc_out, &[], &cache),
        &["no file can be created in /proc"],
    );
    assert!(!out.exists());
}

/// A feature cache that cannot be written (here one under /proc, which even
/// root cannot create) costs the cache, not the run.
#[test]
fn an_unwritable_cache_is_skipped_with_a_warning() {
    let dir = TempDir::new("cache-unwritable");
    let d = dir.path();
    let (w, data) = (small_weights(d, 3), random_cifar(d, 8, 8));
    let out = d.join("m.safetensors");
    let (code, err) = train(&data, &w, &out, &[], Path::new("/proc/thaw-test-cache"));
    println!("{err}");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("is not writable") && err.contains("running without it"),
        "{err}"
    );
    assert!(out.is_file());
}
