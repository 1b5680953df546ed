//! The safetensors reader on arbitrary bytes, then, as a model file is read,
//! its `__metadata__` (format, model, classes JSON, sizes, head).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    if let Ok((_tensors, metadata)) = weights::safetensors_file::parse_safetensors(path, data) {
        let _ = trainer::train::model_file::ModelMeta::from_map(path, &metadata);
    }
});
