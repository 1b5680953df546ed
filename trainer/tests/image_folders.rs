//! Image folders of any size and kind: real CIFAR-10 JPEGs (from
//! ../shared/data when present) re-encoded here by the `image` crate as
//! PNG, BMP, GIF, WebP, grayscale, RGBA and 16-bit, at odd sizes; resized to
//! the model's size by the engine's bilinear resize, with and without the
//! centre crop; unreadable files listed or skipped; the layouts and seeded
//! splits of `train`; and peak memory that does not grow with the dataset.

mod common;

use common::{archive, skipped, small_weights, unpack_subset, TempDir};
use engine::{ops, Tensor};
use image::{DynamicImage, ImageFormat, RgbImage};
use std::path::{Path, PathBuf};
use trainer::data::sets::{training_sets, SplitOptions};
use trainer::data::stream::Images;
use trainer::data::{self, decode, ImageOptions, Split};

/// Images of any size resized to `side`, as `train` reads them.
fn resized(side: usize, crop: bool, skip: bool) -> ImageOptions {
    ImageOptions {
        resize_to: Some(side),
        crop_to_aspect_ratio: crop,
        skip_bad_images: skip,
    }
}

/// Every image of `ds`, batch by batch, as one uint8 NHWC buffer.
fn all_pixels(ds: &data::Dataset) -> Vec<u8> {
    let mut out = Vec::new();
    for batch in Images::from(ds).batches(3) {
        out.extend(batch.unwrap());
    }
    out
}

/// What the resize must give: the engine's `bilinear_resize` op (on a
/// tensor) of the RGB pixels, rounded to 8 bits.
fn expected(rgb: &RgbImage, side: usize) -> Vec<u8> {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let x: Vec<f32> = rgb.as_raw().iter().map(|&p| p as f32).collect();
    let x = Tensor::from_vec(x, &[1, h, w, 3]).unwrap();
    let y = ops::bilinear_resize(&x, side, side).unwrap().to_vec_f32();
    y.iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// A real CIFAR-10 photo upscaled to `w` x `h` (so that every test image
/// is a real image at an odd size), or a synthetic one when the archive is
/// absent.
fn photo(real: Option<&Path>, w: u32, h: u32) -> RgbImage {
    let base = match real {
        Some(p) => decode::read_rgb8(p, decode::SizeRule::Any).unwrap(),
        None => RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 * 7, y as u8 * 5, 90])),
    };
    image::imageops::resize(&base, w, h, image::imageops::FilterType::Triangle)
}

