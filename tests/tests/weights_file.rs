//! The safetensors weights file: round trip, atomic writes, and `validate`
//! naming the first problem of a file against a model.

use engine::Tensor;
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use weights::{load_safetensors, save_safetensors, validate, Error, NamedTensors, WeightSpec};

/// A fresh empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("thaw-weights-file-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn f32_tensor(shape: &[usize], start: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| start + i as f32 * 0.25 - 3.0).collect();
    Tensor::from_vec(v, shape).unwrap()
}

fn sample() -> NamedTensors {
    vec![
        ("block1_conv1/kernel".into(), f32_tensor(&[3, 3, 3, 4], 0.5)),
        ("block1_conv1/bias".into(), f32_tensor(&[4], -1.0)),
        (
            "conv1_bn/moving_variance".into(),
            Tensor::from_vec(vec![f32::MIN_POSITIVE, -0.0, 1e-45, f32::MAX], &[4]).unwrap(),
        ),
        ("a_scalar".into(), f32_tensor(&[], 7.0)),
        ("aaa_first_by_name/kernel".into(), f32_tensor(&[2, 3], 9.0)),
    ]
}

fn spec_of(t: &NamedTensors) -> Vec<WeightSpec> {
    t.iter()
        .map(|(n, t)| WeightSpec::new(n.clone(), t.shape()))
        .collect()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.as_slice::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn round_trip_keeps_names_order_shapes_bits_and_metadata() {
    let dir = scratch("round_trip");
    let path = dir.join("w.safetensors");
    let tensors = sample();
    let mut meta = BTreeMap::new();
    meta.insert("model".to_string(), "vgg16".to_string());
    meta.insert("source".to_string(), "quote \" and ünïcode".to_string());
    save_safetensors(&path, &tensors, &meta).unwrap();

    let (back, meta_back) = load_safetensors(&path).unwrap();
    assert_eq!(meta_back, meta);
    assert_eq!(back.len(), tensors.len());
    for ((n0, t0), (n1, t1)) in tensors.iter().zip(&back) {
        assert_eq!(n0, n1, "order must be preserved");
        assert_eq!(t0.shape(), t1.shape(), "{n0}");
        assert_eq!(bits(t0), bits(t1), "{n0}");
    }
    validate(&back, &spec_of(&tensors)).unwrap();
    // Only the file itself is left: the temporary file was renamed away.
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("w.safetensors")]);
}

#[test]
fn file_follows_the_safetensors_layout() {
    let dir = scratch("layout");
    let path = dir.join("w.safetensors");
    let tensors = sample();
    save_safetensors(&path, &tensors, &BTreeMap::new()).unwrap();
    let bytes = fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(
        n % 8,
        0,
        "header padded to 8 bytes as the reference writer does"
    );
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(header.starts_with('{') && header.trim_end().ends_with('}'));
    assert!(
        !header.contains("__metadata__"),
        "no metadata given, none written"
    );
    assert!(header.contains(
        r#""block1_conv1/kernel":{"dtype":"F32","shape":[3,3,3,4],"data_offsets":[0,432]}"#
    ));
    let data: usize = tensors.iter().map(|(_, t)| t.numel() * 4).sum();
    assert_eq!(bytes.len(), 8 + n + data);
    // The first tensor's bytes start right after the header, little-endian.
    let first = f32::from_le_bytes(bytes[8 + n..8 + n + 4].try_into().unwrap());
    assert_eq!(first, -2.5);
}

#[test]
fn f64_tensors_round_trip_and_fail_validation_as_wrong_dtype() {
    let dir = scratch("f64");
    let path = dir.join("w.safetensors");
    let t = Tensor::from_vec(vec![1.0f64, -2.0, 0.1], &[3]).unwrap();
    save_safetensors(&path, &vec![("fc/bias".to_string(), t)], &BTreeMap::new()).unwrap();
    let (back, _) = load_safetensors(&path).unwrap();
    assert_eq!(back[0].1.as_slice::<f64>().unwrap(), &[1.0, -2.0, 0.1]);
    let err = validate(&back, &[WeightSpec::new("fc/bias", &[3])]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "weights: weights file has 1 tensors, the model expects 1; tensor fc/bias has dtype f64, expected f32"
    );
}

