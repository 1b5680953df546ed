//! The dataset readers on files written in their formats here: CIFAR-10
//! binary batches (built byte by byte from the format's definition, not by
//! our own encoder), image folders of PNG and JPEG files written by the
//! `image` crate, the errors on bad input, `preprocess_data`, and a few
//! hundred real CIFAR-10 JPEGs from ../shared/data when present.

mod common;

use common::{repo_root, TempDir};
use std::path::Path;
use trainer::data::{self, cifar_binary, decode, image_folder, Dataset, Split, IMAGE_BYTES};
use trainer::Error;

/// The pixel value of image `i` at row `y`, column `x`, channel `c` in the
/// synthetic batches: distinct across images, rows, columns and channels.
fn pixel(i: usize, y: usize, x: usize, c: usize) -> u8 {
    ((i * 37 + y * 7 + x * 3 + c * 101) % 256) as u8
}

/// CIFAR-10 binary records written straight from the format's definition:
/// label byte, then the R plane, the G plane, the B plane, each 32x32
/// row-major. Image `first + k` gets label `labels[k]`.
fn cifar_records(first: usize, labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, &label) in labels.iter().enumerate() {
        out.push(label);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    out.push(pixel(first + k, y, x, c));
                }
            }
        }
    }
    out
}

fn check_pixels(ds: &Dataset, first_index: usize) {
    for i in 0..ds.len() {
        let img = ds.image(i);
        for (y, x) in [(0, 0), (0, 31), (31, 0), (17, 5), (31, 31)] {
            for c in 0..3 {
                assert_eq!(
                    img[(y * 32 + x) * 3 + c],
                    pixel(first_index + i, y, x, c),
                    "image {i} pixel ({y},{x}) channel {c}"
                );
            }
        }
    }
}

fn err_text(e: Error) -> String {
    e.to_string()
}

#[test]
fn cifar_binary_batch_reads_as_nhwc_in_file_order() {
    let dir = TempDir::new("cifar-file");
    let path = dir.path().join("my_batch.bin");
    std::fs::write(&path, cifar_records(0, &[3, 0, 9, 5])).unwrap();
    let ds = data::load(&path, Split::Train).unwrap();
    assert_eq!(ds.len(), 4);
    assert_eq!(ds.images.len(), 4 * 32 * 32 * 3);
    assert_eq!(ds.labels, vec![3, 0, 9, 5]);
    assert_eq!(ds.classes[0], "airplane");
    assert_eq!(ds.classes[9], "truck");
    check_pixels(&ds, 0);
    // Every byte, not just samples: image i, (y, x, c) at offset ((i*32+y)*32+x)*3+c.
    for i in 0..4 {
        for y in 0..32 {
            for x in 0..32 {
                for c in 0..3 {
                    assert_eq!(
                        ds.images[((i * 32 + y) * 32 + x) * 3 + c],
                        pixel(i, y, x, c)
                    );
                }
            }
        }
    }
    // Our encoder is the exact inverse (written for users' own small batches).
    assert_eq!(
        cifar_binary::encode(&ds.images, &ds.labels).unwrap(),
        std::fs::read(&path).unwrap()
    );
}

#[test]
fn cifar_binary_directory_reads_batches_1_to_5_then_test() {
    let dir = TempDir::new("cifar-dir");
    // As the official archive unpacks: DIR/cifar-10-batches-bin/*.bin.
    let root = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&root).unwrap();
    for b in 0..5 {
        let labels = [b as u8, (b + 5) as u8];
        std::fs::write(
            root.join(format!("data_batch_{}.bin", b + 1)),
            cifar_records(2 * b, &labels),
        )
        .unwrap();
    }
    std::fs::write(root.join("test_batch.bin"), cifar_records(100, &[7, 8, 1])).unwrap();
    let names = "plane\ncar\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    std::fs::write(root.join("batches.meta.txt"), names).unwrap();

    assert_eq!(
        data::detect(dir.path()).unwrap(),
        data::Format::CifarBinaryDir
    );
    let train = data::load(dir.path(), Split::Train).unwrap();
    assert_eq!(train.len(), 10);
    assert_eq!(train.labels, vec![0, 5, 1, 6, 2, 7, 3, 8, 4, 9]);
    check_pixels(&train, 0);
    assert_eq!(train.classes[0], "plane");
    assert_eq!(train.classes.len(), 10);
    assert_eq!(train.class_counts(), vec![1; 10]);

    let test = data::load(&root, Split::Test).unwrap();
    assert_eq!(test.labels, vec![7, 8, 1]);
    check_pixels(&test, 100);
}

