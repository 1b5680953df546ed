//! Writes seeded weights (`weights::seeded::generate`) for a backbone
//! without its top, as .safetensors, for `trainer extract --weights`: GPU
//! throughput runs need weights, and Keras's ImageNet weights cannot be
//! downloaded on the GPU machine (`tests/gpu/run_on_device.sh` uses this).
//!
//! Usage: `seeded_weights vgg16|resnet50 OUT.safetensors [SEED]` (seed 0 by default).

use std::collections::BTreeMap;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(model), Some(out)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: seeded_weights vgg16|resnet50 OUT.safetensors [SEED]");
        std::process::exit(2);
    };
    let seed: u64 = args
        .get(3)
        .map_or(0, |s| s.parse().expect("SEED is a number"));
    let options = models::ModelOptions {
        include_top: false,
        ..models::ModelOptions::default()
    };
    let net = models::build(model, &options).unwrap_or_else(|e| panic!("{model}: {e}"));
    let tensors = weights::seeded::generate(&net.weight_spec(), seed);
    weights::save_safetensors(out, &tensors, &BTreeMap::new())
        .unwrap_or_else(|e| panic!("{out}: {e}"));
    eprintln!(
        "{model}: {} seeded tensors (seed {seed}) written to {out}",
        tensors.len()
    );
}
