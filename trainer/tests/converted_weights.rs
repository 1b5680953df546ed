//! The converted ImageNet weights kept in the cache verify their own md5
//! (stored beside them): a converted file that was changed is converted
//! again from the original, with a message, never used. The real binary,
//! offline: `extract` without `--weights` of MobileNet alpha 0.25 at 32 px.
//!
//! MobileNet's files are published without a checksum (checked by layout),
//! so the cache's "downloaded" file can be seeded weights. They are stored
//! as .safetensors bytes under the .h5 name: the trainer tells weight
//! formats apart by content, so they pass the layout check as the
//! published .h5 would.

mod common;

use common::{random_cifar, run_trainer, small_weights, TempDir, SMALL_MODEL};
use std::path::Path;

fn features(out: &Path) -> Vec<f32> {
    match trainer::npy::read(out).unwrap().data {
        trainer::npy::NpyData::F32(v) => v,
        other => panic!("not f32: {other:?}"),
    }
}

#[test]
fn changed_converted_weights_are_converted_again() {
    let dir = TempDir::new("converted-md5");
    let d = dir.path();
    let cache = d.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let file = models::registry::find("mobilenet")
        .unwrap()
        .weights_file(Some(0.25), 32, false)
        .unwrap();
    let h5 = cache.join(&file.file_name);
    std::fs::copy(small_weights(d, 3), &h5).unwrap();
    let converted = cache.join(file.file_name.replace(".h5", ".safetensors"));
    let data = random_cifar(d, 4, 4).join("test_batch.bin");
    let out = d.join("f.npy");
    let extract = || {
        let mut args = vec!["extract"];
        args.extend(SMALL_MODEL);
        args.extend(["--data", data.to_str().unwrap(), "--pooling", "avg"]);
        args.extend(["--out", out.to_str().unwrap()]);
        let (code, _, err) = run_trainer(&args, &cache);
        assert_eq!(code, Some(0), "{err}");
        (features(&out), err)
    };
    let (first, _) = extract();
    assert!(converted.is_file());
    // Its md5, beside it (`trainer::weights_source::converted_hash_path`).
    let stored = cache.join(file.file_name.replace(".h5", ".safetensors.md5"));

    // Another valid weights file in place of the converted one.
    std::fs::copy(small_weights(d, 4), &converted).unwrap();
    let (second, err) = extract();
    println!("{err}");
    assert!(
        second == first,
        "the changed converted weights were used instead of the original's"
    );
    assert!(
        err.contains("do not match the md5 recorded beside them"),
        "{err}"
    );
    let md5 = trainer::download::md5_file(&converted).unwrap();
    assert_eq!(std::fs::read_to_string(&stored).unwrap().trim(), md5);

    // Converted weights without their md5 are converted again too.
    std::fs::remove_file(&stored).unwrap();
    let (third, err) = extract();
    assert!(
        third == first && err.contains("no readable recorded md5"),
        "{err}"
    );
    assert!(stored.is_file());
}
