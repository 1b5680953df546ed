//! The PyTorch checkpoint reader on arbitrary bytes: legacy stream, zip
//! (torch.save) and a wheel holding a .pth.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = weights::pytorch::parse_pytorch_state_dict(Path::new("fuzz.pth"), data);
});
