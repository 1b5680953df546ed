//! The CIFAR-10 binary batch decoder on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = trainer::data::cifar_binary::decode(data, Path::new("fuzz.bin"));
});