/// Some real CIFAR-10 JPEGs (30 training images per class), when the
/// archive is there.
fn real_jpegs(dir: &Path) -> Vec<PathBuf> {
    let Some(archive) = archive() else {
        skipped("../shared/data/cifar10-jpeg.tar.xz not found: synthetic photos instead");
        return Vec::new();
    };
    let root = unpack_subset(&archive, dir).join("train/cat");
    let mut files: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn photos_of_every_format_and_colour_type_are_resized_to_the_model_size() {
    let dir = TempDir::new("any-kind");
    let real = real_jpegs(dir.path());
    let pick = |i: usize| real.get(i).map(PathBuf::as_path);
    let d = dir.path().join("photos");
    for class in ["a", "b"] {
        std::fs::create_dir_all(d.join(class)).unwrap();
    }
    // (file, the RGB pixels the decoder must see, format to write).
    let mut cases: Vec<(String, RgbImage)> = Vec::new();
    let mut save = |name: &str, img: DynamicImage, format: ImageFormat, rgb: RgbImage| {
        img.save_with_format(d.join(name), format).unwrap();
        cases.push((name.to_string(), rgb));
    };
    let p = photo(pick(0), 53, 37);
    save("a/0.png", p.clone().into(), ImageFormat::Png, p);
    let p = photo(pick(1), 45, 61);
    save("a/1.bmp", p.clone().into(), ImageFormat::Bmp, p);
    let p = photo(pick(2), 40, 40);
    save("a/2.gif", p.clone().into(), ImageFormat::Gif, p);
    let p = photo(pick(3), 77, 33);
    save("a/3.webp", p.clone().into(), ImageFormat::WebP, p);
    let gray = DynamicImage::from(photo(pick(4), 31, 29)).into_luma8();
    let rgb = DynamicImage::from(gray.clone()).into_rgb8();
    save("b/0_gray.png", gray.into(), ImageFormat::Png, rgb);
    let rgba = DynamicImage::from(photo(pick(5), 64, 48)).into_rgba8();
    let rgb = DynamicImage::from(rgba.clone()).into_rgb8();
    save("b/1_rgba.png", rgba.into(), ImageFormat::Png, rgb);
    let deep = DynamicImage::from(photo(pick(6), 20, 50)).into_rgb16();
    let rgb = DynamicImage::from(deep.clone()).into_rgb8();
    save("b/2_16bit.png", deep.into(), ImageFormat::Png, rgb);
    // A PNG named .jpg: told by its content.
    let p = photo(pick(7), 33, 35);
    save("b/3_png.jpg", p.clone().into(), ImageFormat::Png, p);
    std::fs::write(d.join("b/.DS_Store"), b"hidden: skipped").unwrap();
    // Windows's thumbnail cache, as in the cats-vs-dogs archive: not an image of the class.
    std::fs::write(d.join("a/Thumbs.db"), b"\xd0\xcf\x11\xe0 not an image").unwrap();
    std::fs::create_dir_all(d.join(".hidden_class")).unwrap();

    let side = 40;
    let ds = data::load_with(&d, Split::Train, &resized(side, false, false)).unwrap();
    assert_eq!(ds.classes, vec!["a", "b"], "hidden folders are no class");
    assert_eq!(
        ds.labels,
        vec![0, 0, 0, 0, 1, 1, 1, 1],
        "hidden files (.DS_Store, Thumbs.db) are no images and no unreadable ones"
    );
    assert_eq!(
        ds.streamed,
        Some(false),
        "images of other sizes stay on disk"
    );
    assert!(ds.images.is_empty());
    let got = all_pixels(&ds);
    let bytes = side * side * 3;
    assert_eq!(got.len(), 8 * bytes);
    // GIF quantizes to a palette of 256 colours: its pixels are the ones
    // the image crate reads back from the file.
    cases[2].1 = image::open(d.join("a/2.gif")).unwrap().into_rgb8();
    for (k, (name, rgb)) in cases.iter().enumerate() {
        let image = &got[k * bytes..(k + 1) * bytes];
        assert_eq!(image, &expected(rgb, side)[..], "{name}");
    }

    // --crop-to-aspect-ratio: the centred square (Keras's crop), then resized.
    let ds = data::load_with(&d, Split::Train, &resized(side, true, false)).unwrap();
    let got = all_pixels(&ds);
    let (name, rgb) = &cases[3]; // 77x33: the square is columns 22..55
    let square = image::imageops::crop_imm(rgb, 22, 0, 33, 33).to_image();
    assert_eq!(
        &got[3 * bytes..4 * bytes],
        &expected(&square, side)[..],
        "{name}"
    );
}

#[test]
fn a_folder_of_32x32_images_stays_in_memory_as_the_32x32_readers_read_it() {
    let dir = TempDir::new("all-32");
    let d = common::png_folder(dir.path(), "flat", &[], &["cat", "dog"]);
    let strict = data::load(&d, Split::Train).unwrap();
    let any = data::load_with(&d, Split::Train, &resized(224, false, false)).unwrap();
    assert_eq!(any.streamed, None);
    assert_eq!(any, strict, "the same dataset, byte for byte");
}

#[test]
fn unreadable_files_are_listed_or_skipped_and_counted() {
    let dir = TempDir::new("bad-files");
    let d = dir.path();
    for class in ["cat", "dog"] {
        std::fs::create_dir_all(d.join(class)).unwrap();
        for k in 0..3 {
            photo(None, 40 + k, 30)
                .save(d.join(format!("{class}/{k}.png")))
                .unwrap();
        }
    }
    for k in 0..12 {
        let bad: &[u8] = match k % 3 {
            0 => b"",
            1 => b"not an image at all",
            _ => b"\x89PNG\r\n\x1a\ntruncated",
        };
        std::fs::write(d.join(format!("dog/bad{k:02}.jpg")), bad).unwrap();
    }
    let msg = data::load_with(d, Split::Train, &resized(32, false, false))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("holds 12 of 18 files that cannot be read"),
        "{msg}"
    );
    assert!(
        msg.contains("bad00.jpg") && msg.contains("bad09.jpg"),
        "{msg}"
    );
    assert!(
        !msg.contains("bad10.jpg") && msg.contains("and 2 more"),
        "{msg}"
    );
    assert!(msg.contains("--skip-bad-images"), "{msg}");

    let ds = data::load_with(d, Split::Train, &resized(32, false, true)).unwrap();
    assert_eq!(ds.len(), 6);
    assert_eq!(ds.skipped.len(), 12);
    assert_eq!(all_pixels(&ds).len(), 6 * 32 * 32 * 3);

    // A file whose header reads but whose pixels do not is named by the pass.
    let good = std::fs::read(d.join("cat/0.png")).unwrap();
    std::fs::write(d.join("cat/9.png"), &good[..good.len() / 2]).unwrap();
    let ds = data::load_with(d, Split::Train, &resized(32, false, true)).unwrap();
    let err = Images::from(&ds)
        .batches(4)
        .find_map(Result::err)
        .expect("the truncated file fails to decode")
        .to_string();
    assert!(
        err.contains("9.png") && err.contains("cannot be decoded"),
        "{err}"
    );
}