#[test]
fn cifar_binary_truncated_file_is_a_clear_error() {
    let dir = TempDir::new("cifar-trunc");
    let path = dir.path().join("data_batch_1.bin");
    let mut bytes = cifar_records(0, &[1, 2]);
    bytes.truncate(2 * 3073 - 100);
    std::fs::write(&path, &bytes).unwrap();
    let msg = err_text(cifar_binary::read_file(&path).unwrap_err());
    assert!(msg.contains("data_batch_1.bin"), "{msg}");
    assert!(msg.contains("6046 bytes, not a multiple of 3073"), "{msg}");
    assert!(msg.contains("truncated"), "{msg}");
    assert!(msg.contains("re-download"), "{msg}");

    std::fs::write(&path, b"").unwrap();
    let msg = err_text(cifar_binary::read_file(&path).unwrap_err());
    assert!(msg.contains("is empty"), "{msg}");
}

#[test]
fn cifar_binary_label_out_of_range_is_a_clear_error() {
    let dir = TempDir::new("cifar-label");
    let path = dir.path().join("test_batch.bin");
    std::fs::write(&path, cifar_records(0, &[4, 12, 0])).unwrap();
    let msg = err_text(data::load(dir.path(), Split::Test).unwrap_err());
    assert!(msg.contains("test_batch.bin"), "{msg}");
    assert!(
        msg.contains("record 1 (byte offset 3073) has label 12"),
        "{msg}"
    );
    assert!(msg.contains("0..9"), "{msg}");
}

#[test]
fn cifar_binary_missing_batch_names_it() {
    let dir = TempDir::new("cifar-missing");
    for b in [1, 2, 4, 5] {
        std::fs::write(
            dir.path().join(format!("data_batch_{b}.bin")),
            cifar_records(0, &[1]),
        )
        .unwrap();
    }
    let msg = err_text(data::load(dir.path(), Split::Train).unwrap_err());
    assert!(msg.contains("data_batch_3.bin is missing"), "{msg}");
    let msg = err_text(data::load(dir.path(), Split::Test).unwrap_err());
    assert!(msg.contains("test_batch.bin is missing"), "{msg}");
}

#[test]
fn data_paths_that_hold_nothing_usable_are_clear_errors() {
    let dir = TempDir::new("detect");
    let msg = err_text(data::load(&dir.path().join("nope"), Split::Train).unwrap_err());
    assert!(msg.contains("does not exist"), "{msg}");
    let msg = err_text(data::load(dir.path(), Split::Train).unwrap_err());
    assert!(msg.contains("neither CIFAR-10 binary batches"), "{msg}");
}

/// A 32x32 RGB image whose pixels depend on (seed, x, y, c).
fn synthetic_rgb(seed: u8) -> image::RgbImage {
    image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([
            seed.wrapping_mul(31).wrapping_add(x as u8 * 5),
            seed.wrapping_add(y as u8 * 7),
            (x as u8 ^ y as u8).wrapping_mul(3).wrapping_add(seed),
        ])
    })
}

fn save_png(path: &Path, img: &image::RgbImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

fn save_jpeg(path: &Path, img: &image::RgbImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(f, 100);
    enc.encode_image(img).unwrap();
}

#[test]
fn image_folder_sorts_classes_and_files_and_decodes_png_and_jpeg() {
    let dir = TempDir::new("folder");
    let d = dir.path();
    // Written out of order on purpose: classes and files must come out sorted.
    save_png(&d.join("dog/b.png"), &synthetic_rgb(5));
    save_png(&d.join("dog/a.png"), &synthetic_rgb(4));
    save_png(&d.join("airplane/x.png"), &synthetic_rgb(1));
    save_png(&d.join("cat/0001.png"), &synthetic_rgb(3));
    save_png(&d.join("cat/0000.png"), &synthetic_rgb(2));
    // A smooth image, so JPEG at quality 100 is close to the original.
    let smooth = image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([100 + x as u8, 50 + y as u8, 200 - x as u8])
    });
    save_jpeg(&d.join("cat/0002.jpg"), &smooth);
    std::fs::write(d.join("cat/.DS_Store"), b"junk").unwrap(); // hidden: skipped
    std::fs::write(d.join("README.txt"), b"loose files at the top are ignored").unwrap();

    assert_eq!(data::detect(d).unwrap(), data::Format::ImageFolder);
    let ds = data::load(d, Split::Train).unwrap();
    assert_eq!(ds.classes, vec!["airplane", "cat", "dog"]);
    assert_eq!(ds.labels, vec![0, 1, 1, 1, 2, 2]);
    // PNG is lossless: exact pixels, in sorted order.
    for (i, seed) in [(0, 1), (1, 2), (2, 3), (4, 4), (5, 5)] {
        assert_eq!(
            ds.image(i),
            synthetic_rgb(seed).as_raw().as_slice(),
            "image {i}"
        );
    }
    // JPEG is lossy: close to the original on a smooth image.
    let jpeg = ds.image(3);
    let max_diff = jpeg
        .iter()
        .zip(smooth.as_raw())
        .map(|(&a, &b)| (a as i32 - b as i32).abs())
        .max()
        .unwrap();
    assert!(max_diff <= 6, "JPEG pixels off by up to {max_diff}");
}

