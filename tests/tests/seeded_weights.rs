//! Seeded full-size weights: bit-identical to the Python twin
//! (`tests/fixtures/keras/seeded.py`), whose samples are in
//! `tests/fixtures/keras/seeded_samples.txt` (written by `gen_seeded_samples.py`).

use std::path::PathBuf;
use weights::seeded::{generate, mapping, value};
use weights::WeightSpec;

/// One model's section of seeded_samples.txt.
struct Samples {
    model: String,
    seed: u64,
    spec: Vec<WeightSpec>,
    top: Vec<bool>,
    /// (weight index, element index, f32 bits).
    samples: Vec<(usize, u64, u32)>,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/keras")
        .join(name)
}

fn read_samples() -> Vec<Samples> {
    let text = std::fs::read_to_string(fixture("seeded_samples.txt")).unwrap();
    let mut out: Vec<Samples> = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[0] {
            "model" => out.push(Samples {
                model: f[1].to_string(),
                seed: f[3].parse().unwrap(),
                spec: vec![],
                top: vec![],
                samples: vec![],
            }),
            "spec" => {
                let m = out.last_mut().unwrap();
                let shape: Vec<usize> = f[2].split(',').map(|d| d.parse().unwrap()).collect();
                m.spec.push(WeightSpec::new(f[1], &shape));
                m.top.push(f.get(3) == Some(&"top"));
            }
            "sample" => out.last_mut().unwrap().samples.push((
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                u32::from_str_radix(f[3], 16).unwrap(),
            )),
            other => panic!("unknown line kind {other}"),
        }
    }
    out
}

#[test]
fn fixture_covers_every_model_and_every_weight() {
    let all = read_samples();
    let names: Vec<&str> = all.iter().map(|m| m.model.as_str()).collect();
    assert_eq!(
        names,
        ["vgg16", "resnet50", "mobilenet", "mobilenet_v2", "vgg19"]
    );
    let counts: Vec<usize> = all.iter().map(|m| m.spec.len()).collect();
    // VGG16: 13 conv + 3 dense layers, kernel and bias each. ResNet50: 53 conv
    // (kernel, bias) + 53 BN (4 each) + predictions (kernel, bias). MobileNet
    // (alpha 1.0): 27 convs (kernel), 27 BN + conv_preds (kernel, bias).
    // MobileNetV2: 52 convs, 52 BN + Logits (kernel, bias). VGG19: 16 conv +
    // 3 dense layers, kernel and bias each.
    assert_eq!(
        counts,
        [
            32,
            53 * 2 + 53 * 4 + 2,
            27 + 27 * 4 + 2,
            52 + 52 * 4 + 2,
            38
        ]
    );
    for m in &all {
        assert!(
            m.samples.len() >= 400,
            "{}: {} samples",
            m.model,
            m.samples.len()
        );
        for t in 0..m.spec.len() {
            assert!(
                m.samples.iter().any(|s| s.0 == t),
                "{}: weight {t} not sampled",
                m.model
            );
        }
    }
}

#[test]
fn every_sample_is_bit_identical_to_python() {
    for m in read_samples() {
        for &(t, i, bits) in &m.samples {
            let v = value(m.seed, t as u64, i, mapping(&m.spec[t]));
            assert_eq!(
                v.to_bits(),
                bits,
                "{} {} element {i}: rust {v:e} ({:08x}), python {:e} ({bits:08x})",
                m.model,
                m.spec[t].name,
                v.to_bits(),
                f32::from_bits(bits)
            );
        }
    }
}

