//! The .npy reader on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = trainer::npy::parse(Path::new("fuzz.npy"), data);
});