#[test]
fn image_folder_train_and_test_splits() {
    let dir = TempDir::new("folder-split");
    let d = dir.path();
    for (split, n) in [("train", 3u8), ("test", 2u8)] {
        for class in ["bird", "ant"] {
            for k in 0..n {
                save_png(
                    &d.join(format!("{split}/{class}/{k}.png")),
                    &synthetic_rgb(k),
                );
            }
        }
    }
    let train = data::load(d, Split::Train).unwrap();
    let test = data::load(d, Split::Test).unwrap();
    assert_eq!(train.classes, vec!["ant", "bird"]);
    assert_eq!(test.classes, train.classes);
    assert_eq!(train.labels, vec![0, 0, 0, 1, 1, 1]);
    assert_eq!(test.labels, vec![0, 0, 1, 1]);
    assert_eq!(test.image(3), synthetic_rgb(1).as_raw().as_slice());
}

#[test]
fn image_folder_train_and_test_with_different_classes_is_a_clear_error() {
    let dir = TempDir::new("folder-classes");
    let d = dir.path();
    for class in ["cat", "dog", "horse"] {
        save_png(&d.join(format!("train/{class}/0.png")), &synthetic_rgb(0));
    }
    for class in ["cat", "dog", "frog"] {
        save_png(&d.join(format!("test/{class}/0.png")), &synthetic_rgb(0));
    }
    let msg = err_text(data::load(d, Split::Train).unwrap_err());
    assert!(
        msg.contains("train/ and test/ hold different classes"),
        "{msg}"
    );
    assert!(msg.contains("only in train/: [horse]"), "{msg}");
    assert!(msg.contains("only in test/: [frog]"), "{msg}");
}

#[test]
fn image_folder_with_only_train_says_what_to_do() {
    let dir = TempDir::new("folder-onlytrain");
    save_png(&dir.path().join("train/cat/0.png"), &synthetic_rgb(0));
    let msg = err_text(data::load(dir.path(), Split::Test).unwrap_err());
    assert!(msg.contains("holds train/ but no test/"), "{msg}");
}

#[test]
fn image_folder_non_image_file_is_named() {
    let dir = TempDir::new("folder-nonimage");
    let d = dir.path();
    save_png(&d.join("cat/0.png"), &synthetic_rgb(0));
    save_png(&d.join("dog/0.png"), &synthetic_rgb(1));
    std::fs::write(d.join("dog/notes.txt"), b"these are dogs").unwrap();
    let msg = err_text(data::load(d, Split::Train).unwrap_err());
    assert!(msg.contains("notes.txt"), "{msg}");
    assert!(msg.contains("is not an image"), "{msg}");
}

