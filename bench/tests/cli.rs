//! thaw-bench's command line as a user meets it, on any machine: `--device`
//! parsing, the error for `--device cuda` without a GPU, the one-line CPU
//! fallback of `--device auto`, and `--compare` pairing GPU rows of two
//! result files. Runs the built binary; nothing here is timed.
//!
//! On a machine with a usable GPU the no-GPU checks print that they were
//! skipped (they test the other branch).

use std::path::PathBuf;
use std::process::{Command, Output};

fn thaw_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_thaw-bench"))
        .args(args)
        .args([
            "--spec",
            concat!(env!("CARGO_MANIFEST_DIR"), "/workloads.json"),
        ])
        .output()
        .expect("thaw-bench runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn an_unknown_device_is_a_usage_error_listing_the_choices() {
    let out = thaw_bench(&["--device", "gpu", "--list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("[possible values: cpu, cuda, auto]"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn device_cpu_is_the_default_and_lists_cpu_rows() {
    let out = thaw_bench(&["--list", "--quick"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows = text(&out.stdout);
    assert!(rows.lines().next() == Some("peak.sgemm"), "{rows}");
    assert!(!rows.contains(".cuda-"), "{rows}");
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
}

#[test]
fn device_cuda_without_a_gpu_is_a_clear_error() {
    if engine::cuda::is_available() {
        skipped(format_args!(
            "this machine has a usable GPU; the no-GPU error cannot be seen here"
        ));
        return;
    }
    let out = thaw_bench(&["--device", "cuda", "--list"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("error: --device cuda: no usable GPU: "),
        "{err}"
    );
    assert!(err.contains("Run with --device cpu"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn device_auto_without_a_gpu_falls_back_to_the_cpu_in_one_line() {
    if engine::cuda::is_available() {
        skipped(format_args!("this machine has a usable GPU; auto picks it"));
        return;
    }
    let out = thaw_bench(&["--device", "auto", "--list", "--quick"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("device: cpu (auto: no usable GPU: "),
        "{err}"
    );
    assert!(!text(&out.stdout).contains(".cuda-"));
}

/// A result file in the --json format, with the given (name, median seconds) rows.
fn results_file(dir: &std::path::Path, engine: &str, rows: &[(&str, f64)]) -> PathBuf {
    let records: Vec<String> = rows
        .iter()
        .map(|(name, s)| {
            format!(
                r#"{{"name":"{name}","shape":"n=1","median_s":{s},"times_s":[{s}],"flops":1e9,"items":1,"unit":"img/s","skipped":null}}"#
            )
        })
        .collect();
    let json = format!(
        r#"{{"info":{{"engine":"{engine}","version":"v","mode":"quick","threads":16,"cpu":"cpu","load_before":[],"load_after":[],"date":"d"}},"records":[{}]}}"#,
        records.join(",")
    );
    let path = dir.join(format!("{engine}.json"));
    std::fs::write(&path, json).unwrap();
    path
}

#[test]
fn compare_pairs_cuda_rows_and_labels_half_precision() {
    let dir = std::env::temp_dir().join(format!("thaw-bench-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let thaw = results_file(
        &dir,
        "thaw",
        &[
            ("peak.sgemm.cuda-f32", 0.02),
            ("backbone.vgg16@32.cuda-f32", 0.1),
        ],
    );
    let torch = results_file(
        &dir,
        "pytorch",
        &[
            ("peak.sgemm.cuda-f32", 0.02),
            ("backbone.vgg16@32.cuda-f32", 0.2),
            ("backbone.vgg16@32.cuda-f16", 0.05),
            ("backbone.vgg16@32.cuda-bf16", 0.05),
        ],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_thaw-bench"))
        .arg("--compare")
        .args([&thaw, &torch])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let table = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let row = |p: &str| {
        table
            .lines()
            .find(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("no row {p} in\n{table}"))
            .to_string()
    };
    assert!(
        row("| backbone.vgg16@32.cuda-f32 |").ends_with("| 2.00x |"),
        "{table}"
    );
    assert!(
        row("| peak.sgemm.cuda-f32 |").ends_with("| 1.00x |"),
        "{table}"
    );
    assert!(
        row("| backbone.vgg16@32.cuda-f16 |").ends_with("| 0.50x † |"),
        "{table}"
    );
    assert!(
        row("| backbone.vgg16@32.cuda-bf16 |").contains("(f32 above)"),
        "{table}"
    );
    assert!(table.contains("unequal precision"), "{table}");
}

/// Says that a test could not run its check here, past the harness's output
/// capture (see `tests::skipped`; this crate does not depend on it).
fn skipped(why: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}
