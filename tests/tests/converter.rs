//! The Keras legacy .h5 converter, on small files written by Keras and h5py
//! (`tests/fixtures/keras/gen_tiny_h5.py`), by name and by position, and on full-size VGG16 and
//! ResNet50 files written at test time by `write_h5.py` (numpy + h5py).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use weights::{convert_keras_h5, convert_keras_h5_by_position, Error, WeightSpec};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/keras")
        .join(name)
}

/// The tiny model's spec and, per good file, each weight's bits as h5py read them.
fn expected() -> (Vec<WeightSpec>, Vec<(String, Vec<Vec<u32>>)>) {
    let text = std::fs::read_to_string(fixture("tiny_expected.txt")).unwrap();
    let mut spec = Vec::new();
    let mut files: Vec<(String, Vec<Vec<u32>>)> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[0] {
            "spec" => {
                let shape: Vec<usize> = f[2].split(',').map(|d| d.parse().unwrap()).collect();
                spec.push(WeightSpec::new(f[1], &shape));
            }
            "file" => files.push((f[1].to_string(), Vec::new())),
            name => {
                assert_eq!(name, spec[files.last().unwrap().1.len()].name);
                let bits = f[1..]
                    .iter()
                    .map(|h| u32::from_str_radix(h, 16).unwrap())
                    .collect();
                files.last_mut().unwrap().1.push(bits);
            }
        }
    }
    (spec, files)
}

#[test]
fn good_files_give_what_h5py_reads() {
    let (spec, files) = expected();
    let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        names,
        [
            "tiny_keras.h5",
            "tiny_old_names.h5",
            "tiny_new_names.h5",
            "tiny_split_names.h5"
        ]
    );
    for (file, weights) in &files {
        let got = convert_keras_h5(fixture(file), &spec).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(got.len(), spec.len(), "{file}");
        for ((w, (name, t)), bits) in spec.iter().zip(&got).zip(weights) {
            assert_eq!(&w.name, name, "{file}: spec order");
            assert_eq!(t.shape(), w.shape.as_slice(), "{file}: {name}");
            let got_bits: Vec<u32> = t
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect();
            assert_eq!(&got_bits, bits, "{file}: {name}");
        }
        weights::validate(&got, &spec).unwrap();
    }
    // The files hold the same seeded values, so all four conversions agree too,
    // and they are not trivial.
    let first = &files[0].1;
    assert!(files.iter().all(|(_, w)| w == first));
    assert!(first.iter().all(|b| b.iter().any(|&x| x != first[0][0])));
}

/// By position (Keras's default rule, thaw's for InceptionV3, whose file
/// names its layers `conv2d_1` where Keras 3 says `conv2d`): the tiny
/// files read with every layer renamed give the same values under the
/// model's names. The new names sort in reverse (`layer_3` is conv_a), and
/// the files' own names sort otherwise than their `layer_names` (bn_a
/// before conv_a): only `layer_names` order gives these shapes. A
/// different count of layers, or a shape at some position, is an error
/// naming both names.
#[test]
fn by_position_follows_layer_names_whatever_the_names() {
    let (spec, files) = expected();
    let renamed_layer = |l: &str| match l {
        "conv_a" => "layer_3",
        "bn_a" => "layer_2",
        "conv_b" => "layer_1",
        _ => "layer_0",
    };
    let renamed: Vec<WeightSpec> = spec
        .iter()
        .map(|w| {
            WeightSpec::new(
                format!("{}/{}", renamed_layer(w.layer()), w.kind()),
                &w.shape,
            )
        })
        .collect();
    for (file, weights) in &files {
        let got = convert_keras_h5_by_position(fixture(file), &renamed)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        for ((w, (name, t)), bits) in renamed.iter().zip(&got).zip(weights) {
            assert_eq!(&w.name, name, "{file}: the model's names");
            let got_bits: Vec<u32> = t
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect();
            assert_eq!(&got_bits, bits, "{file}: {name}");
        }
    }
    let m = convert_keras_h5_by_position(fixture("tiny_wrong_model.h5"), &renamed)
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("has 2 layers with weights, the model expects 4 (matched by position"),
        "{m}"
    );
    let e = convert_keras_h5_by_position(fixture("tiny_wrong_shape.h5"), &renamed).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, Error::Mismatch(_)), "{m}");
    assert!(
        m.contains("layer conv_b (the model's layer_1, by position)")
            && m.contains("has shape [3,3,4,6], expected [3,3,4,5]")
            && m.contains("matched by position"),
        "{m}"
    );
}

