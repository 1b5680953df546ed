//! The .npy writer and reader against numpy: committed files written by
//! numpy (`fixtures/npy/make_npy_fixtures.py`) must equal ours byte for
//! byte; streaming in batches gives the same file as one write; bad writes
//! fail and leave no file; and, when a Python with numpy is at hand, numpy
//! loads what we write.

mod common;

use common::{entries, repo_root, TempDir};
use std::path::PathBuf;
use trainer::npy::{self, NpyData, NpyWriter};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/npy")
        .join(name)
}

/// The values of make_npy_fixtures.py: ((i * i) % 23) / 8 - 1.5.
fn f32_values(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * i) % 23) as f32 / 8.0 - 1.5).collect()
}

const LABELS: [u8; 8] = [3, 1, 4, 1, 5, 9, 2, 6];

#[test]
fn our_files_equal_numpys_byte_for_byte() {
    let dir = TempDir::new("npy-bytes");
    let cases: [(&str, Vec<usize>); 4] = [
        ("f32_3x5.npy", vec![3, 5]),
        ("f32_2x3x4x2.npy", vec![2, 3, 4, 2]),
        ("f32_7.npy", vec![7]),
        ("f32_0x4.npy", vec![0, 4]),
    ];
    for (name, shape) in cases {
        let out = dir.path().join(name);
        let n: usize = shape.iter().product();
        npy::write(&out, &shape, &f32_values(n)).unwrap();
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(fixture(name)).unwrap(),
            "{name}"
        );
    }
    let out = dir.path().join("i8_labels.npy");
    npy::write_labels(&out, &LABELS).unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(fixture("i8_labels.npy")).unwrap()
    );
    let out = dir.path().join("u1_labels.npy");
    npy::write::<u8>(&out, &[8], &LABELS).unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(fixture("u1_labels.npy")).unwrap()
    );
}

#[test]
fn headers_of_large_shapes_equal_numpys() {
    assert_eq!(
        npy::header("<f4", &[50000, 2048]),
        std::fs::read(fixture("header_f4_50000x2048.bin")).unwrap()
    );
    assert_eq!(
        npy::header("<f4", &[10000, 7, 7, 512]),
        std::fs::read(fixture("header_f4_10000x7x7x512.bin")).unwrap()
    );
}

#[test]
fn streaming_in_batches_equals_one_write_and_reads_back() {
    let dir = TempDir::new("npy-stream");
    let shape = [10, 3, 2];
    let values = f32_values(60);
    let streamed = dir.path().join("streamed.npy");
    let mut w = NpyWriter::<f32>::create(&streamed, &shape).unwrap();
    // Batches of 4, 4 and 2 rows (6 values a row).
    for chunk in values.chunks(24) {
        w.append(chunk).unwrap();
    }
    assert_eq!(w.rows_written(), 10);
    // Nothing at the final path until finish.
    assert!(!streamed.exists());
    w.finish().unwrap();
    let whole = dir.path().join("whole.npy");
    npy::write(&whole, &shape, &values).unwrap();
    assert_eq!(
        std::fs::read(&streamed).unwrap(),
        std::fs::read(&whole).unwrap()
    );
    assert_eq!(entries(dir.path()), vec!["streamed.npy", "whole.npy"]);

    let back = npy::read(&streamed).unwrap();
    assert_eq!(back.shape, vec![10, 3, 2]);
    assert_eq!(back.data, NpyData::F32(values));
    let labels = npy::read(fixture("i8_labels.npy")).unwrap();
    assert_eq!(labels.shape, vec![8]);
    assert_eq!(
        labels.data,
        NpyData::I64(LABELS.iter().map(|&l| l as i64).collect())
    );
    let labels = npy::read(fixture("u1_labels.npy")).unwrap();
    assert_eq!(labels.data, NpyData::U8(LABELS.to_vec()));
}