#[test]
fn image_folder_corrupt_image_and_wrong_size_are_named() {
    let dir = TempDir::new("folder-bad");
    let d = dir.path();
    save_png(&d.join("cat/0.png"), &synthetic_rgb(0));
    // A PNG signature followed by garbage.
    std::fs::write(d.join("cat/1.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let msg = err_text(data::load(d, Split::Train).unwrap_err());
    assert!(
        msg.contains("1.png") && msg.contains("cannot be decoded"),
        "{msg}"
    );

    std::fs::remove_file(d.join("cat/1.png")).unwrap();
    image::RgbImage::new(16, 24)
        .save(d.join("cat/2.png"))
        .unwrap();
    let msg = err_text(data::load(d, Split::Train).unwrap_err());
    assert!(msg.contains("2.png") && msg.contains("is 16x24"), "{msg}");
    assert!(msg.contains("32x32"), "{msg}");

    std::fs::remove_file(d.join("cat/2.png")).unwrap();
    std::fs::create_dir_all(d.join("empty_class")).unwrap();
    let msg = err_text(data::load(d, Split::Train).unwrap_err());
    assert!(
        msg.contains("empty_class") && msg.contains("no images"),
        "{msg}"
    );
}

/// The one decoder's policy: every colour type becomes 8-bit RGB (gray
/// repeated, alpha dropped, 16-bit scaled by 255/65535), and the format is
/// told by the content, not the name; the same for the dataset reader and
/// for the single images of `evaluate`/`predict` (`SizeRule::Any`).
#[test]
fn every_colour_type_decodes_to_rgb8_and_the_format_is_told_by_content() {
    let dir = TempDir::new("folder-colour");
    let d = dir.path();
    let gray = image::GrayImage::from_fn(32, 32, |x, y| image::Luma([(x * 8 + y) as u8]));
    std::fs::create_dir_all(d.join("a")).unwrap();
    gray.save_with_format(d.join("a/0_gray.png"), image::ImageFormat::Png)
        .unwrap();
    let rgba = image::RgbaImage::from_fn(32, 32, |x, y| {
        image::Rgba([x as u8, y as u8, 200, (x * y) as u8])
    });
    rgba.save_with_format(d.join("a/1_rgba.png"), image::ImageFormat::Png)
        .unwrap();
    // 16-bit grayscale: 257 * v is v in 8 bits, exactly.
    let gray16 = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(32, 32, |x, _| {
        image::Luma([257 * x as u16 * 7])
    });
    image::DynamicImage::ImageLuma16(gray16)
        .save_with_format(d.join("a/2_gray16.png"), image::ImageFormat::Png)
        .unwrap();
    // An RGB PNG under a JPEG name: read as the PNG it is, pixel for pixel.
    let rgb = synthetic_rgb(5);
    rgb.save_with_format(d.join("a/3_png_named.jpg"), image::ImageFormat::Png)
        .unwrap();
    save_png(&d.join("b/0.png"), &synthetic_rgb(6));

    let want_gray: Vec<u8> = gray.as_raw().iter().flat_map(|&v| [v, v, v]).collect();
    let want_rgba: Vec<u8> = rgba
        .as_raw()
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    let want_gray16: Vec<u8> = (0..32 * 32).flat_map(|i| [(i % 32) as u8 * 7; 3]).collect();
    let ds = image_folder::read(d, Split::Train).unwrap();
    assert_eq!(ds.labels, vec![0, 0, 0, 0, 1]);
    assert_eq!(
        ds.image(0),
        &want_gray[..],
        "grayscale: the value in R, G and B"
    );
    assert_eq!(
        ds.image(1),
        &want_rgba[..],
        "RGBA: alpha dropped, not blended"
    );
    assert_eq!(ds.image(2), &want_gray16[..], "16-bit: v * 255 / 65535");
    assert_eq!(ds.image(3), rgb.as_raw().as_slice(), "a PNG named .jpg");

    // The single images of evaluate/predict go through the same decoder.
    for (file, want) in [
        ("a/0_gray.png", &want_gray),
        ("a/1_rgba.png", &want_rgba),
        ("a/3_png_named.jpg", &rgb.as_raw().to_vec()),
    ] {
        let got = trainer::train::evaluate::read_image_32(&d.join(file)).unwrap();
        assert_eq!(&got, want, "{file}");
        let any = decode::read_rgb8(&d.join(file), decode::SizeRule::Any).unwrap();
        assert_eq!(any.as_raw(), want, "{file}");
    }
}

/// The exact-size rule refuses other sizes from the header; the any-size
/// rule takes them, up to its largest side.
#[test]
fn size_rules_are_checked_from_the_header() {
    let dir = TempDir::new("decode-sizes");
    let p = dir.path().join("wide.png");
    image::GrayImage::new(40, 8).save(&p).unwrap();
    let msg = err_text(decode::read_rgb8(&p, decode::SizeRule::Exactly(32)).unwrap_err());
    assert!(msg.contains("wide.png") && msg.contains("is 40x8"), "{msg}");
    let img = decode::read_rgb8(&p, decode::SizeRule::Any).unwrap();
    assert_eq!(img.dimensions(), (40, 8));
}

#[test]
fn the_first_bad_file_in_input_order_is_reported() {
    // Decoding is parallel; the error must still be the first bad file.
    let dir = TempDir::new("folder-first");
    let d = dir.path();
    for k in 0..40 {
        save_png(&d.join(format!("a/{k:03}.png")), &synthetic_rgb(k as u8));
    }
    std::fs::write(d.join("a/010.png"), b"bad").unwrap();
    std::fs::write(d.join("a/030.png"), b"bad").unwrap();
    let msg = err_text(image_folder::read(d, Split::Train).unwrap_err());
    assert!(msg.contains("010.png"), "{msg}");
}

#[test]
fn preprocess_data_is_caffe_mode_and_one_hot() {
    // Two images: image 0 all (R,G,B) = (10, 20, 30), image 1 all (255, 0, 128).
    let mut images = Vec::new();
    for _ in 0..1024 {
        images.extend_from_slice(&[10, 20, 30]);
    }
    for _ in 0..1024 {
        images.extend_from_slice(&[255, 0, 128]);
    }
    let (x, y) = trainer::preprocess_data(&images, &[2, 9], 10).unwrap();
    assert_eq!(x.shape(), &[2, 32, 32, 3]);
    assert_eq!(y.shape(), &[2, 10]);
    let xv = x.as_slice::<f32>().unwrap();
    // caffe: BGR order, minus (103.939, 116.779, 123.68).
    assert_eq!(&xv[..3], &[30.0 - 103.939, 20.0 - 116.779, 10.0 - 123.68]);
    let last = &xv[xv.len() - 3..];
    assert_eq!(last, &[128.0 - 103.939, 0.0 - 116.779, 255.0 - 123.68]);
    let yv = y.as_slice::<f32>().unwrap();
    let mut expected = vec![0f32; 20];
    expected[2] = 1.0;
    expected[10 + 9] = 1.0;
    assert_eq!(yv, expected.as_slice());

    let msg = trainer::preprocess_data(&images[..100], &[2, 9], 10)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("preprocess_data") && msg.contains("100 bytes"),
        "{msg}"
    );
    let msg = trainer::preprocess_data(&images, &[2, 10], 10)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("label 10"), "{msg}");
}