fn err_of(file: &str) -> Error {
    let (spec, _) = expected();
    match convert_keras_h5(fixture(file), &spec) {
        Ok(_) => panic!("{file} was accepted"),
        Err(e) => e,
    }
}

#[test]
fn another_models_file_names_the_missing_layer() {
    let e = err_of("tiny_wrong_model.h5");
    let m = e.to_string();
    assert!(matches!(e, Error::Mismatch(_)), "{m}");
    assert!(
        m.contains("tiny_wrong_model.h5 has 2 layers with weights, the model expects 4"),
        "{m}"
    );
    assert!(
        m.contains("layer conv_a is missing from the file (its layers begin dense_1, dense_2)"),
        "{m}"
    );
    assert!(m.contains("another model"), "{m}");
}

#[test]
fn wrong_shape_names_layer_dataset_and_shapes() {
    let m = err_of("tiny_wrong_shape.h5").to_string();
    assert!(
        m.contains("layer conv_b: dataset conv_b/kernel:0 (weight conv_b/kernel) has shape [3,3,4,6], expected [3,3,4,5]"),
        "{m}"
    );
}

#[test]
fn wrong_weight_count_names_the_layer() {
    let m = err_of("tiny_missing_bias.h5").to_string();
    assert!(
        m.contains(
            "layer conv_b has 1 weights (conv_b/kernel:0), the model expects 2 (kernel, bias)"
        ),
        "{m}"
    );
}

#[test]
fn extra_layer_is_named() {
    let m = err_of("tiny_extra_layer.h5").to_string();
    assert!(
        m.contains("has 5 layers with weights, the model expects 4"),
        "{m}"
    );
    assert!(
        m.contains("the file has layer dense_extra (2 weights), which the model does not have"),
        "{m}"
    );
    // After all of the model's layers: the hint is the top's.
    assert!(m.contains("with-top files hold"), "{m}");
}

#[test]
fn truncated_file_is_a_corrupt_file_error() {
    let e = err_of("tiny_truncated.h5");
    assert!(matches!(e, Error::Corrupt(_)), "{e}");
    assert!(e.to_string().contains("tiny_truncated.h5"), "{e}");
}