/// `train/`, `validation/` and `test/` folders of 32x32 PNGs for the
/// classes, `n` images per class each.
fn split_folders(root: &Path, splits: &[&str], classes: &[&str], n: u8) {
    for split in splits {
        for (c, class) in classes.iter().enumerate() {
            let folder = root.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for k in 0..n {
                RgbImage::from_fn(32, 32, |x, y| {
                    image::Rgb([x as u8, y as u8, k * 9 + c as u8])
                })
                .save(folder.join(format!("{k}.png")))
                .unwrap();
            }
        }
    }
}

#[test]
fn the_layouts_and_seeded_splits_of_train() {
    let dir = TempDir::new("layouts");
    let opts = resized(32, false, false);
    let split = |val, test, seed| SplitOptions {
        val_split: val,
        test_split: test,
        seed,
    };

    // One class tree: refused without --test-split; split with it, seeded.
    let tree = dir.path().join("tree");
    split_folders(&tree, &[""], &["ant", "bee", "cow"], 10);
    let msg = training_sets(Some(&tree), &opts, &split(None, None, 0))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("no separate test split") && msg.contains("--test-split"),
        "{msg}"
    );
    let a = training_sets(Some(&tree), &opts, &split(Some(0.2), Some(0.3), 7)).unwrap();
    assert_eq!(
        (a.test.len(), a.val_idx.len(), a.train_idx.len()),
        (9, 6, 15)
    );
    assert_eq!(a.train.len(), 21);
    assert!(a.description.contains("seed 7"), "{}", a.description);
    let files = |ds: &data::Dataset, idx: &[usize]| -> Vec<PathBuf> {
        idx.iter().map(|&i| ds.files[i].clone()).collect()
    };
    let mut seen: Vec<PathBuf> = a.test.files.clone();
    seen.extend(files(&a.train, &a.train_idx));
    seen.extend(files(&a.train, &a.val_idx));
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 30, "each image in exactly one set");
    let again = training_sets(Some(&tree), &opts, &split(Some(0.2), Some(0.3), 7)).unwrap();
    assert_eq!(
        again.test.files, a.test.files,
        "the same seed, the same split"
    );
    let other = training_sets(Some(&tree), &opts, &split(Some(0.2), Some(0.3), 8)).unwrap();
    assert_ne!(
        other.test.files, a.test.files,
        "another seed, another split"
    );

    // train/ + validation/ + test/: the folders are the sets.
    let three = dir.path().join("three");
    split_folders(&three, &["train", "validation", "test"], &["ant", "bee"], 4);
    let s = training_sets(Some(&three), &opts, &split(None, None, 0)).unwrap();
    assert_eq!(
        (s.train_idx.len(), s.val_idx.len(), s.test.len()),
        (8, 8, 8)
    );
    assert!(s
        .val_idx
        .iter()
        .all(|&i| s.train.files[i].starts_with(three.join("validation"))));
    let msg = training_sets(Some(&three), &opts, &split(Some(0.1), None, 0))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("--val-split") && msg.contains("validation/"),
        "{msg}"
    );
    let msg = training_sets(Some(&three), &opts, &split(None, Some(0.2), 0))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("--test-split") && msg.contains("test set of its own"),
        "{msg}"
    );

    // train/ + validation/ without test/: --test-split draws from train/.
    let two = dir.path().join("two");
    split_folders(&two, &["train", "validation"], &["ant", "bee"], 5);
    let msg = training_sets(Some(&two), &opts, &split(None, None, 0))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no separate test split"), "{msg}");
    let s = training_sets(Some(&two), &opts, &split(None, Some(0.2), 0)).unwrap();
    assert_eq!(
        (s.train_idx.len(), s.val_idx.len(), s.test.len()),
        (8, 10, 2)
    );
    assert!(s
        .test
        .files
        .iter()
        .all(|f| f.starts_with(two.join("train"))));

    // The class lists of the split folders must agree.
    split_folders(&two, &["validation"], &["cat"], 1);
    let msg = training_sets(Some(&two), &opts, &split(None, Some(0.2), 0))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("train/ and validation/ hold different classes"),
        "{msg}"
    );
    assert!(msg.contains("only in validation/: [cat]"), "{msg}");
}

