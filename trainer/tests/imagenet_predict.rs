//! `trainer predict --weights`: ImageNet top-k through a model with its
//! 1000-class top, with seeded full-size weights (real ImageNet weights
//! cannot be downloaded here).

use engine::Tensor;
use models::ModelOptions;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use trainer::imagenet;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("thaw-imagenet-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 40x30 RGB PNG with a smooth pattern.
fn write_png(path: &Path) {
    let img = image::RgbImage::from_fn(40, 30, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x + y) * 3) as u8])
    });
    img.save(path).unwrap();
}

/// Seeded weights of `model` (with or without the top) saved as .safetensors.
fn seeded_weights(dir: &Path, model: &str, include_top: bool) -> PathBuf {
    let options = ModelOptions {
        include_top,
        ..ModelOptions::default()
    };
    let backbone = models::build(model, &options).unwrap();
    let tensors = weights::seeded::generate(&backbone.weight_spec(), 50);
    let path = dir.join(format!("{model}_top{include_top}.safetensors"));
    weights::save_safetensors(&path, &tensors, &BTreeMap::new()).unwrap();
    path
}

#[test]
fn class_list_is_the_standard_ilsvrc_order() {
    let names = imagenet::class_names();
    assert_eq!(names.len(), 1000);
    // Well-known indices of the ILSVRC-2012 order used by Keras and torchvision.
    assert_eq!(names[0], "tench");
    assert_eq!(names[1], "goldfish");
    assert_eq!(names[281], "tabby");
    assert_eq!(names[999], "toilet tissue");
}

#[test]
fn resnet50_top_k_is_a_sorted_distribution_over_the_1000_classes() {
    let dir = temp_dir("ok");
    let w = seeded_weights(&dir, "resnet50", true);
    let img = dir.join("pattern.png");
    write_png(&img);

    let all = imagenet::predict("resnet50", None, &w, &img, 1000).unwrap();
    assert_eq!(all.len(), 1000);
    let total: f64 = all.iter().map(|(_, p)| *p as f64).sum();
    assert!((total - 1.0).abs() < 1e-4, "softmax sums to {total}");
    assert!(all.windows(2).all(|p| p[0].1 >= p[1].1), "not sorted");
    let mut names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 1000, "every class exactly once");

    let top5 = imagenet::predict("resnet50", None, &w, &img, 5).unwrap();
    assert_eq!(
        top5,
        all[..5].to_vec(),
        "top-5 is the head of the full ranking"
    );

    // The image decoder: a PNG reads back as its pixels.
    let x: Tensor = imagenet::read_image(&img).unwrap();
    assert_eq!(x.shape(), &[1, 30, 40, 3]);
    assert_eq!(&x.to_vec_f32()[..3], &[0.0, 0.0, 0.0]);
    assert_eq!(&x.to_vec_f32()[3..6], &[6.0, 0.0, 3.0]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn no_top_weights_or_a_non_image_give_clear_errors() {
    let dir = temp_dir("bad");
    let notop = seeded_weights(&dir, "resnet50", false);
    let img = dir.join("pattern.png");
    write_png(&img);
    let err = imagenet::predict("resnet50", None, &notop, &img, 5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("with-top"), "{err}");

    let top = seeded_weights(&dir, "resnet50", true);
    let not_image = dir.join("notes.txt");
    std::fs::write(&not_image, "not an image").unwrap();
    let err = imagenet::predict("resnet50", None, &top, &not_image, 5)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot decode"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