#[test]
fn generate_gives_the_same_bits_for_the_full_size_backbones() {
    for m in read_samples() {
        // The backbone without the top: the tensors Keras and thaw are compared on.
        let n = m.top.iter().position(|&t| t).unwrap_or(m.spec.len());
        assert!(m.top[n..].iter().all(|&t| t), "top weights come last");
        let spec = &m.spec[..n];
        let start = std::time::Instant::now();
        let w = generate(spec, m.seed);
        let total: usize = w.iter().map(|(_, t)| t.numel()).sum();
        eprintln!(
            "{}: generated {} tensors, {total} values in {:.2} s",
            m.model,
            w.len(),
            start.elapsed().as_secs_f64()
        );
        weights::validate(&w, spec).unwrap();
        let mut checked = 0;
        for &(t, i, bits) in m.samples.iter().filter(|s| s.0 < n) {
            let got = w[t].1.as_slice::<f32>().unwrap()[i as usize].to_bits();
            assert_eq!(got, bits, "{} {} element {i}", m.model, m.spec[t].name);
            checked += 1;
        }
        assert!(checked > 300, "{checked}");
        // Same seed, same bits; another seed, other values.
        let again = generate(&spec[..3], m.seed);
        let other = generate(&spec[..3], m.seed + 1);
        for k in 0..3 {
            assert_eq!(
                w[k].1.as_slice::<f32>().unwrap(),
                again[k].1.as_slice::<f32>().unwrap()
            );
            assert_ne!(
                w[k].1.as_slice::<f32>().unwrap(),
                other[k].1.as_slice::<f32>().unwrap()
            );
        }
    }
}

#[test]
fn values_have_the_documented_ranges_and_scales() {
    let spec = vec![
        WeightSpec::new("c/kernel", &[3, 3, 64, 128]),
        WeightSpec::new("c/bias", &[4096]),
        WeightSpec::new("bn/gamma", &[4096]),
        WeightSpec::new("bn/beta", &[4096]),
        WeightSpec::new("bn/moving_mean", &[4096]),
        WeightSpec::new("bn/moving_variance", &[4096]),
        WeightSpec::new("conv2_block1_3_bn/gamma", &[4096]),
        WeightSpec::new("conv_dw_1/depthwise_kernel", &[3, 3, 512, 1]),
    ];
    let w = generate(&spec, 3);
    let stats = |k: usize| {
        let v = w[k].1.as_slice::<f32>().unwrap();
        let lo = v.iter().cloned().fold(f32::INFINITY, f32::min);
        let hi = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        (lo, hi, mean, var)
    };
    // He-scaled uniform: variance 2 / fan_in, fan_in = 3·3·64.
    let (lo, hi, mean, var) = stats(0);
    let bound = (3.0f64 * 2.0 / 576.0).sqrt() as f32;
    assert!(
        lo >= -bound && hi < bound && lo < -0.95 * bound && hi > 0.95 * bound,
        "{lo} {hi}"
    );
    assert!(
        mean.abs() < 0.002 && (var / (2.0 / 576.0) - 1.0).abs() < 0.02,
        "{mean} {var}"
    );
    // A depthwise kernel: fan_in = 3·3 (no channel mixing), not 3·3·512.
    let (lo, hi, mean, var) = stats(7);
    let bound = (3.0f64 * 2.0 / 9.0).sqrt() as f32;
    assert!(
        lo >= -bound && hi < bound && lo < -0.95 * bound && hi > 0.95 * bound,
        "{lo} {hi}"
    );
    // 4,608 values of standard deviation 0.47: the mean's standard error is 0.007.
    assert!(
        mean.abs() < 0.03 && (var / (2.0 / 9.0) - 1.0).abs() < 0.03,
        "{mean} {var}"
    );
    for (k, lo_want, hi_want) in [
        (1, -0.1, 0.1),
        (2, 0.5, 1.5),
        (3, -0.1, 0.1),
        (4, -0.1, 0.1),
        (5, 0.5, 2.0),
        (6, 0.1, 0.3),
    ] {
        let (lo, hi, _, _) = stats(k);
        let span = hi_want - lo_want;
        assert!(
            lo >= lo_want && hi < hi_want,
            "{}: [{lo}, {hi}]",
            spec[k].name
        );
        assert!(
            lo < lo_want + 0.01 * span && hi > hi_want - 0.01 * span,
            "{}: [{lo}, {hi}] does not fill its range",
            spec[k].name
        );
    }
}
