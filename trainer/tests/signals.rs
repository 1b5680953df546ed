//! Signals and faults during feature extraction leave no partial file and
//! no false claim: the real binary, real signals (`kill -INT`, `kill -TERM`)
//! and a real write limit (`ulimit -f`), on small inputs.
//!
//! MobileNet alpha 0.25 with seeded weights at 32 px; a CIFAR-10 binary
//! folder of 5 x 64 seeded random training images and 32 test images. The
//! test hook `THAW_TEST_CACHE_WRITE_PAUSE_MS` (see
//! `trainer::train::feature_cache::pause_for_tests`) makes each batch of 32
//! features written take that long, so a signal lands mid-extraction.
//! Linux only (`/proc`, `kill`, `sh`).

#![cfg(target_os = "linux")]

mod common;

use common::{entries, random_cifar, small_weights, temp_files, TempDir, SMALL_MODEL};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Starts `trainer ARGS` with the cache in `cache` and the pause hook at
/// `pause_ms`; stdout and stderr piped.
fn start(args: &[&str], cache: &Path, pause_ms: u64) -> Child {
    let pause = pause_ms.to_string();
    start_with(args, cache, &[("THAW_TEST_CACHE_WRITE_PAUSE_MS", &pause)])
}

/// Starts `trainer ARGS` with the cache in `cache` and the variables `env`;
/// stdout and stderr piped.
fn start_with(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .env("THAW_CACHE_DIR", cache)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("trainer starts")
}