/// The peak resident memory (KB) of `trainer extract` over `data`, from
/// the kernel's accounting of that one child (`wait4`'s `ru_maxrss`).
#[allow(clippy::zombie_processes)] // reaped by wait4, not by Child::wait
fn extract_peak_kb(data: &Path, weights: &Path, out: &Path, cache: &Path) -> i64 {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args([
            "extract",
            "--model",
            "mobilenet",
            "--alpha",
            "0.25",
            "--device",
            "cpu",
        ])
        .args([
            "--image-size",
            "224",
            "--pooling",
            "avg",
            "--batch-size",
            "4",
        ])
        .arg("--weights")
        .arg(weights)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .env("THAW_CACHE_DIR", cache)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("trainer runs");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "extract failed"
    );
    usage.ru_maxrss
}

#[test]
fn peak_memory_does_not_grow_with_the_number_of_images() {
    let dir = TempDir::new("bounded-memory");
    let weights = small_weights(dir.path(), 1);
    // 400x300 photos: 360 KB each decoded and 147 KB resized to 224, so
    // keeping the extra 150 images of the larger set would add 54 MB, or
    // 22 MB once resized. Batches of 4: the decoding queue (4 batches
    // ahead) is full in both runs.
    let make = |name: &str, n: u32| {
        let root = dir.path().join(name);
        for class in ["a", "b"] {
            std::fs::create_dir_all(root.join(class)).unwrap();
        }
        let base = photo(None, 400, 300);
        for k in 0..n {
            let mut img = base.clone();
            img.get_pixel_mut(k % 400, k / 400).0 = [k as u8, 0, 0];
            let class = if k % 2 == 0 { "a" } else { "b" };
            img.save(root.join(format!("{class}/{k:04}.png"))).unwrap();
        }
        root
    };
    let (small, large) = (make("small", 50), make("large", 200));
    let cache = dir.path().join("cache");
    let peak_small = extract_peak_kb(&small, &weights, &dir.path().join("s.npy"), &cache);
    let peak_large = extract_peak_kb(&large, &weights, &dir.path().join("l.npy"), &cache);
    println!("peak RSS: 50 images {peak_small} KB, 200 images {peak_large} KB");
    assert!(
        peak_large < peak_small + 10 * 1024,
        "peak memory grew by {} KB from 50 to 200 images",
        peak_large - peak_small
    );
}