#[test]
fn non_hdf5_and_missing_files_are_clear_errors() {
    let (spec, _) = expected();
    let dir = std::env::temp_dir().join(format!("thaw-converter-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("notes.h5");
    std::fs::write(&text, b"these are not the weights you are looking for\n").unwrap();
    let e = convert_keras_h5(&text, &spec).unwrap_err();
    assert!(e.to_string().contains("notes.h5: not an HDF5 file"), "{e}");
    let empty = dir.join("empty.h5");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        convert_keras_h5(&empty, &spec),
        Err(Error::Corrupt(_))
    ));
    let e = convert_keras_h5(dir.join("absent.h5"), &spec).unwrap_err();
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("absent.h5"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // An HDF5 file that is not a Keras weights file (no layer_names).
    let e = convert_keras_h5(fixture("tiny_not_keras.h5"), &spec).unwrap_err();
    assert!(
        e.to_string().contains("no root attribute layer_names"),
        "{e}"
    );
}

/// Every cut and many seeded byte corruptions of a good file: an `Ok` with the
/// right shapes or an `Err`, never a panic or a crash.
#[test]
fn damaged_files_never_panic() {
    let (spec, _) = expected();
    let good = std::fs::read(fixture("tiny_old_names.h5")).unwrap();
    let dir = std::env::temp_dir().join(format!("thaw-converter-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("damaged.h5");
    let mut errors = 0;
    let mut check = |bytes: &[u8], what: &str| {
        std::fs::write(&path, bytes).unwrap();
        match convert_keras_h5(&path, &spec) {
            Ok(w) => weights::validate(&w, &spec).unwrap_or_else(|e| panic!("{what}: Ok but {e}")),
            Err(e) => {
                assert!(!e.to_string().is_empty());
                errors += 1;
            }
        }
    };
    for cut in (0..good.len()).step_by(97) {
        check(&good[..cut], &format!("cut at {cut}"));
    }
    for k in 0..300u64 {
        let mut bad = good.clone();
        for j in 0..4 {
            let x = engine::rng::random_u64(11, k, j);
            let at = (x % good.len() as u64) as usize;
            bad[at] ^= (x >> 56) as u8 | 1;
        }
        check(&bad, &format!("corruption {k}"));
    }
    assert!(errors > 100, "only {errors} damaged files were refused");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Python with numpy and h5py for write_h5.py: $THAW_PYTHON, the project's
/// venv, or python3. None if none of them has both.
fn python() -> Option<String> {
    let mut candidates = vec![];
    if let Ok(p) = std::env::var("THAW_PYTHON") {
        candidates.push(p);
    }
    candidates.push("/work/venv/bin/python".into());
    candidates.push("python3".into());
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import numpy, h5py"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    })
}

fn spec_and_seed(model: &str) -> (Vec<WeightSpec>, u64) {
    let text = std::fs::read_to_string(fixture("seeded_samples.txt")).unwrap();
    let mut spec = Vec::new();
    let mut seed = None;
    let mut inside = false;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[0] {
            "model" => {
                inside = f[1] == model;
                if inside {
                    seed = Some(f[3].parse().unwrap());
                }
            }
            "spec" if inside && f.get(3) != Some(&"top") => {
                let shape: Vec<usize> = f[2].split(',').map(|d| d.parse().unwrap()).collect();
                spec.push(WeightSpec::new(f[1], &shape));
            }
            _ => {}
        }
    }
    (spec, seed.unwrap())
}

fn full_size(model: &str) {
    let Some(py) = python() else {
        if std::env::var("THAW_REQUIRE_FULL_H5").is_ok() {
            panic!("THAW_REQUIRE_FULL_H5 is set but no python with numpy and h5py was found (set THAW_PYTHON)");
        }
        tests::skipped(format_args!(
            "full-size {model} .h5 conversion: no python with numpy and h5py (set THAW_PYTHON)"
        ));
        return;
    };
    let dir = std::env::temp_dir().join(format!(
        "thaw-converter-full-{model}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let h5 = dir.join(format!("{model}_notop.h5"));
    let start = Instant::now();
    let out = Command::new(&py)
        .arg(fixture("write_h5.py"))
        .args(["--model", model, "--out"])
        .arg(&h5)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "write_h5.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(&h5).unwrap().len();
    eprintln!(
        "{model}: write_h5.py wrote {size} bytes in {:.1} s",
        start.elapsed().as_secs_f64()
    );

    let (spec, seed) = spec_and_seed(model);
    let start = Instant::now();
    let got = convert_keras_h5(&h5, &spec).unwrap();
    let convert_s = start.elapsed().as_secs_f64();
    let want = weights::seeded::generate(&spec, seed);
    let mut values = 0;
    for ((name, t), (_, w)) in got.iter().zip(&want) {
        assert!(
            t.as_slice::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .eq(w.as_slice::<f32>().unwrap().iter().map(|x| x.to_bits())),
            "{model}: {name} differs from the seeded weights"
        );
        values += t.numel();
    }
    let st = dir.join(format!("{model}.safetensors"));
    let start = Instant::now();
    weights::save_safetensors(&st, &got, &Default::default()).unwrap();
    let save_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let (back, _) = weights::load_safetensors(&st).unwrap();
    weights::validate(&back, &spec).unwrap();
    let load_s = start.elapsed().as_secs_f64();
    eprintln!(
        "{model}: {} tensors, {values} values bit-identical; convert {convert_s:.2} s, save {save_s:.2} s, load+validate {load_s:.2} s",
        got.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn full_size_vgg16_file_converts_bit_exactly() {
    full_size("vgg16");
}

#[test]
fn full_size_vgg19_file_converts_bit_exactly() {
    full_size("vgg19");
}

#[test]
fn full_size_resnet50_file_converts_bit_exactly() {
    full_size("resnet50");
}

/// Python for write_h5.py, or None after printing SKIPPED (a panic when
/// THAW_REQUIRE_FULL_H5 is set).
fn python_or_skip(what: &str) -> Option<String> {
    let py = python();
    if py.is_none() {
        if std::env::var("THAW_REQUIRE_FULL_H5").is_ok() {
            panic!("THAW_REQUIRE_FULL_H5 is set but no python with numpy and h5py was found (set THAW_PYTHON)");
        }
        tests::skipped(format_args!(
            "{what}: no python with numpy and h5py (set THAW_PYTHON)"
        ));
    }
    py
}

/// Writes `dir/name` with write_h5.py and `args`.
fn write_h5(py: &str, dir: &std::path::Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let run = Command::new(py)
        .arg(fixture("write_h5.py"))
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "write_h5.py {args:?} failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

/// A MobileNet or MobileNetV2's weight spec at `alpha`, with or without its top.
fn mobilenet_spec(model: &str, alpha: f64, include_top: bool) -> Vec<WeightSpec> {
    use models::{Backbone, MobileNet, MobileNetV2, ModelOptions};
    let options = ModelOptions {
        include_top,
        ..ModelOptions::default()
    };
    match model {
        "mobilenet" => MobileNet::new(&ModelOptions {
            alpha: Some(alpha),
            ..options.clone()
        })
        .unwrap()
        .weight_spec(),
        _ => MobileNetV2::new(&ModelOptions {
            alpha: Some(alpha),
            ..options.clone()
        })
        .unwrap()
        .weight_spec(),
    }
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("thaw-converter-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Full-size MobileNet files in the published Keras-2 layout (write_h5.py
/// from the layouts gen_mobilenet.py took from Keras; `conv_dw_1/conv_dw_1/
/// depthwise_kernel:0`, weightless layers with empty weight_names; the
/// with-top files with v1's conv_preds and v2's Logits) convert bit for bit
/// to the seeded weights, and load into the model.
#[test]
fn full_size_mobilenet_files_convert_bit_exactly() {
    let Some(py) = python_or_skip("full-size MobileNet .h5 conversion") else {
        return;
    };
    let dir = temp_dir("mobilenet");
    for (model, alpha, top) in [
        ("mobilenet", 0.25, false),
        ("mobilenet", 0.25, true),
        ("mobilenet", 1.0, false),
        ("mobilenet_v2", 0.35, false),
        ("mobilenet_v2", 0.35, true),
        ("mobilenet_v2", 1.4, false),
    ] {
        let what = format!("{model} alpha {alpha} top={top}");
        let alpha_arg = format!("{alpha:?}");
        let mut args = vec!["--model", model, "--alpha", &alpha_arg];
        if top {
            args.push("--top");
        }
        let h5 = write_h5(&py, &dir, &format!("{model}_{alpha:?}_{top}.h5"), &args);
        let spec = mobilenet_spec(model, alpha, top);
        let start = Instant::now();
        let got = convert_keras_h5(&h5, &spec).unwrap_or_else(|e| panic!("{what}: {e}"));
        let secs = start.elapsed().as_secs_f64();
        let (_, seed) = spec_and_seed(model);
        let want = weights::seeded::generate(&spec, seed);
        assert_eq!(got.len(), spec.len(), "{what}");
        for ((name, t), (_, w)) in got.iter().zip(&want) {
            let bits = |t: &engine::Tensor| -> Vec<u32> {
                t.as_slice::<f32>()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect()
            };
            assert_eq!(bits(t), bits(w), "{what}: {name}");
        }
        weights::validate(&got, &spec).unwrap();
        let values: usize = got.iter().map(|(_, t)| t.numel()).sum();
        eprintln!(
            "{what}: {} tensors, {values} values bit-identical, convert {secs:.2} s",
            got.len()
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file of another alpha, of the other MobileNet, with a top the model
/// lacks, with a NaN, or truncated: a clear error naming the first
/// mismatched tensor (or the file and the damage).
#[test]
fn wrong_mobilenet_files_name_the_first_mismatch() {
    let Some(py) = python_or_skip("MobileNet .h5 mismatch errors") else {
        return;
    };
    let dir = temp_dir("mobilenet-bad");
    let spec = mobilenet_spec("mobilenet", 0.25, false);

    let h5 = write_h5(
        &py,
        &dir,
        "v1_0.5.h5",
        &["--model", "mobilenet", "--alpha", "0.5"],
    );
    let e = convert_keras_h5(&h5, &spec).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, Error::Mismatch(_)), "{m}");
    assert!(
        m.contains("layer conv1: dataset conv1/kernel:0 (weight conv1/kernel) has shape [3,3,3,16], expected [3,3,3,8]"),
        "{m}"
    );
    assert!(m.contains("another alpha"), "{m}");

    let h5 = write_h5(
        &py,
        &dir,
        "v2.h5",
        &["--model", "mobilenet_v2", "--alpha", "0.35"],
    );
    let m = convert_keras_h5(&h5, &spec).unwrap_err().to_string();
    assert!(
        m.contains("layer conv1 is missing from the file (its layers begin Conv1, bn_Conv1, expanded_conv_depthwise, expanded_conv_depthwise_BN)"),
        "{m}"
    );
    assert!(m.contains("another model"), "{m}");

    let h5 = write_h5(
        &py,
        &dir,
        "v1_top.h5",
        &["--model", "mobilenet", "--alpha", "0.25", "--top"],
    );
    let m = convert_keras_h5(&h5, &spec).unwrap_err().to_string();
    assert!(
        m.contains("the file has layer conv_preds (2 weights), which the model does not have"),
        "{m}"
    );

    let h5 = write_h5(
        &py,
        &dir,
        "v1_nan.h5",
        &[
            "--model",
            "mobilenet",
            "--alpha",
            "0.25",
            "--nan",
            "conv_dw_7/depthwise_kernel",
        ],
    );
    let e = convert_keras_h5(&h5, &spec).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, Error::Corrupt(_)), "{m}");
    assert!(
        m.contains("layer conv_dw_7: dataset conv_dw_7/depthwise_kernel:0: value NaN at flat index 576 is not finite"),
        "{m}"
    );

    let good = write_h5(
        &py,
        &dir,
        "v1.h5",
        &["--model", "mobilenet", "--alpha", "0.25"],
    );
    let bytes = std::fs::read(&good).unwrap();
    for cut in [bytes.len() / 3, bytes.len() * 2 / 3, bytes.len() - 100] {
        let cut_file = dir.join("v1_cut.h5");
        std::fs::write(&cut_file, &bytes[..cut]).unwrap();
        let e = convert_keras_h5(&cut_file, &spec).unwrap_err();
        assert!(matches!(e, Error::Corrupt(_)), "cut at {cut}: {e}");
        assert!(e.to_string().contains("v1_cut.h5"), "{e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
