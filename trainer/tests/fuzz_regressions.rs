//! Bounds the fuzz targets in `fuzz/` check, kept in the ordinary test
//! suite so that CI checks them without the fuzzer.

use std::path::Path;
use trainer::data::decode;

/// A PNG whose header claims `width` x `height` RGB pixels, with one empty
/// IDAT chunk: as cheap to make as it would be costly to decode.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        png.extend_from_slice(&crc.sum().to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[]);
    chunk(b"IEND", &[]);
    png
}

/// An image file whose header claims 12,000 x 12,000 pixels (432 MB
/// decoded) is refused from its header, by its size, before the decoder
/// allocates anything, under both size rules; a 32x32 header still reaches
/// the decoder.
#[test]
fn image_header_claiming_a_huge_size_is_refused_before_decoding() {
    let dir = std::env::temp_dir().join(format!("thaw-fuzz-regression-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = vec![0u8; 32 * 32 * 3];

    let huge = dir.join("huge.png");
    std::fs::write(&huge, png_header_only(12_000, 12_000)).unwrap();
    let err = decode::decode_image(&huge, &mut out)
        .unwrap_err()
        .to_string();
    println!("{err}");
    assert!(
        err.contains("huge.png") && err.contains("is 12000x12000"),
        "{err}"
    );

    // The any-size rule of evaluate's and predict's single images refuses it too.
    let err = decode::read_rgb8(&huge, decode::SizeRule::Any)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is 12000x12000") && err.contains("up to 8192x8192"),
        "{err}"
    );

    let small = dir.join("small.png");
    std::fs::write(&small, png_header_only(32, 32)).unwrap();
    let err = decode::decode_image(&small, &mut out)
        .unwrap_err()
        .to_string();
    println!("{err}");
    assert!(
        err.contains("small.png") && err.contains("cannot be decoded as Png"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

/// The seed corpora of `fuzz/` are valid files of their formats (so the
/// fuzzer starts inside each format, not at its first check).
#[test]
fn fuzz_seeds_are_valid_files() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let seeds = |target: &str| {
        let mut v: Vec<_> = std::fs::read_dir(corpus.join(target))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        assert!(!v.is_empty(), "no seeds for {target}");
        v
    };
    for p in seeds("safetensors") {
        let (_, meta) = weights::load_safetensors(&p).unwrap();
        if !meta.is_empty() {
            trainer::train::model_file::ModelMeta::from_map(&p, &meta).unwrap();
        }
    }
    for p in seeds("npy") {
        trainer::npy::read(&p).unwrap();
    }
    for p in seeds("cifar_binary") {
        let bytes = std::fs::read(&p).unwrap();
        trainer::data::cifar_binary::decode(&bytes, &p).unwrap();
    }
    let mut out = vec![0u8; 32 * 32 * 3];
    for p in seeds("image") {
        // Every seed decodes, the grayscale PNG too (read as RGB).
        let r = decode::decode_image(&p, &mut out);
        assert!(r.is_ok(), "{}: {r:?}", p.display());
    }
    for p in seeds("pytorch") {
        assert_eq!(
            weights::read_pytorch_state_dict(&p).unwrap().len(),
            3,
            "{}",
            p.display()
        );
    }
    let tiny = [
        ("conv_a/kernel", &[3, 3, 3, 4][..]),
        ("conv_a/bias", &[4]),
        ("bn_a/gamma", &[4]),
        ("bn_a/beta", &[4]),
        ("bn_a/moving_mean", &[4]),
        ("bn_a/moving_variance", &[4]),
        ("conv_b/kernel", &[3, 3, 4, 5]),
        ("conv_b/bias", &[5]),
        ("dense_out/kernel", &[5, 3]),
        ("dense_out/bias", &[3]),
    ]
    .map(|(n, s)| weights::WeightSpec::new(n, s));
    for p in seeds("keras_h5") {
        weights::convert_keras_h5(&p, &tiny).unwrap();
    }
}
