//! Two `trainer train` processes on one feature cache, one killed (SIGKILL)
//! while it writes: the survivor's cache files must equal, bit for bit,
//! those of a run alone, and a third run must reuse them.
//!
//! Small and self-contained: MobileNet alpha 0.25 with seeded weights at
//! 32 px, and a CIFAR-10 binary folder of 2,760 seeded random images (2,560
//! train: 2.6 MB of features; 200 test) written by the test. The test hook
//! `THAW_TEST_CACHE_WRITE_PAUSE_MS` (see `trainer::train::feature_cache`)
//! makes both racers pause 60 ms after each batch of 32 rows they write, so
//! their writes overlap and the kill lands mid-write. Linux only: it finds
//! the files a run has open in `/proc/PID/fd`.

mod common;

use common::{entries, random_cifar, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn seeded_weights(dir: &Path) -> PathBuf {
    let options = models::ModelOptions {
        alpha: Some(0.25),
        ..models::ModelOptions::default()
    };
    let backbone = models::build("mobilenet", &options).unwrap();
    let tensors = weights::seeded::generate(&backbone.weight_spec(), 3);
    let path = dir.join("w.safetensors");
    weights::save_safetensors(&path, &tensors, &Default::default()).unwrap();
    path
}

/// `trainer train` on the small data with `cache`, its model in `out`;
/// `pause_ms` sets the test hook.
fn train(weights: &Path, data: &Path, cache: &Path, out: &Path, pause_ms: Option<u64>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trainer"));
    c.args([
        "train",
        "--model",
        "mobilenet",
        "--alpha",
        "0.25",
        "--weights",
    ])
    .arg(weights)
    .arg("--data")
    .arg(data)
    .args(["--image-size", "32", "--epochs", "1", "--device", "cpu"])
    .args(["--extract-batch-size", "32", "--out"])
    .arg(out)
    .env("THAW_CACHE_DIR", cache)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(ms) = pause_ms {
        c.env("THAW_TEST_CACHE_WRITE_PAUSE_MS", ms.to_string());
    }
    c
}

fn succeeded(o: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{what} failed ({}):\n{err}", o.status);
    err
}

/// The .npy entries of a cache's features folder, with their bytes.
fn cached(cache: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = cache.join("features");
    entries(&dir)
        .into_iter()
        .filter(|n| n.ends_with(".npy"))
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

/// The files under the cache's features folder that process `pid` has open.
fn open_in_cache(cache: &Path, pid: u32) -> Vec<PathBuf> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let features = cache.join("features");
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|p| p.starts_with(&features))
        .collect()
}

/// Waits (at most 2 minutes) until `until()` holds while `child` runs.
fn wait_for(child: &mut Child, what: &str, until: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !until() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "a run ended before {what}"
        );
        assert!(Instant::now() < deadline, "a run never {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_run_killed_mid_write_leaves_the_other_runs_cache_whole() {
    let dir = TempDir::new("cache-race");
    let d = dir.path();
    let (weights, data) = (seeded_weights(d), random_cifar(d, 512, 200));

    // Alone.
    let solo_cache = d.join("solo-cache");
    let o = train(
        &weights,
        &data,
        &solo_cache,
        &d.join("solo.safetensors"),
        None,
    )
    .output()
    .unwrap();
    succeeded(&o, "the solo run");
    let solo = cached(&solo_cache);
    assert_eq!(solo.len(), 2, "train and test features: {solo:?}");

    // Two runs on one cache. The second starts once the first has written
    // a megabyte of its training features (its buffered writer flushes by
    // the megabyte), and is killed while it writes its own.
    let cache = d.join("cache");
    let mut survivor = train(&weights, &data, &cache, &d.join("a.safetensors"), Some(60))
        .spawn()
        .unwrap();
    let id = survivor.id();
    wait_for(&mut survivor, "wrote a megabyte", || {
        open_in_cache(&cache, id)
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() >= 1 << 20))
    });
    let mut victim = train(&weights, &data, &cache, &d.join("b.safetensors"), Some(60))
        .spawn()
        .unwrap();
    let id = victim.id();
    wait_for(&mut victim, "opened a cache file", || {
        !open_in_cache(&cache, id).is_empty()
    });
    std::thread::sleep(Duration::from_millis(300)); // a few batches into it
    assert!(
        survivor.try_wait().unwrap().is_none(),
        "the first run finished before the second wrote: no race was tested"
    );
    victim.kill().unwrap(); // SIGKILL: no clean-up runs
    let killed = victim.wait().unwrap();
    assert!(!killed.success(), "the second run finished before the kill");
    let o = survivor.wait_with_output().unwrap();
    let err = succeeded(&o, "the surviving run");
    let raced = cached(&cache);
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&raced), names(&solo), "{err}");
    for ((name, got), (_, want)) in raced.iter().zip(&solo) {
        assert!(
            got == want,
            "{name}: the survivor's cache file differs from the solo run's \
             ({} vs {} bytes)\n{err}",
            got.len(),
            want.len()
        );
    }

    // A later run reuses both, unchanged.
    let o = train(&weights, &data, &cache, &d.join("c.safetensors"), None)
        .output()
        .unwrap();
    let err = succeeded(&o, "the third run");
    assert_eq!(
        err.matches("reused from the feature cache").count(),
        2,
        "{err}"
    );
    assert!(cached(&cache) == solo);
}