/// Waits (at most 60 s) until a temporary file appears in `dir` while
/// `child` runs: it is writing features there.
fn wait_for_temp_file(child: &mut Child, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    // The hidden probe that checks a folder is writable (before the signal
    // handler is installed) is not the write this waits for.
    let written = |dir: &Path| {
        temp_files(dir)
            .iter()
            .any(|n| !n.starts_with(".write-probe"))
    };
    while !written(dir) {
        if let Some(s) = child.try_wait().unwrap() {
            panic!("the run ended ({s}) before writing features");
        }
        assert!(Instant::now() < deadline, "no features written after 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

/// Waits for `child` (at most `limit`); returns its status, the seconds it
/// took and its stderr.
fn finish(child: Child, limit: Duration) -> (ExitStatus, f64, String) {
    let t = Instant::now();
    let id = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(limit);
        // Still running past the limit: kill it so the test fails, not hangs.
        let _ = Command::new("kill")
            .args(["-KILL", &id.to_string()])
            .status();
    });
    let o = child.wait_with_output().unwrap();
    drop(watchdog);
    let secs = t.elapsed().as_secs_f64();
    (
        o.status,
        secs,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn train_args<'a>(w: &'a str, data: &'a str, out: &'a str) -> Vec<&'a str> {
    let mut v = vec!["train"];
    v.extend(SMALL_MODEL);
    v.extend(["--weights", w, "--data", data, "--epochs", "1"]);
    v.extend(["--extract-batch-size", "32", "--out", out]);
    v
}

/// The pid of a process that has exited.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// Creates `dir/name` last modified `age` ago.
fn old_file(dir: &Path, name: &str, age: Duration) {
    let f = std::fs::File::create(dir.join(name)).unwrap();
    f.set_modified(std::time::SystemTime::now() - age).unwrap();
}

#[test]
fn sigint_or_sigterm_during_training_s_extraction_stops_within_a_batch_and_says_so() {
    let dir = TempDir::new("signal-train");
    let d = dir.path();
    let (w, data) = (small_weights(d, 3), random_cifar(d, 64, 32));
    let (w, data) = (w.to_str().unwrap(), data.to_str().unwrap());
    for sig in ["-INT", "-TERM"] {
        let cache = d.join(format!("cache{sig}"));
        let features = cache.join("features");
        // Temporary files of killed runs: one old of a dead process (deleted),
        // one fresh of a dead process and one old of a live one (kept).
        std::fs::create_dir_all(&features).unwrap();
        let hour = Duration::from_secs(3600);
        let stale = format!(".x-train.npy.tmp-{}-0-00", dead_pid());
        let fresh = format!(".y-train.npy.tmp-{}-0-00", dead_pid());
        let live = format!(".z-train.npy.tmp-{}-0-00", std::process::id());
        old_file(&features, &stale, hour);
        old_file(&features, &fresh, Duration::ZERO);
        old_file(&features, &live, hour);
        let before = entries(&features);

        let out = d.join(format!("model{sig}.safetensors"));
        let mut child = start(&train_args(w, data, out.to_str().unwrap()), &cache, 300);
        // Wait for the run's own temporary file (the three planted ones are there already).
        let deadline = Instant::now() + Duration::from_secs(60);
        while entries(&features) == before {
            assert!(child.try_wait().unwrap().is_none(), "the run ended early");
            assert!(Instant::now() < deadline, "no features written after 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        signal(&child, sig);
        let (status, secs, err) = finish(child, Duration::from_secs(20));
        println!("train, kill {sig} during extraction: {status} after {secs:.2} s\n{err}");
        // 320 training images take 10 batches of 0.3 s: stopping at once
        // means well before the extraction would have ended.
        assert_eq!(status.code(), Some(130), "{err}");
        assert!(secs < 2.0, "took {secs:.2} s to stop:\n{err}");
        assert!(
            err.contains("interrupted: stopped during feature extraction")
                && err.contains("no model was written")
                && err.contains(&format!("{} does not exist", out.display())),
            "{err}"
        );
        assert!(!err.contains("best model so far"), "{err}");
        assert!(!out.exists(), "a model file was written");
        assert_eq!(
            temp_files(&features),
            [fresh.clone(), live.clone()],
            "temporary files in the cache"
        );
        assert!(
            entries(&features).iter().all(|n| n.starts_with('.')),
            "an incomplete cache entry was kept: {:?}",
            entries(&features)
        );
        assert_eq!(temp_files(d), Vec::<String>::new(), "beside --out");
    }
}

#[test]
fn a_second_signal_exits_at_once_and_deletes_the_temporary_files() {
    let dir = TempDir::new("signal-twice");
    let d = dir.path();
    let (w, data) = (small_weights(d, 3), random_cifar(d, 64, 32));
    let (w, data) = (w.to_str().unwrap(), data.to_str().unwrap());
    let cache = d.join("cache");
    let out = d.join("model.safetensors");
    // Each batch pauses 5 s: the first signal waits for the batch, the
    // second must not.
    let mut child = start(&train_args(w, data, out.to_str().unwrap()), &cache, 5000);
    wait_for_temp_file(&mut child, &cache.join("features"));
    signal(&child, "-INT");
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, "-TERM");
    let (status, secs, err) = finish(child, Duration::from_secs(20));
    println!("train, two signals: {status} after {secs:.2} s\n{err}");
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(secs < 2.0, "took {secs:.2} s to exit:\n{err}");
    assert!(err.contains("second interrupt: exiting now"), "{err}");
    assert_eq!(temp_files(&cache.join("features")), Vec::<String>::new());
    assert!(!out.exists());
}

#[test]
fn extract_stops_on_sigterm_and_leaves_nothing() {
    let dir = TempDir::new("signal-extract");
    let d = dir.path();
    let (w, data) = (small_weights(d, 3), random_cifar(d, 64, 32));
    let run_dir = d.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let out = run_dir.join("f.npy");
    let mut args = vec!["extract"];
    args.extend(SMALL_MODEL);
    args.extend(["--weights", w.to_str().unwrap()]);
    args.extend(["--data", data.to_str().unwrap(), "--pooling", "avg"]);
    args.extend(["--batch-size", "32", "--out", out.to_str().unwrap()]);
    let mut child = start(&args, &d.join("cache"), 300);
    wait_for_temp_file(&mut child, &run_dir);
    signal(&child, "-TERM");
    let (status, secs, err) = finish(child, Duration::from_secs(20));
    println!("extract, kill -TERM: {status} after {secs:.2} s\n{err}");
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(secs < 2.0, "took {secs:.2} s to stop:\n{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(
        entries(&run_dir),
        Vec::<String>::new(),
        "files left by extract"
    );
}

/// A full disk, as a write limit: `ulimit -f 2` (at most 1-2 KB per file,
/// SIGXFSZ ignored so a write past it fails with EFBIG, as on a full disk).
/// The 4 KB of features fail when the writer flushes them at the end.
#[test]
fn a_failed_write_leaves_no_partial_file() {
    let dir = TempDir::new("disk-full");
    let d = dir.path();
    let (w, data) = (small_weights(d, 3), random_cifar(d, 4, 4));
    let run_dir = d.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let out = run_dir.join("f.npy");
    let o = Command::new("sh")
        .args(["-c", "trap '' XFSZ; ulimit -f 2; exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_trainer"))
        .arg("extract")
        .args(SMALL_MODEL)
        .arg("--weights")
        .arg(&w)
        .arg("--data")
        .arg(data.join("test_batch.bin"))
        .args(["--pooling", "avg", "--out"])
        .arg(&out)
        .env("THAW_CACHE_DIR", d.join("cache"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    println!("extract under ulimit -f 2: {}\n{err}", o.status);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("File too large"), "{err}");
    assert_eq!(
        entries(&run_dir),
        Vec::<String>::new(),
        "files left by extract"
    );
}

/// `--out` naming a folder is refused before any work (it was left with a
/// temporary file beside it).
#[test]
fn extract_to_a_folder_is_refused_before_any_work() {
    let dir = TempDir::new("out-folder");
    let d = dir.path();
    let (w, data) = (small_weights(d, 3), random_cifar(d, 4, 4));
    let out = d.join("existing");
    std::fs::create_dir_all(&out).unwrap();
    let before = entries(d);
    let mut args = vec!["extract"];
    args.extend(SMALL_MODEL);
    args.extend(["--weights", w.to_str().unwrap()]);
    let batch = data.join("test_batch.bin");
    args.extend(["--data", batch.to_str().unwrap(), "--pooling", "avg"]);
    args.extend(["--out", out.to_str().unwrap()]);
    let (code, _, err) = common::run_trainer(&args, &d.join("cache"));
    println!("{err}");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is a folder"), "{err}");
    assert_eq!(entries(d), before);
    assert_eq!(entries(&out), Vec::<String>::new());
}

/// The labels file failing at the end (here its path is a folder, so its
/// rename fails) leaves no features file without its labels.
#[test]
fn extract_leaves_no_features_without_their_labels() {
    let dir = TempDir::new("labels-fail");
    let d = dir.path();
    let (w, data) = (small_weights(d, 3), random_cifar(d, 4, 4));
    let run_dir = d.join("run");
    std::fs::create_dir_all(run_dir.join("f.labels.npy")).unwrap();
    let out = run_dir.join("f.npy");
    let mut args = vec!["extract"];
    args.extend(SMALL_MODEL);
    args.extend(["--weights", w.to_str().unwrap()]);
    let batch = data.join("test_batch.bin");
    args.extend(["--data", batch.to_str().unwrap(), "--pooling", "avg"]);
    args.extend(["--out", out.to_str().unwrap()]);
    let (code, _, err) = common::run_trainer(&args, &d.join("cache"));
    println!("{err}");
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(entries(&run_dir), ["f.labels.npy"], "{err}");
}

/// SIGTERM while the model file is being written (the test hook
/// `THAW_TEST_SAVE_PAUSE_MS` holds each save between its temporary file and
/// the rename): the signal only asks the run to stop, so the save completes,
/// the model file is whole and no temporary file stays beside it.
#[test]
fn sigterm_during_a_model_save_leaves_the_whole_model_and_no_temporary_file() {
    let dir = TempDir::new("signal-save");
    let d = dir.path();
    let (w, data) = (small_weights(d, 3), random_cifar(d, 64, 32));
    let run_dir = d.join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let out = run_dir.join("m.safetensors");
    let args = train_args(
        w.to_str().unwrap(),
        data.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let mut child = start_with(
        &args,
        &d.join("cache"),
        &[("THAW_TEST_SAVE_PAUSE_MS", "2000")],
    );
    wait_for_temp_file(&mut child, &run_dir);
    signal(&child, "-TERM");
    let (status, secs, err) = finish(child, Duration::from_secs(60));
    println!("train, kill -TERM during the save: {status} after {secs:.2} s\n{err}");
    assert!(
        status.code().is_some(),
        "the run was killed by the signal: {status}\n{err}"
    );
    assert_eq!(temp_files(&run_dir), Vec::<String>::new(), "{err}");
    let (tensors, meta) = weights::load_safetensors(&out)
        .unwrap_or_else(|e| panic!("the model file is not whole: {e}\n{err}"));
    assert!(!tensors.is_empty() && !meta.is_empty());
}