#[test]
fn train_predict_and_evaluate_on_a_folder_of_photos() {
    let dir = TempDir::new("photo-run");
    let d = dir.path();
    let weights = small_weights(d, 2);
    let photos = d.join("photos");
    for (c, class) in ["cat", "dog"].iter().enumerate() {
        std::fs::create_dir_all(photos.join(class)).unwrap();
        for k in 0..10u32 {
            let img = RgbImage::from_fn(48 + k, 36, |x, y| {
                image::Rgb([(x * 5) as u8, (y * 7) as u8, (c as u32 * 200 + k) as u8])
            });
            img.save(photos.join(format!("{class}/{k}.png"))).unwrap();
        }
    }
    std::fs::write(photos.join("dog/broken.jpg"), b"not a photo").unwrap();
    let (out, cache) = (d.join("m.safetensors"), d.join("cache"));
    let split = ["--test-split", "0.25", "--val-split", "0.2"];
    let refused = common::train_small(&photos, &weights, &out, &split, &cache);
    common::assert_refused(refused, &["broken.jpg", "--skip-bad-images"]);
    let mut args = split.to_vec();
    args.push("--skip-bad-images");
    let (code, err) = common::train_small(&photos, &weights, &out, &args, &cache);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("split with seed 0: 11 for training, 4 for validation, 5 for testing"),
        "{err}"
    );
    let record = std::fs::read_to_string(trainer::train::run_record::path(&out)).unwrap();
    assert!(
        record.contains("broken.jpg") && record.contains("\"test_split\": 0.25"),
        "{record}"
    );
    let model = trainer::train::load_model(&out).unwrap();
    assert_eq!(model.meta.classes, vec!["cat", "dog"]);
    assert_eq!(model.meta.image_size, 32);
    // Fine-tuning reads the photos from disk too: through the activation
    // cache, and end to end (--no-cache) with the flips made on the fly.
    for extra in [&[][..], &["--no-cache", "--flip"][..]] {
        let mut tune = args.clone();
        tune.extend(["--fine-tune", "conv_dw_13", "--fine-tune-epochs", "1"]);
        tune.extend(extra);
        let tuned = d.join("tuned.safetensors");
        let (code, err) = common::train_small(&photos, &weights, &tuned, &tune, &cache);
        println!("{err}");
        assert_eq!(code, Some(0), "{extra:?}: {err}");
        assert!(
            err.contains("fine-tune epoch") || err.contains("fine-tuning"),
            "{err}"
        );
    }

    // predict on the folder: a CSV beside it, one row per readable image.
    let run = |extra: &[&str]| {
        let mut args = vec![
            "predict",
            "--model-file",
            common::s(&out),
            "--device",
            "cpu",
        ];
        args.extend(extra);
        common::run_trainer(&args, &cache)
    };
    let (code, _, err) = run(&[common::s(&photos)]);
    assert_eq!(code, Some(1), "unreadable files are refused: {err}");
    let (code, _, err) = run(&[common::s(&photos), "--skip-bad-images"]);
    assert_eq!(code, Some(0), "{err}");
    let csv = std::fs::read_to_string(d.join("photos.predictions.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "file,class,probability");
    assert_eq!(lines.len(), 21, "{csv}");
    assert!(lines[1].starts_with("cat/0.png,"), "{csv}");
    for line in &lines[1..] {
        let fields: Vec<&str> = line.split(',').collect();
        assert!(fields[1] == "cat" || fields[1] == "dog", "{line}");
        let p: f32 = fields[2].parse().unwrap();
        assert!((0.5..=1.0).contains(&p), "{line}");
    }
    // Never written over (or into) an input.
    let inside = photos.join("cat/out.csv");
    let (code, _, err) = run(&[
        common::s(&photos),
        "--skip-bad-images",
        "--out",
        common::s(&inside),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("lies inside") && !inside.exists(), "{err}");
    let one = photos.join("cat/3.png");
    let (code, _, err) = run(&[common::s(&one), "--out", common::s(&one)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(image::open(&one).is_ok(), "the input image is intact");

    // evaluate --data takes the folder (one class tree: all of it).
    let (code, stdout, err) = common::run_trainer(
        &[
            "evaluate",
            "--model-file",
            common::s(&out),
            "--data",
            common::s(&photos),
        ]
        .into_iter()
        .chain(["--device", "cpu", "--skip-bad-images"])
        .collect::<Vec<_>>(),
        &cache,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(stdout.contains("evaluated 20 images"), "{stdout}");
}