/// A few hundred real CIFAR-10 JPEGs (the shared JPEG copy): 30 test images
/// of each class, unpacked with `tar` into a temp folder.
#[test]
fn real_cifar10_jpegs_from_shared_data() {
    let archive = repo_root().join("../shared/data/cifar10-jpeg.tar.xz");
    if !archive.is_file() {
        common::skipped(format_args!("{} not found", archive.display()));
        return;
    }
    let dir = TempDir::new("real-jpeg");
    let status = std::process::Command::new("tar")
        .arg("-xJf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .arg("--wildcards")
        .arg("cifar10-jpeg/test/*/00[0-2]?.jpg")
        .arg("cifar10-jpeg/train/*/000?.jpg")
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => {
            common::skipped(format_args!("could not unpack with tar -xJf: {other:?}"));
            return;
        }
    }
    let root = dir.path().join("cifar10-jpeg");
    let t = std::time::Instant::now();
    let test = data::load(&root, Split::Test).unwrap();
    let train = data::load(&root, Split::Train).unwrap();
    println!(
        "read {} test + {} train real JPEGs in {:.3} s",
        test.len(),
        train.len(),
        t.elapsed().as_secs_f64()
    );
    let names: Vec<String> = data::CIFAR10_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(test.classes, names);
    assert_eq!(test.len(), 300);
    assert_eq!(test.class_counts(), vec![30; 10]);
    assert_eq!(train.len(), 100);
    assert_eq!(test.images.len(), 300 * IMAGE_BYTES);
    // Real photos: a plausible mean brightness and real variation.
    let mean = test.images.iter().map(|&p| p as f64).sum::<f64>() / test.images.len() as f64;
    assert!((60.0..200.0).contains(&mean), "mean pixel {mean}");
    let distinct: std::collections::HashSet<&[u8]> =
        (0..test.len()).map(|i| test.image(i)).collect();
    assert_eq!(distinct.len(), 300, "every image should differ");
}
