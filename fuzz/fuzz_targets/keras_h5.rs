//! The Keras legacy .h5 converter on arbitrary bytes, against the tiny
//! model of tests/fixtures/keras/gen_tiny_h5.py (the seeds are its files, so
//! mutations reach the weight-matching code, not only the HDF5 reader).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use weights::WeightSpec;

fuzz_target!(|data: &[u8]| {
    let spec = [
        WeightSpec::new("conv_a/kernel", &[3, 3, 3, 4]),
        WeightSpec::new("conv_a/bias", &[4]),
        WeightSpec::new("bn_a/gamma", &[4]),
        WeightSpec::new("bn_a/beta", &[4]),
        WeightSpec::new("bn_a/moving_mean", &[4]),
        WeightSpec::new("bn_a/moving_variance", &[4]),
        WeightSpec::new("conv_b/kernel", &[3, 3, 4, 5]),
        WeightSpec::new("conv_b/bias", &[5]),
        WeightSpec::new("dense_out/kernel", &[5, 3]),
        WeightSpec::new("dense_out/bias", &[3]),
    ];
    let _ = weights::keras_h5::convert_keras_h5_bytes(
        Path::new("fuzz.h5"),
        data.to_vec(),
        &spec,
        weights::LayerMatch::ByName,
    );
});