#[test]
fn failed_save_leaves_the_old_file_intact() {
    let dir = scratch("atomic");
    let path = dir.join("w.safetensors");
    save_safetensors(&path, &sample(), &BTreeMap::new()).unwrap();
    let before = fs::read(&path).unwrap();

    // A duplicate name is refused before anything is written.
    let mut dup = sample();
    dup.push(("block1_conv1/bias".into(), f32_tensor(&[4], 0.0)));
    let err = save_safetensors(&path, &dup, &BTreeMap::new()).unwrap_err();
    assert!(
        err.to_string().contains("block1_conv1/bias appears twice"),
        "{err}"
    );
    assert_eq!(fs::read(&path).unwrap(), before);

    // A target that cannot be replaced (a non-empty directory): the rename fails
    // after the whole temporary file was written; it must be cleaned up.
    let blocked = dir.join("blocked.safetensors");
    fs::create_dir(&blocked).unwrap();
    fs::write(blocked.join("keep"), b"x").unwrap();
    let err = save_safetensors(&blocked, &sample(), &BTreeMap::new()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("blocked.safetensors"), "{err}");
    assert_eq!(fs::read(blocked.join("keep")).unwrap(), b"x");

    // A directory that does not exist: nothing is created anywhere.
    let missing = dir.join("no_such_dir").join("w.safetensors");
    let err = save_safetensors(&missing, &sample(), &BTreeMap::new()).unwrap_err();
    assert!(
        err.to_string().contains("cannot create temporary file"),
        "{err}"
    );

    let mut left: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec!["blocked.safetensors", "w.safetensors"],
        "no temporary file left behind"
    );
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn failed_save_into_read_only_directory_leaves_the_old_file_intact() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("readonly");
    let path = dir.join("w.safetensors");
    save_safetensors(&path, &sample(), &BTreeMap::new()).unwrap();
    let before = fs::read(&path).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).unwrap();
    if fs::write(dir.join("probe"), b"").is_ok() {
        // Root ignores directory permissions: this case cannot be staged here.
        let _ = fs::remove_file(dir.join("probe"));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        tests::skipped(format_args!(
            "running as root, a read-only directory is still writable"
        ));
        return;
    }
    let mut other = sample();
    other[0].1 = f32_tensor(&[3, 3, 3, 4], 100.0);
    let err = save_safetensors(&path, &other, &BTreeMap::new()).unwrap_err();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn loading_a_bad_file_is_an_error_naming_it() {
    let dir = scratch("bad");
    let missing = dir.join("absent.safetensors");
    let err = load_safetensors(&missing).unwrap_err();
    assert!(
        matches!(err, Error::Io { .. }) && err.to_string().contains("absent.safetensors"),
        "{err}"
    );

    let text = dir.join("text.safetensors");
    fs::write(&text, b"this is not a weights file at all").unwrap();
    let err = load_safetensors(&text).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt(_)) && err.to_string().contains("text.safetensors"),
        "{err}"
    );

    // A good file cut short: the header promises more data than there is.
    let good = dir.join("good.safetensors");
    save_safetensors(&good, &sample(), &BTreeMap::new()).unwrap();
    let bytes = fs::read(&good).unwrap();
    for cut in [0, 7, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        let short = dir.join("short.safetensors");
        fs::write(&short, &bytes[..cut]).unwrap();
        let err = load_safetensors(&short).unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "cut at {cut}: {err}");
    }

    // A well-formed file of half floats: refused with the tensor's name.
    let header = br#"{"x/kernel":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
    let mut f16 = (header.len() as u64).to_le_bytes().to_vec();
    f16.extend_from_slice(header);
    f16.extend_from_slice(&[0, 0x3c, 0, 0x40]);
    let half = dir.join("half.safetensors");
    fs::write(&half, &f16).unwrap();
    let err = load_safetensors(&half).unwrap_err();
    assert!(err.to_string().contains("x/kernel has dtype F16"), "{err}");
}

fn vgg_tail() -> (NamedTensors, Vec<WeightSpec>) {
    let spec = vec![
        WeightSpec::new("block5_conv2/kernel", &[3, 3, 2, 2]),
        WeightSpec::new("block5_conv2/bias", &[2]),
        WeightSpec::new("block5_conv3/kernel", &[3, 3, 2, 2]),
        WeightSpec::new("block5_conv3/bias", &[2]),
    ];
    let tensors = spec
        .iter()
        .map(|w| (w.name.clone(), f32_tensor(&w.shape, 0.0)))
        .collect();
    (tensors, spec)
}

#[test]
fn validate_accepts_any_order_and_names_the_first_problem() {
    let (tensors, spec) = vgg_tail();
    validate(&tensors, &spec).unwrap();
    let mut reversed = tensors.clone();
    reversed.reverse();
    validate(&reversed, &spec).unwrap();

    let msg = |t: &NamedTensors| validate(t, &spec).unwrap_err().to_string();

    let mut wrong_shape = tensors.clone();
    wrong_shape[2].1 = f32_tensor(&[3, 3, 1, 2], 0.0);
    assert_eq!(
        msg(&wrong_shape),
        "weights: weights file has 4 tensors, the model expects 4; tensor block5_conv3/kernel has shape [3,3,1,2], expected [3,3,2,2]"
    );

    // Two problems: the one earlier in the model's order is reported.
    let mut two = wrong_shape.clone();
    two.remove(1);
    assert_eq!(
        msg(&two),
        "weights: weights file has 3 tensors, the model expects 4; tensor block5_conv2/bias is missing"
    );

    let mut extra = tensors.clone();
    extra.push(("fc1/kernel".into(), f32_tensor(&[2, 2], 0.0)));
    assert_eq!(
        msg(&extra),
        "weights: weights file has 5 tensors, the model expects 4; tensor fc1/kernel is not a weight of this model"
    );

    let mut dup = tensors.clone();
    dup.push(dup[0].clone());
    assert!(msg(&dup).contains("tensor block5_conv2/kernel appears twice (positions 0 and 4)"));

    let other: NamedTensors = vec![("conv1_conv/kernel".into(), f32_tensor(&[7, 7, 3, 64], 0.0))];
    let m = msg(&other);
    assert!(
        m.contains("tensor block5_conv2/kernel is missing") && m.contains("another model"),
        "{m}"
    );
}
