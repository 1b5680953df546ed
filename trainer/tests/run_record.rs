//! `NAME.run.json` and `NAME.predictions.csv`, the files `train` leaves for
//! the report: the real binary on small inputs (MobileNet alpha 0.25 with
//! seeded weights at 32 px; a CIFAR-10 binary folder of seeded random
//! images, or a folder of PNGs).
//!
//! The test accuracy, its correct count and the per-class figures are
//! recomputed here from the CSV alone (its own parser, the argmax of the
//! probability columns against the true class) and must equal both the
//! run record's and the printed summary's. Editing one prediction must make
//! that check fail: the test does it and expects the disagreement.

mod common;

use common::{png_folder, random_cifar, run_trainer, s, small_weights, TempDir, SMALL_MODEL};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the predictions file says, recomputed: per class (name, correct,
/// images), in the order of the probability columns; and the file column.
struct Recount {
    classes: Vec<String>,
    correct: Vec<usize>,
    images: Vec<usize>,
    files: Vec<String>,
}

/// Recounts `csv`: checks the header, that each row's probabilities are
/// finite and sum to 1 (within 1e-5), and that its predicted class is
/// their argmax (the first on a tie).
fn recount(csv: &str) -> Result<Recount, String> {
    let mut lines = csv.lines();
    let header = common::csv_fields(lines.next().ok_or("empty file")?);
    if header[..4] != ["index", "file", "true_class", "predicted_class"] {
        return Err(format!("header {header:?}"));
    }
    let classes: Vec<String> = header[4..]
        .iter()
        .map(|h| h.strip_prefix("p_").map(String::from).ok_or(h.clone()))
        .collect::<Result<_, _>>()?;
    let k = classes.len();
    let (mut correct, mut images, mut files) = (vec![0; k], vec![0; k], Vec::new());
    for (i, line) in lines.enumerate() {
        let f = common::csv_fields(line);
        if f.len() != 4 + k || f[0] != i.to_string() {
            return Err(format!("row {i}: {line}"));
        }
        let p: Vec<f64> = f[4..].iter().map(|v| v.parse().unwrap()).collect();
        let sum: f64 = p.iter().sum();
        if !p.iter().all(|v| v.is_finite()) || (sum - 1.0).abs() > 1e-5 {
            return Err(format!("row {i}: probabilities {p:?} (sum {sum})"));
        }
        let argmax = (0..k).fold(0, |b, j| if p[j] > p[b] { j } else { b });
        if classes[argmax] != f[3] {
            return Err(format!("row {i}: predicted {} but argmax {argmax}", f[3]));
        }
        let t = classes
            .iter()
            .position(|c| *c == f[2])
            .ok_or(f[2].clone())?;
        images[t] += 1;
        correct[t] += usize::from(argmax == t);
        files.push(f[1].clone());
    }
    Ok(Recount {
        classes,
        correct,
        images,
        files,
    })
}

/// The recount of `csv` against the run record and the printed summary:
/// Err names the first disagreement.
fn agrees(csv: &str, record: &Value, summary: &str) -> Result<Recount, String> {
    let r = recount(csv)?;
    let (correct, n) = (
        r.correct.iter().sum::<usize>(),
        r.images.iter().sum::<usize>(),
    );
    let acc = correct as f64 / n as f64;
    let test = &record["accuracy"]["test"];
    let claimed = (
        test["accuracy"].as_f64(),
        test["correct"].as_u64(),
        test["images"].as_u64(),
    );
    if claimed != (Some(acc), Some(correct as u64), Some(n as u64)) {
        return Err(format!(
            "run.json says {claimed:?}; the CSV gives {acc} ({correct} of {n})"
        ));
    }
    let line = format!("accuracy: {acc:.4} ({correct} of {n} images)");
    if !summary.contains(&line) {
        return Err(format!("the summary lacks {line:?}"));
    }
    let per_class = test["per_class"].as_array().ok_or("no per_class")?;
    for (k, c) in r.classes.iter().enumerate() {
        // A class without test images has no accuracy: null, and NaN printed.
        let a = (r.images[k] > 0).then(|| r.correct[k] as f64 / r.images[k] as f64);
        let rec = &per_class[k];
        let claimed = (
            rec["class"].as_str(),
            rec["correct"].as_u64(),
            rec["images"].as_u64(),
        );
        let counted = (
            Some(c.as_str()),
            Some(r.correct[k] as u64),
            Some(r.images[k] as u64),
        );
        if claimed != counted || rec["accuracy"].as_f64() != a {
            return Err(format!("class {c}: run.json {rec}; the CSV {a:?}"));
        }
        let text = format!("{:.4}", a.unwrap_or(f64::NAN));
        let printed = |l: &str| l.trim().strip_prefix(c.as_str()).map(str::trim) == Some(&text);
        if !summary.lines().any(printed) {
            return Err(format!("the summary lacks class {c} at {text}"));
        }
    }
    Ok(r)
}

/// `csv` with one prediction changed: row 0's highest probability swapped
/// with another class's (its true class when it was wrong), the predicted
/// class column following, so that row's correctness flips.
fn edit_one_prediction(csv: &str) -> String {
    let mut lines: Vec<String> = csv.lines().map(String::from).collect();
    let header = common::csv_fields(&lines[0]);
    let mut f = common::csv_fields(&lines[1]);
    let p: Vec<f64> = f[4..].iter().map(|v| v.parse().unwrap()).collect();
    let argmax = (0..p.len()).fold(0, |b, j| if p[j] > p[b] { j } else { b });
    let truth = header[4..].iter().position(|h| h[2..] == f[2]).unwrap();
    let other = if argmax == truth {
        (argmax + 1) % p.len()
    } else {
        truth
    };
    f.swap(4 + argmax, 4 + other);
    f[3] = header[4 + other][2..].to_string();
    if p[other] == p[argmax] {
        // A tie would leave the argmax where it was: make the other one win.
        f[4 + argmax] = "0".into();
        f[4 + other] = (p[argmax] + p[other]).to_string();
    }
    lines[1] = f.join(",");
    lines.join("\n")
}

/// `train` of the small model with `extra` flags; (stdout, stderr).
fn train(
    data: &Path,
    weights: &Path,
    out: &Path,
    extra: &[&str],
    cache: &Path,
) -> (String, String) {
    let mut args = vec!["train"];
    args.extend(SMALL_MODEL);
    args.extend(["--data", s(data), "--weights", s(weights), "--out", s(out)]);
    args.extend(["--epochs", "3", "--seed", "4", "--standardize"]);
    args.extend(extra);
    let (code, stdout, stderr) = run_trainer(&args, cache);
    assert_eq!(code, Some(0), "{stderr}");
    (stdout, stderr)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn the_record_and_the_predictions_agree_with_the_summary() {
    let dir = TempDir::new("run-record");
    let d = dir.path();
    let (w, data, out) = (
        small_weights(d, 8),
        random_cifar(d, 64, 40),
        d.join("m.safetensors"),
    );
    // --tta: the probabilities are the average over image and flip.
    let (stdout, _) = train(&data, &w, &out, &["--tta"], &d.join("cache"));
    let summary = stdout.split("== summary ==").nth(1).expect("a summary");
    let record = read_json(&d.join("m.run.json"));
    let csv = std::fs::read_to_string(d.join("m.predictions.csv")).unwrap();
    println!(
        "{}\n{}",
        serde_json::to_string_pretty(&record).unwrap(),
        &csv[..600.min(csv.len())]
    );

    let r = agrees(&csv, &record, summary).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.images.iter().sum::<usize>(), 40);
    assert!(
        r.files.iter().all(String::is_empty),
        "batches have no files"
    );
    // The check can fail: one prediction edited, it disagrees.
    let edited = edit_one_prediction(&csv);
    let err = agrees(&edited, &record, summary)
        .err()
        .expect("the edit went unnoticed");
    println!("after editing one prediction: {err}");

    assert_eq!(record["schema"], 2);
    // Schema 2: where the test images are, for the report.
    let data_path = record["dataset"]["path"].as_str().unwrap();
    assert!(Path::new(data_path).is_absolute(), "{data_path}");
    assert_eq!(Path::new(data_path), data);
    assert_eq!(record["dataset"]["format"], "cifar-binary");
    assert_eq!(record["model"]["preprocessing"], "tf");
    assert_eq!(record["status"], "finished");
    assert_eq!(record["options"]["tta"], true);
    assert_eq!(record["options"]["seed"], 4);
    assert_eq!(record["dataset"]["test"], 40);
    assert_eq!(
        record["dataset"]["train"].as_u64().unwrap()
            + record["dataset"]["validation"].as_u64().unwrap(),
        320
    );
    assert_eq!(record["command_line"][1], "train");
    assert!(!record["weights"]["hash"].as_str().unwrap().is_empty());
    assert!(record["machine"]["threads"].as_u64().unwrap() >= 1);
    let best = record["accuracy"]["best_validation"].as_f64().unwrap();
    assert!(
        summary.contains(&format!("best validation accuracy: {best:.4}")),
        "{summary}"
    );
    let phases = record["phases"].as_array().unwrap();
    assert!(
        phases.iter().any(|p| p["name"] == "test evaluation"),
        "{phases:?}"
    );
    assert!(record["extraction"]["images_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(record["fine_tuning"], Value::Null);
    assert_eq!(record["epochs"], 3);
}

#[test]
fn image_folder_predictions_name_their_files() {
    let dir = TempDir::new("run-record-files");
    let d = dir.path();
    let w = small_weights(d, 8);
    let data = png_folder(d, "pngs", &["train", "test"], &["cat", "dog, big"]);
    let out = d.join("m.safetensors");
    let (stdout, _) = train(&data, &w, &out, &[], &d.join("cache"));
    let summary = stdout.split("== summary ==").nth(1).expect("a summary");
    let record = read_json(&d.join("m.run.json"));
    let csv = std::fs::read_to_string(d.join("m.predictions.csv")).unwrap();
    println!("{csv}");
    let r = agrees(&csv, &record, summary).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.classes, ["cat", "dog, big"]);
    let expected: Vec<String> = ["cat", "dog, big"]
        .iter()
        .flat_map(|c| (0..3).map(move |k| format!("test/{c}/{k}.png")))
        .collect();
    assert_eq!(r.files, expected);
}

#[cfg(unix)]
#[test]
fn an_interrupted_run_leaves_no_test_claim() {
    let dir = TempDir::new("run-record-interrupt");
    let d = dir.path();
    let (w, data, out) = (
        small_weights(d, 8),
        random_cifar(d, 64, 40),
        d.join("m.safetensors"),
    );
    // An earlier run's files for the same --out, claiming a test accuracy.
    std::fs::write(
        d.join("m.run.json"),
        r#"{"accuracy":{"test":{"accuracy":0.99}}}"#,
    )
    .unwrap();
    std::fs::write(d.join("m.predictions.csv"), "index,file\n").unwrap();
    std::fs::write(d.join("m.split.json"), r#"{"thaw":{"test_accuracy":0.99}}"#).unwrap();
    let mut args = vec!["train"];
    args.extend(SMALL_MODEL);
    args.extend(["--data", s(&data), "--weights", s(&w), "--out", s(&out)]);
    args.extend(["--epochs", "100000", "--patience", "100000"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(&args)
        .env("THAW_CACHE_DIR", d.join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once an epoch is in the metrics file, training is under way: SIGINT.
    let metrics = d.join("m.metrics.csv");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count()) < 2 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        assert!(Instant::now() < deadline, "no epoch after 120 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(killed.unwrap().success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    let record = read_json(&d.join("m.run.json"));
    println!("{}", serde_json::to_string_pretty(&record).unwrap());
    assert_eq!(record["status"], "interrupted");
    assert_eq!(record["accuracy"]["test"], Value::Null);
    assert!(record["accuracy"]["best_validation"].is_f64());
    assert!(record["epochs"].as_u64().unwrap() >= 1, "{record}");
    for name in ["m.predictions.csv", "m.split.json"] {
        assert!(!d.join(name).exists(), "an earlier run's {name} was left");
    }
}

#[test]
fn an_input_where_the_record_or_predictions_go_is_refused() {
    let dir = TempDir::new("run-record-refused");
    let d = dir.path();
    let data = random_cifar(d, 4, 4);
    for name in ["m.run.json", "m.predictions.csv"] {
        let w = d.join(name);
        std::fs::copy(small_weights(d, 8), &w).unwrap();
        let before = std::fs::read(&w).unwrap();
        let mut args = vec!["train"];
        args.extend(SMALL_MODEL);
        let out = d.join("m.safetensors");
        args.extend(["--data", s(&data), "--weights", s(&w), "--out", s(&out)]);
        let r = run_trainer(&args, &d.join("cache"));
        common::refused(r, &["--weights", name, "nothing was written"]);
        assert_eq!(std::fs::read(&w).unwrap(), before, "{name} was changed");
        std::fs::remove_file(&w).unwrap();
    }
}
