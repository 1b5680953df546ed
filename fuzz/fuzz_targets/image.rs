//! Image decoding exactly as the image-folder reader calls it: the bytes
//! are written to a file (one per process, in $TMPDIR) and decoded from there.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("thaw-fuzz-image-{}", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(scratch(), data).expect("writing the fuzz input to $TMPDIR");
    let mut out = [0u8; 32 * 32 * 3];
    let _ = trainer::data::decode::decode_image(scratch(), &mut out);
});
