//! thaw's side of the decode + resize row (issue 18): images/s of the
//! trainer's streamed image-folder reader (`trainer::data::stream`: two
//! worker threads, each reading a file, decoding it with the `image` crate
//! and resizing it to S x S with the engine's bilinear resize), over the
//! files of a folder, batch by batch as feature extraction reads them.
//!
//!     cargo run --release -p bench --bin thaw-decode-bench -- FOLDER [--size 224] [--limit 2000]
//!
//! torchvision's side on the same files: `bench/decode_bench.py`.

use std::path::PathBuf;
use std::time::Instant;
use trainer::data::image_folder::files_under;
use trainer::data::stream::{Images, WORKERS};
use trainer::data::Dataset;

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut folder, mut size, mut limit) = (None, 224usize, 2000usize);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> usize {
            let v = args.next().unwrap_or_default();
            v.parse()
                .unwrap_or_else(|_| fail(&format!("{name} wants a whole number, got {v:?}")))
        };
        match a.as_str() {
            "--size" => size = value("--size"),
            "--limit" => limit = value("--limit"),
            _ if folder.is_none() => folder = Some(PathBuf::from(a)),
            _ => fail(&format!("unexpected argument {a:?}")),
        }
    }
    let Some(folder) = folder else {
        fail("usage: thaw-decode-bench FOLDER [--size 224] [--limit 2000]")
    };
    let mut files = files_under(&folder).unwrap_or_else(|e| fail(&e.to_string()));
    files.truncate(limit);
    let n = files.len();
    let ds = Dataset::streamed(size, false, vec![0; n], vec!["x".into()], files);
    let pass = |ds: &Dataset| {
        let start = Instant::now();
        let mut images = 0;
        for batch in Images::from(ds).batches(32) {
            images += batch.unwrap_or_else(|e| fail(&e.to_string())).len() / (size * size * 3);
        }
        (images, start.elapsed().as_secs_f64())
    };
    let warm = ds.subset(&(0..n.min(50)).collect::<Vec<_>>());
    pass(&warm);
    let (images, secs) = pass(&ds);
    println!(
        "thaw stream (image crate decode + engine bilinear resize to {size}), {WORKERS} threads: \
         {images} images in {secs:.2} s = {:.1} images/s",
        images as f64 / secs
    );
}

fn fail(msg: &str) -> ! {
    eprintln!("thaw-decode-bench: {msg}");
    std::process::exit(2)
}