#[test]
fn bad_writes_fail_and_leave_no_file() {
    let dir = TempDir::new("npy-bad");
    let path = dir.path().join("f.npy");
    let mut w = NpyWriter::<f32>::create(&path, &[3, 4]).unwrap();
    let msg = w.append(&[1.0; 5]).unwrap_err().to_string();
    assert!(msg.contains("not a whole number of rows of 4"), "{msg}");
    w.append(&[1.0; 8]).unwrap();
    let msg = w.append(&[1.0; 8]).unwrap_err().to_string();
    assert!(msg.contains("would exceed the 3 rows"), "{msg}");
    let msg = w.finish().unwrap_err().to_string();
    assert!(msg.contains("finish after 2 of 3 rows"), "{msg}");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));

    // Dropped without finish (e.g. an error mid-extraction): nothing left.
    let mut w = NpyWriter::<f32>::create(&path, &[3, 4]).unwrap();
    w.append(&[1.0; 4]).unwrap();
    drop(w);
    assert!(entries(dir.path()).is_empty());

    let msg = NpyWriter::<f32>::create(&path, &[])
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("rank >= 1"), "{msg}");
}

#[test]
fn reader_rejects_truncated_and_foreign_files() {
    let dir = TempDir::new("npy-read");
    let bytes = std::fs::read(fixture("f32_3x5.npy")).unwrap();
    let cut = dir.path().join("cut.npy");
    std::fs::write(&cut, &bytes[..bytes.len() - 4]).unwrap();
    let msg = npy::read(&cut).unwrap_err().to_string();
    assert!(
        msg.contains("cut.npy") && msg.contains("truncated"),
        "{msg}"
    );
    let other = dir.path().join("other.npy");
    std::fs::write(&other, b"PK\x03\x04 a zip file").unwrap();
    let msg = npy::read(&other).unwrap_err().to_string();
    assert!(msg.contains("not a .npy file"), "{msg}");
}

/// A Python that can import numpy: the project venv, else `python3`.
fn python_with_numpy() -> Option<PathBuf> {
    let venv = repo_root().join("../venv/bin/python");
    for py in [
        venv,
        PathBuf::from("/work/venv/bin/python"),
        PathBuf::from("python3"),
    ] {
        let ok = std::process::Command::new(&py)
            .args(["-c", "import numpy"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Some(py);
        }
    }
    None
}

#[test]
fn numpy_loads_what_we_write() {
    let Some(py) = python_with_numpy() else {
        common::skipped(format_args!("no python with numpy found"));
        return;
    };
    let dir = TempDir::new("npy-numpy");
    let feats = dir.path().join("features.npy");
    let shape = [37, 5, 3];
    let mut w = NpyWriter::<f32>::create(&feats, &shape).unwrap();
    for chunk in f32_values(555).chunks(15 * 8) {
        w.append(chunk).unwrap();
    }
    w.finish().unwrap();
    let labels = dir.path().join("features.labels.npy");
    npy::write_labels(&labels, &LABELS).unwrap();
    // numpy recomputes the values and compares; it also writes its own
    // headers for many shapes (1 to 20 digits) to compare with ours.
    let shapes: Vec<Vec<usize>> = vec![
        vec![0],
        vec![1],
        vec![9, 1],
        vec![123, 4567],
        vec![99999, 7, 7, 512],
        vec![1, 2, 3, 4, 5, 6],
        vec![12345678901234567890, 1],
    ];
    let script = format!(
        r#"
import io, sys, numpy as np
a = np.load(sys.argv[1])
expect = np.array([((i * i) % 23) / 8.0 - 1.5 for i in range(555)], dtype=np.float32).reshape(37, 5, 3)
assert a.dtype == np.float32 and a.shape == (37, 5, 3), (a.dtype, a.shape)
assert np.array_equal(a, expect)
l = np.load(sys.argv[2])
assert l.dtype == np.int64 and l.tolist() == [3, 1, 4, 1, 5, 9, 2, 6], l
for shape in {shapes:?}:
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {{'descr': '<f4', 'fortran_order': False, 'shape': tuple(shape)}})
    sys.stdout.write(f.getvalue().hex() + '\n')
"#
    );
    let out = std::process::Command::new(&py)
        .arg("-c")
        .arg(script)
        .arg(&feats)
        .arg(&labels)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "numpy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), shapes.len());
    for (shape, line) in shapes.iter().zip(lines) {
        let ours: String = npy::header("<f4", shape)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(ours, line, "header of shape {shape:?}");
    }
    println!(
        "numpy ({}) loaded our files and agrees on {} headers",
        py.display(),
        shapes.len()
    );
}
