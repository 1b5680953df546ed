//! The models crate against Keras's architecture (VGG16, ResNet50, MobileNet
//! and MobileNetV2 at every published alpha): weight lists (names, shapes,
//! order) as `keras.applications` has them, output shapes at several input
//! sizes, the include_top rule, freezing, the Keras layers' training-mode
//! behaviour, and clear errors for bad input.
//!
//! Expected shapes quoted below were read off Keras 3
//! (`keras.applications.VGG16/ResNet50(weights=None, include_top=False,
//! input_shape=(s, s, 3)).output_shape`); the full weight layouts come from
//! `tests/fixtures/keras/{vgg16,vgg19,resnet50}_layout.json`, written by
//! `tests/fixtures/keras/gen_keras.py` from Keras itself, and
//! `mobilenet[_v2]_<alpha>_layout.json`, written by `gen_mobilenet.py`.

use engine::{DType, Tensor};
use models::layers::{BatchNormalization, Dropout, WeightedLayer, ZeroPad};
use models::mobilenet::MOBILENET_ALPHAS;
use models::mobilenet_v2::MOBILENET_V2_ALPHAS;
use models::registry::make_divisible;
use models::{
    build, preprocess_input, Backbone, MobileNet, MobileNetV2, ModelOptions, Pooling,
    Preprocessing, ResNet50, Vgg, VGG16,
};
use std::path::PathBuf;

fn notop(pooling: Pooling) -> ModelOptions {
    ModelOptions {
        pooling,
        ..ModelOptions::default()
    }
}

fn with_top() -> ModelOptions {
    ModelOptions {
        include_top: true,
        ..ModelOptions::default()
    }
}

/// A batch of small pseudo-random preprocessed-looking images.
fn images(n: usize, h: usize, w: usize) -> Tensor {
    let len = n * h * w * 3;
    let v: Vec<f32> = (0..len as u64)
        .map(|i| (engine::rng::uniform_f32(7, 1, i) - 0.5) * 200.0)
        .collect();
    Tensor::from_vec(v, &[n, h, w, 3]).unwrap()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/keras")
        .join(name)
}

#[test]
fn vgg16_weight_spec_has_keras_names_and_shapes() {
    let m = Vgg::new(&VGG16, &notop(Pooling::None)).unwrap();
    let spec = m.weight_spec();
    assert_eq!(spec.len(), 26);
    assert_eq!(spec[0].name, "block1_conv1/kernel");
    assert_eq!(spec[0].shape, vec![3, 3, 3, 64]);
    assert_eq!(spec[1].name, "block1_conv1/bias");
    assert_eq!(spec[1].shape, vec![64]);
    assert_eq!(spec[25].name, "block5_conv3/bias");
    let k = spec
        .iter()
        .find(|s| s.name == "block4_conv1/kernel")
        .unwrap();
    assert_eq!(k.shape, vec![3, 3, 256, 512]);

    let top = Vgg::new(&VGG16, &with_top()).unwrap().weight_spec();
    assert_eq!(top.len(), 32);
    assert_eq!(top[26].name, "fc1/kernel");
    assert_eq!(top[26].shape, vec![25088, 4096]);
    assert_eq!(top[31].name, "predictions/bias");
    assert_eq!(top[31].shape, vec![1000]);
}

#[test]
fn resnet50_weight_spec_has_keras_names_shapes_and_order() {
    let m = ResNet50::new(&notop(Pooling::Avg)).unwrap();
    let spec = m.weight_spec();
    assert_eq!(spec.len(), 318);
    let names: Vec<&str> = spec.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        &names[..8],
        &[
            "conv1_conv/kernel",
            "conv1_conv/bias",
            "conv1_bn/gamma",
            "conv1_bn/beta",
            "conv1_bn/moving_mean",
            "conv1_bn/moving_variance",
            "conv2_block1_1_conv/kernel",
            "conv2_block1_1_conv/bias",
        ]
    );
    // Keras lists a first block's layers in topological order:
    // _1_conv, _1_bn, _2_conv, _2_bn, _0_conv, _3_conv, _0_bn, _3_bn.
    let layers: Vec<&str> = {
        let mut v: Vec<&str> = names.iter().map(|n| n.split('/').next().unwrap()).collect();
        v.dedup();
        v
    };
    assert_eq!(
        &layers[2..12],
        &[
            "conv2_block1_1_conv",
            "conv2_block1_1_bn",
            "conv2_block1_2_conv",
            "conv2_block1_2_bn",
            "conv2_block1_0_conv",
            "conv2_block1_3_conv",
            "conv2_block1_0_bn",
            "conv2_block1_3_bn",
            "conv2_block2_1_conv",
            "conv2_block2_1_bn",
        ]
    );
    let shape = |n: &str| spec.iter().find(|s| s.name == n).unwrap().shape.clone();
    assert_eq!(shape("conv1_conv/kernel"), vec![7, 7, 3, 64]);
    assert_eq!(shape("conv2_block1_0_conv/kernel"), vec![1, 1, 64, 256]);
    assert_eq!(shape("conv3_block1_1_conv/kernel"), vec![1, 1, 256, 128]);
    assert_eq!(shape("conv3_block1_2_conv/kernel"), vec![3, 3, 128, 128]);
    assert_eq!(shape("conv5_block3_3_bn/moving_variance"), vec![2048]);
    assert_eq!(names[317], "conv5_block3_3_bn/moving_variance");

    let top = ResNet50::new(&with_top()).unwrap().weight_spec();
    assert_eq!(top.len(), 320);
    assert_eq!(top[318].name, "predictions/kernel");
    assert_eq!(top[318].shape, vec![2048, 1000]);
}

/// Every weight name and shape, in order, equals Keras's layout (written by
/// `tests/fixtures/keras/gen_keras.py` from `keras.applications`).
#[test]
fn weight_specs_equal_the_keras_layout_files() {
    for (model, file) in [
        ("vgg16", "vgg16_layout.json"),
        ("vgg19", "vgg19_layout.json"),
        ("resnet50", "resnet50_layout.json"),
        ("inception_v3", "inception_v3_layout.json"),
    ] {
        let path = fixture(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (written by gen_keras.py)", path.display()));
        let expected = keras_layout(&text);
        // Every layer name, weightless ones included, in model order.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keras_names: Vec<&str> = v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["class"] != "InputLayer")
            .map(|l| l["name"].as_str().unwrap())
            .collect();
        let ours = build(model, &ModelOptions::default())
            .unwrap()
            .layer_names();
        assert_eq!(ours, keras_names, "{model}: layer names and order");
        for top in [false, true] {
            let options = ModelOptions {
                include_top: top,
                ..ModelOptions::default()
            };
            let m = build(model, &options).unwrap();
            let got: Vec<(String, Vec<usize>)> = m
                .weight_spec()
                .into_iter()
                .map(|s| (s.name, s.shape))
                .collect();
            let want: Vec<(String, Vec<usize>)> = expected
                .iter()
                .filter(|(_, is_top, _)| top || !is_top)
                .map(|(n, _, s)| (n.clone(), s.clone()))
                .collect();
            assert_eq!(got.len(), want.len(), "{model} top={top}: tensor count");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g, w, "{model} top={top}");
            }
        }
    }
}

/// InceptionV3's layer order, the order of the published file and of
/// conversion by position (`inception_v3_layout.json`, Keras's
/// `model.layers`): layers by depth, so a block's branches interleave, as the
/// issue that added the model read it off Keras (`conv2d` .. `conv2d_4`,
/// then `conv2d_8, conv2d_6, conv2d_9, conv2d_5`); each layer's published
/// (Keras 2) name counts from 1; `--fine-tune mixed9` trains exactly the
/// layers after `mixed8`, which Keras's fine-tuning example writes as
/// `model.layers[249:]`, and `mixed10` those after `mixed9`.
#[test]
fn inception_v3_order_is_keras_s_depth_order() {
    let text = std::fs::read_to_string(fixture("inception_v3_layout.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let layers = v["layers"].as_array().unwrap();
    let name = |l: &serde_json::Value| l["name"].as_str().unwrap().to_string();
    let convs: Vec<String> = layers
        .iter()
        .filter(|l| l["class"] == "Conv2D")
        .map(name)
        .collect();
    assert_eq!(
        &convs[..9],
        [
            "conv2d", "conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4", "conv2d_8", "conv2d_6",
            "conv2d_9", "conv2d_5"
        ]
    );
    let weighted: Vec<&serde_json::Value> = layers
        .iter()
        .filter(|l| !l["weights"].as_array().unwrap().is_empty())
        .collect();
    assert_eq!(weighted.len(), 188);
    for l in &weighted {
        let (k3, k2) = (name(l), l["published"].as_str().unwrap());
        let (prefix, n) = match k3.rsplit_once('_') {
            Some((p, n)) if n.parse::<usize>().is_ok() => {
                (p.to_string(), n.parse::<usize>().unwrap())
            }
            _ => (k3.clone(), 0),
        };
        assert_eq!(k2, format!("{prefix}_{}", n + 1), "{k3}");
    }

    let net = build("inception_v3", &ModelOptions::default()).unwrap();
    let order: Vec<String> = weighted.iter().map(|l| name(l)).collect();
    let ours: Vec<String> = net
        .weighted_layers()
        .iter()
        .map(|l| l.name().to_string())
        .collect();
    assert_eq!(ours, order);
    for (block, after) in [("mixed9", "mixed8"), ("mixed10", "mixed9")] {
        let at = layers.iter().position(|l| l["name"] == after).unwrap();
        if block == "mixed9" {
            assert_eq!(
                at + 1,
                249,
                "Keras's fine-tuning example freezes model.layers[:249]"
            );
        }
        let mut want: Vec<String> = Vec::new();
        for l in &layers[at + 1..] {
            for w in l["weights"].as_array().unwrap() {
                if w["name"] != "moving_mean" && w["name"] != "moving_variance" {
                    want.push(format!("{}/{}", name(l), w["name"].as_str().unwrap()));
                }
            }
        }
        net.set_trainable_from(block).unwrap();
        let got: Vec<String> = net
            .trainable_params()
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        assert_eq!(got, want, "--fine-tune {block}");
    }
    let e = net.set_trainable_from("mixed11").unwrap_err().to_string();
    assert!(e.contains("mixed0, mixed1") && e.contains("mixed10"), "{e}");
    net.set_trainable_from("conv2d_93").unwrap();
    assert_eq!(net.trainable_params()[0].name(), "conv2d_93/kernel");
}

/// `(weight name, belongs to the top, shape)` from a layout JSON file.
fn keras_layout(text: &str) -> Vec<(String, bool, Vec<usize>)> {
    let v: serde_json::Value = serde_json::from_str(text).expect("layout JSON parses");
    let mut out = Vec::new();
    let mut read = |layers: &serde_json::Value, is_top: bool| {
        for layer in layers.as_array().expect("a list of layers") {
            let lname = layer["name"].as_str().expect("layer name");
            let weights = layer["weights"].as_array().expect("layer weights");
            for w in weights {
                let wname = w["name"].as_str().expect("weight name");
                let full = if wname.contains('/') {
                    wname.to_string()
                } else {
                    format!("{lname}/{wname}")
                };
                let shape = w["shape"]
                    .as_array()
                    .expect("weight shape")
                    .iter()
                    .map(|d| d.as_u64().expect("dim") as usize)
                    .collect();
                out.push((full, is_top, shape));
            }
        }
    };
    read(&v["layers"], false);
    read(&v["top_layers"], true);
    out
}

#[test]
fn output_shapes_at_32_48_64_224_match_keras() {
    let _g = engine::no_grad();
    // (size, VGG16 [h, w], ResNet50 [h, w]) as Keras reports them.
    for (size, vgg, resnet) in [(32, 1, 1), (48, 1, 2), (64, 2, 2), (224, 7, 7)] {
        let x = images(1, size, size);
        for (name, side, c) in [("vgg16", vgg, 512), ("resnet50", resnet, 2048)] {
            let m = build(name, &notop(Pooling::None)).unwrap();
            let y = m.forward(&x, false).unwrap();
            assert_eq!(y.shape(), &[1, side, side, c], "{name} at {size}");
            assert_eq!(m.output_shape(1, size, size).unwrap(), y.shape().to_vec());
            assert!(y.to_vec_f32().iter().all(|v| v.is_finite()));
        }
    }
    // Pooled, non-square and batched.
    let x = images(2, 40, 56);
    for (name, c) in [("vgg16", 512), ("resnet50", 2048)] {
        for pooling in [Pooling::Avg, Pooling::Max] {
            let m = build(name, &notop(pooling)).unwrap();
            let y = m.forward(&x, false).unwrap();
            assert_eq!(y.shape(), &[2, c], "{name} {pooling:?}");
            assert_eq!(m.output_shape(2, 40, 56).unwrap(), vec![2, c]);
        }
    }
}

#[test]
fn include_top_takes_224_only_and_gives_probabilities() {
    let _g = engine::no_grad();
    for name in ["vgg16", "resnet50"] {
        let m = build(name, &with_top()).unwrap();
        let err = m
            .forward(&images(1, 64, 64), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("224x224") && err.contains("64x64"), "{err}");
        let y = m.forward(&images(1, 224, 224), false).unwrap();
        assert_eq!(y.shape(), &[1, 1000]);
        let p = y.to_vec_f64();
        let total: f64 = p.iter().sum();
        assert!(
            (total - 1.0).abs() < 1e-4,
            "{name}: softmax sums to {total}"
        );
        assert!(p.iter().all(|&v| v >= 0.0));
        // Keras refuses a top model at another size at construction too.
        let options = ModelOptions {
            include_top: true,
            input_size: Some((64, 64)),
            ..ModelOptions::default()
        };
        let err = build(name, &options)
            .err()
            .expect("must refuse")
            .to_string();
        assert!(err.contains("224x224"), "{err}");
    }
}

#[test]
fn set_trainable_from_unfreezes_that_block_and_after() {
    let vgg = Vgg::new(&VGG16, &with_top()).unwrap();
    vgg.set_trainable_from("block5").unwrap();
    let trainable: Vec<String> = vgg
        .trainable_params()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    let mut expected: Vec<String> = Vec::new();
    for layer in [
        "block5_conv1",
        "block5_conv2",
        "block5_conv3",
        "fc1",
        "fc2",
        "predictions",
    ] {
        expected.push(format!("{layer}/kernel"));
        expected.push(format!("{layer}/bias"));
    }
    assert_eq!(trainable, expected);

    let resnet = ResNet50::new(&notop(Pooling::Avg)).unwrap();
    resnet.set_trainable_from("conv5").unwrap();
    let trainable = resnet.trainable_params();
    // conv5: block1 has 4 convs and 4 BN, blocks 2 and 3 have 3 each; a conv
    // trains kernel and bias, a BN gamma and beta (never its moving statistics).
    assert_eq!(trainable.len(), (4 + 4) * 2 + 2 * (3 + 3) * 2);
    assert!(trainable.iter().all(|p| p.name().starts_with("conv5_")));
    assert!(trainable.iter().all(|p| !p.name().contains("moving_")));
    let frozen = resnet
        .params()
        .into_iter()
        .filter(|p| !p.is_trainable())
        .count();
    assert_eq!(frozen, 318 - trainable.len());

    // Back to all trainable: moving statistics still are not.
    resnet.set_trainable(true);
    assert_eq!(resnet.trainable_params().len(), 318 - 2 * 53);

    let err = vgg.set_trainable_from("block6").unwrap_err().to_string();
    assert!(err.contains("block6") && err.contains("block5"), "{err}");
    let err = resnet.set_trainable_from("conv6").unwrap_err().to_string();
    assert!(err.contains("conv6") && err.contains("conv5"), "{err}");
}

#[test]
fn bad_input_is_an_error_naming_model_and_shape() {
    let _g = engine::no_grad();
    for name in ["vgg16", "vgg19", "resnet50"] {
        let m = build(name, &notop(Pooling::Avg)).unwrap();
        let cases = [
            (Tensor::zeros(&[32, 32, 3], DType::F32), "[32, 32, 3]"),
            (Tensor::zeros(&[1, 32, 32, 2], DType::F32), "[1, 32, 32, 2]"),
            (Tensor::zeros(&[1, 31, 64, 3], DType::F32), "31x64"),
            (Tensor::zeros(&[1, 64, 16, 3], DType::F32), "64x16"),
            (Tensor::zeros(&[0, 32, 32, 3], DType::F32), "[0, 32, 32, 3]"),
            (Tensor::zeros(&[1, 32, 32, 3], DType::F64), "f64"),
        ];
        for (x, what) in cases {
            let err = m.forward(&x, false).unwrap_err().to_string();
            let model = models::registry::find(name).unwrap().keras_name;
            assert!(err.contains(model) && err.contains(what), "{err}");
        }
        let err = m
            .forward_with_taps(&images(1, 32, 32), &["no_such_layer"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no_such_layer"), "{err}");
    }
    let fixed = ModelOptions {
        input_size: Some((48, 48)),
        ..ModelOptions::default()
    };
    let m = build("vgg16", &fixed).unwrap();
    let err = m
        .forward(&images(1, 32, 32), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("48x48") && err.contains("32x32"), "{err}");
    let small = ModelOptions {
        input_size: Some((16, 16)),
        ..ModelOptions::default()
    };
    assert!(build("resnet50", &small).is_err());
    let err = build("vgg11", &ModelOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("vgg11") && err.contains("vgg19") && err.contains("resnet50"),
        "{err}"
    );
    let err = "mean".parse::<Pooling>().unwrap_err().to_string();
    assert!(err.contains("mean") && err.contains("avg"), "{err}");
    let err = preprocess_input(
        Preprocessing::Caffe,
        &Tensor::zeros(&[2, 8, 8, 4], DType::F32),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("[2, 8, 8, 4]"), "{err}");
}

#[test]
fn taps_return_named_activations_and_the_same_output() {
    let _g = engine::no_grad();
    let x = images(2, 32, 32);
    let m = build("resnet50", &notop(Pooling::Avg)).unwrap();
    let taps = [
        "conv1_relu",
        "pool1_pool",
        "conv2_block1_0_bn",
        "conv4_block6_out",
        "avg_pool",
    ];
    let (y, got) = m.forward_with_taps(&x, &taps).unwrap();
    assert_eq!(got.len(), taps.len());
    assert_eq!(got["conv1_relu"].shape(), &[2, 16, 16, 64]);
    assert_eq!(got["pool1_pool"].shape(), &[2, 8, 8, 64]);
    assert_eq!(got["conv2_block1_0_bn"].shape(), &[2, 8, 8, 256]);
    assert_eq!(got["conv4_block6_out"].shape(), &[2, 2, 2, 1024]);
    assert_eq!(got["avg_pool"].to_vec_f32(), y.to_vec_f32());
    assert_eq!(m.forward(&x, false).unwrap().to_vec_f32(), y.to_vec_f32());

    let m = build("vgg16", &notop(Pooling::Max)).unwrap();
    let (y, got) = m
        .forward_with_taps(&x, &["block1_conv2", "block3_pool", "global_max_pooling2d"])
        .unwrap();
    assert_eq!(got["block1_conv2"].shape(), &[2, 32, 32, 64]);
    assert_eq!(got["block3_pool"].shape(), &[2, 4, 4, 256]);
    assert_eq!(got["global_max_pooling2d"].to_vec_f32(), y.to_vec_f32());
    // block1_conv2 includes Keras's fused ReLU.
    assert!(got["block1_conv2"].to_vec_f32().iter().all(|&v| v >= 0.0));
}

#[test]
fn load_round_trips_and_rejects_a_wrong_set() {
    let a = build("vgg16", &notop(Pooling::Avg)).unwrap();
    let b = build(
        "vgg16",
        &ModelOptions {
            init_seed: 99,
            pooling: Pooling::Avg,
            ..ModelOptions::default()
        },
    )
    .unwrap();
    assert_ne!(
        a.named_tensors()[0].1.to_vec_f32(),
        b.named_tensors()[0].1.to_vec_f32()
    );
    b.load(a.named_tensors()).unwrap();
    for ((na, ta), (nb, tb)) in a.named_tensors().iter().zip(b.named_tensors()) {
        assert_eq!(na, &nb);
        assert_eq!(ta.to_vec_f32(), tb.to_vec_f32());
    }
    // A ResNet50 file into VGG16, a missing tensor, a wrong shape: errors, nothing loaded.
    let resnet = build("resnet50", &ModelOptions::default()).unwrap();
    assert!(b.load(resnet.named_tensors()).is_err());
    let mut missing = a.named_tensors();
    missing.remove(5);
    let err = b.load(missing).unwrap_err().to_string();
    assert!(err.contains("block3_conv1") || err.contains("25"), "{err}");
    let mut misshapen = a.named_tensors();
    misshapen[24].1 = Tensor::zeros(&[3, 3, 256, 512], DType::F32);
    let err = b.load(misshapen).unwrap_err().to_string();
    assert!(err.contains("block5_conv3/kernel"), "{err}");
}

#[test]
fn batch_norm_training_updates_moving_statistics_like_keras() {
    // x: [4, 1, 1, 2]; channel 0 = 1, 2, 3, 4 (mean 2.5, biased var 1.25),
    // channel 1 = 0, 0, 0, 8 (mean 2, biased var 12).
    let x = Tensor::from_vec(vec![1f32, 0., 2., 0., 3., 0., 4., 8.], &[4, 1, 1, 2]).unwrap();
    let bn = BatchNormalization::new("bn", 2, 1e-3);
    let y = bn.forward(&x, true).unwrap();
    let mm = bn.moving_mean.value().to_vec_f32();
    let mv = bn.moving_variance.value().to_vec_f32();
    // moving = moving·0.99 + batch·0.01 from (0, 1).
    for (got, want) in mm.iter().zip([0.025f32, 0.02]) {
        assert!((got - want).abs() < 1e-7, "moving mean {mm:?}");
    }
    for (got, want) in mv.iter().zip([0.99f32 + 0.0125, 0.99 + 0.12]) {
        assert!((got - want).abs() < 1e-6, "moving variance {mv:?}");
    }
    // Training output is normalised with the batch statistics.
    let y = y.to_vec_f32();
    let want0 = (1.0 - 2.5) / (1.25f32 + 1e-3).sqrt();
    assert!((y[0] - want0).abs() < 1e-5, "{y:?}");

    // Frozen (as Keras: trainable=False runs in inference mode), or pinned to inference:
    // moving statistics are used and left alone.
    for freeze in [true, false] {
        let bn = BatchNormalization::new("bn", 2, 1e-3);
        if freeze {
            bn.set_trainable(false);
        } else {
            bn.set_inference_only(true);
        }
        let y = bn.forward(&x, true).unwrap().to_vec_f32();
        assert_eq!(bn.moving_mean.value().to_vec_f32(), vec![0.0, 0.0]);
        let want = 1.0 / (1.0f32 + 1e-3).sqrt();
        assert!((y[0] - want).abs() < 1e-6, "{y:?}");
    }
}

#[test]
fn dropout_layer_advances_its_stream_and_is_identity_in_inference() {
    let x = Tensor::ones(&[4, 64], DType::F32);
    let d = Dropout::new("dropout", 0.5, 3).unwrap();
    assert_eq!(d.forward(&x, false).unwrap().to_vec_f32(), x.to_vec_f32());
    assert_eq!(d.step(), 0);
    let a = d.forward(&x, true).unwrap().to_vec_f32();
    let b = d.forward(&x, true).unwrap().to_vec_f32();
    assert_eq!(d.step(), 2);
    assert_ne!(a, b, "each training step draws a fresh mask");
    assert!(a.iter().all(|&v| v == 0.0 || v == 2.0));
    d.set_step(0);
    assert_eq!(
        d.forward(&x, true).unwrap().to_vec_f32(),
        a,
        "same step, same mask"
    );
    assert!(Dropout::new("dropout", 1.0, 3).is_err());
}

#[test]
fn caffe_preprocessing_is_bgr_minus_imagenet_mean() {
    // One pixel R=10, G=20, B=30 -> [30 − 103.939, 20 − 116.779, 10 − 123.68].
    let x = Tensor::from_vec(vec![10f32, 20., 30.], &[1, 1, 1, 3]).unwrap();
    let y = preprocess_input(Preprocessing::Caffe, &x)
        .unwrap()
        .to_vec_f32();
    let want = [30f32 - 103.939, 20. - 116.779, 10. - 123.68];
    assert_eq!(y, want);
}

#[test]
fn frozen_backbone_forward_records_nothing() {
    let m = build("vgg16", &notop(Pooling::Avg)).unwrap();
    let x = images(1, 32, 32);
    let y = {
        let _g = engine::no_grad();
        m.forward(&x, false).unwrap()
    };
    assert!(!y.requires_grad());
    // With recording on and trainable weights, the output is on the tape.
    let y = m.forward(&x, false).unwrap();
    assert!(y.requires_grad());
    m.set_trainable(false);
    let y = m.forward(&x, false).unwrap();
    assert!(!y.requires_grad(), "all frozen: nothing to record");
}

#[test]
fn fine_tuning_trains_only_the_unfrozen_blocks() {
    // ResNet50 at 32 px in training mode with conv5 unfrozen: gradients reach
    // conv5's weights only, and only conv5's (trainable) BatchNormalization
    // layers use batch statistics and move their moving statistics; frozen
    // ones run in inference mode, as in Keras.
    let m = ResNet50::new(&notop(Pooling::Avg)).unwrap();
    m.set_trainable_from("conv5").unwrap();
    let before: Vec<Vec<f32>> = m.params().iter().map(|p| p.value().to_vec_f32()).collect();
    let y = m.forward(&images(2, 32, 32), true).unwrap();
    engine::ops::mean(&y).unwrap().backward().unwrap();
    for (p, old) in m.params().iter().zip(&before) {
        let name = p.name();
        let in_conv5 = name.starts_with("conv5_");
        let moving = name.contains("/moving_");
        assert_eq!(
            p.grad().is_some(),
            in_conv5 && !moving,
            "{name}: gradient presence"
        );
        let changed = p.value().to_vec_f32() != *old;
        assert_eq!(
            changed,
            in_conv5 && moving,
            "{name}: value changed by the forward pass"
        );
    }
    // Pinned to inference, nothing moves even though conv5 is trainable.
    m.set_bn_inference_only(true);
    let before: Vec<Vec<f32>> = m.params().iter().map(|p| p.value().to_vec_f32()).collect();
    m.forward(&images(2, 32, 32), true).unwrap();
    let after: Vec<Vec<f32>> = m.params().iter().map(|p| p.value().to_vec_f32()).collect();
    assert!(before == after);
}

/// InceptionV3 at 75 px in training mode with `--fine-tune mixed9`'s
/// unfreezing: gradients reach exactly the layers after `mixed8` in Keras's
/// order (`model.layers[249:]`, the layout file's), kernels and betas (its
/// batch norms have no gamma); only their moving statistics move (batch
/// statistics in training mode), and pinned to inference nothing moves.
#[test]
fn inception_v3_fine_tuning_trains_mixed9_and_mixed10_only() {
    let text = std::fs::read_to_string(fixture("inception_v3_layout.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let layers = v["layers"].as_array().unwrap();
    let at = layers.iter().position(|l| l["name"] == "mixed8").unwrap();
    let unfrozen: std::collections::HashSet<&str> = layers[at + 1..]
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    let m = build("inception_v3", &notop(Pooling::Avg)).unwrap();
    m.load(weights::seeded::generate(&m.weight_spec(), 3))
        .unwrap();
    m.set_trainable_from("mixed9").unwrap();
    let before: Vec<Vec<f32>> = m.params().iter().map(|p| p.value().to_vec_f32()).collect();
    let y = m.forward(&images(2, 75, 75), true).unwrap();
    engine::ops::mean(&y).unwrap().backward().unwrap();
    let mut trained = 0;
    for (p, old) in m.params().iter().zip(&before) {
        let name = p.name();
        let in_block = unfrozen.contains(name.split('/').next().unwrap());
        let moving = name.contains("/moving_");
        assert!(
            !name.ends_with("/gamma"),
            "{name}: scale=False has no gamma"
        );
        assert_eq!(
            p.grad().is_some(),
            in_block && !moving,
            "{name}: gradient presence"
        );
        let changed = p.value().to_vec_f32() != *old;
        assert_eq!(
            changed,
            in_block && moving,
            "{name}: changed by the forward pass"
        );
        trained += usize::from(in_block && !moving);
    }
    // 18 convolutions: a kernel and a beta each.
    assert_eq!(trained, 36);
    m.set_bn_inference_only(true);
    let before: Vec<Vec<f32>> = m.params().iter().map(|p| p.value().to_vec_f32()).collect();
    m.forward(&images(2, 75, 75), true).unwrap();
    let after: Vec<Vec<f32>> = m.params().iter().map(|p| p.value().to_vec_f32()).collect();
    assert!(before == after);
}

/// `Backbone::set_precision` reaches every conv: 16-bit features move a
/// little from f32 (and differently in f16 and bf16), setting f32 again gives
/// the f32 features back bit for bit, and training through a 16-bit conv is
/// refused with the error that says to train in f32.
#[test]
fn set_precision_runs_every_conv_in_16_bits_for_extraction_only() {
    use engine::Precision;
    for name in ["vgg16", "resnet50"] {
        let m = build(name, &notop(Pooling::Avg)).unwrap();
        let x = images(2, 32, 32);
        let run = |p: Precision| {
            m.set_precision(p);
            assert_eq!(m.precision(), p);
            let _g = engine::no_grad();
            m.forward(&x, false).unwrap().to_vec_f32()
        };
        let f32_features = run(Precision::F32);
        let norm = f32_features.iter().map(|v| v * v).sum::<f32>().sqrt();
        let mut halves = Vec::new();
        for p in [Precision::F16, Precision::Bf16] {
            let y = run(p);
            let diff = y
                .iter()
                .zip(&f32_features)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
                .sqrt();
            let rel = diff / norm;
            // Seeded weights, 13 or 53 convs: f16 keeps ~3 decimal digits, bf16 ~2.
            assert!(rel > 0.0 && rel < 0.05, "{name} {p}: relative L2 {rel}");
            halves.push(y);
        }
        assert_ne!(halves[0], halves[1]);
        assert_eq!(run(Precision::F32), f32_features);
        m.set_precision(Precision::F16);
        m.set_trainable(true);
        let e = m.forward(&x, false).unwrap_err().to_string();
        assert!(e.contains("train in f32"), "{name}: {e}");
        m.set_precision(Precision::F32);
        assert!(m.forward(&x, false).is_ok());
    }
}

/// A MobileNet (`v2` false) or MobileNetV2 of width `alpha`.
fn mobilenet(v2: bool, alpha: f64, options: &ModelOptions) -> Box<dyn Backbone> {
    let options = ModelOptions {
        alpha: Some(alpha),
        ..options.clone()
    };
    if v2 {
        Box::new(MobileNetV2::new(&options).unwrap())
    } else {
        Box::new(MobileNet::new(&options).unwrap())
    }
}

/// At every published alpha, every layer name (weightless ones included) and
/// every weight name and shape, in order, equal Keras's
/// (`tests/fixtures/keras/mobilenet[_v2]_<alpha>_layout.json`, written by
/// `gen_mobilenet.py` from `keras.applications` with the published files'
/// names: `depthwise_kernel`, v1's `conv_preds` top, v2's `Logits`).
#[test]
fn mobilenet_layouts_equal_keras_at_every_alpha() {
    for (v2, model, alphas) in [
        (false, "mobilenet", &MOBILENET_ALPHAS[..]),
        (true, "mobilenet_v2", &MOBILENET_V2_ALPHAS[..]),
    ] {
        for &alpha in alphas {
            let file = format!("{model}_{alpha:?}_layout.json");
            let text = std::fs::read_to_string(fixture(&file))
                .unwrap_or_else(|e| panic!("{file}: {e} (written by gen_mobilenet.py)"));
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let names = |key: &str| -> Vec<String> {
                v[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|l| l["class"] != "InputLayer")
                    .map(|l| l["name"].as_str().unwrap().to_string())
                    .collect()
            };
            let notop_names = names("layers");
            let m = mobilenet(v2, alpha, &ModelOptions::default());
            assert_eq!(m.layer_names(), notop_names, "{file}: layer names");
            let top = mobilenet(v2, alpha, &with_top());
            let mut with_top_names = notop_names.clone();
            with_top_names.extend(names("top_layers"));
            assert_eq!(top.layer_names(), with_top_names, "{file}: top layers");

            let expected = keras_layout(&text);
            for (m, is_top) in [(&m, false), (&top, true)] {
                let got: Vec<(String, Vec<usize>)> = m
                    .weight_spec()
                    .into_iter()
                    .map(|s| (s.name, s.shape))
                    .collect();
                let want: Vec<(String, Vec<usize>)> = expected
                    .iter()
                    .filter(|(_, t, _)| is_top || !t)
                    .map(|(n, _, s)| (n.clone(), s.clone()))
                    .collect();
                assert_eq!(got, want, "{file} top={is_top}");
            }
        }
    }
}

#[test]
fn mobilenet_output_shapes_match_keras_at_odd_sizes() {
    let _g = engine::no_grad();
    // (model, alpha, size, side, channels) as Keras reports them with
    // input_shape=(size, size, 3) (gen_mobilenet.py prints them).
    for (v2, alpha, size, side, c) in [
        (false, 0.25, 32, 1, 256),
        (false, 0.25, 75, 2, 256),
        (true, 0.35, 32, 1, 1280),
        (true, 0.35, 75, 3, 1280),
        (true, 1.4, 64, 2, 1792),
    ] {
        let m = mobilenet(v2, alpha, &notop(Pooling::None));
        let y = m.forward(&images(1, size, size), false).unwrap();
        assert_eq!(y.shape(), &[1, side, side, c], "v2={v2} {alpha} at {size}");
        assert_eq!(m.output_shape(1, size, size).unwrap(), y.shape().to_vec());
    }
    // Non-square, odd and pooled: output_shape agrees with the forward pass.
    for v2 in [false, true] {
        for pooling in [Pooling::None, Pooling::Avg, Pooling::Max] {
            let m = mobilenet(v2, if v2 { 0.35 } else { 0.25 }, &notop(pooling));
            let y = m.forward(&images(2, 33, 47), false).unwrap();
            assert_eq!(m.output_shape(2, 33, 47).unwrap(), y.shape().to_vec());
        }
    }
    // At 224 (shape only): 7x7, 1024·α and 1280 (or make_divisible(1280·α, 8)) channels.
    for (v2, alpha, c) in [
        (false, 0.75, 768),
        (false, 1.0, 1024),
        (true, 1.0, 1280),
        (true, 1.3, 1664),
    ] {
        let m = mobilenet(v2, alpha, &notop(Pooling::None));
        assert_eq!(m.output_shape(3, 224, 224).unwrap(), vec![3, 7, 7, c]);
    }
}

#[test]
fn mobilenet_top_gives_probabilities_at_224_only() {
    let _g = engine::no_grad();
    for v2 in [false, true] {
        let m = mobilenet(v2, if v2 { 0.35 } else { 0.25 }, &with_top());
        let err = m
            .forward(&images(1, 96, 96), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("224x224") && err.contains("96x96"), "{err}");
        let y = m.forward(&images(1, 224, 224), false).unwrap();
        assert_eq!(y.shape(), &[1, 1000]);
        let total: f64 = y.to_vec_f64().iter().sum();
        assert!((total - 1.0).abs() < 1e-4, "softmax sums to {total}");
    }
}

#[test]
fn mobilenet_refuses_alphas_keras_does_not_publish() {
    let o = ModelOptions::default();
    let err = MobileNet::new(&ModelOptions {
        alpha: Some(0.35),
        ..o.clone()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("mobilenet: alpha 0.35") && err.contains("0.25, 0.5, 0.75, 1.0"),
        "{err}"
    );
    let err = MobileNetV2::new(&ModelOptions {
        alpha: Some(0.25),
        ..o.clone()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("mobilenet_v2: alpha 0.25") && err.contains("0.35, 0.5, 0.75, 1.0, 1.3, 1.4"),
        "{err}"
    );
    assert!(MobileNetV2::new(&ModelOptions {
        alpha: Some(2.0),
        ..o.clone()
    })
    .is_err());
    assert!(MobileNet::new(&ModelOptions {
        alpha: Some(f64::NAN),
        ..o.clone()
    })
    .is_err());
    // build() gives alpha 1.0.
    let m = build("mobilenet_v2", &o).unwrap();
    assert_eq!(m.output_shape(1, 224, 224).unwrap(), vec![1, 7, 7, 1280]);
}

/// Keras's correct_pad: (0, 1) rows before a stride-2 layer of even side,
/// (1, 1) of odd side; imagenet_utils.correct_pad(x, 3) with x of static
/// shape (None, 38, 19, c) is ((0, 1), (1, 1)).
#[test]
fn correct_pad_follows_each_inputs_parity() {
    let pad = ZeroPad::CorrectPad { kernel: 3 };
    assert_eq!(pad.amounts(38, 19), (0, 1, 1, 1));
    assert_eq!(pad.amounts(10, 10), (0, 1, 0, 1));
    assert_eq!(pad.amounts(5, 7), (1, 1, 1, 1));
    assert_eq!(make_divisible(32.0 * 0.35, 8), 16);
    assert_eq!(make_divisible(1280.0 * 1.3, 8), 1664);
    assert_eq!(make_divisible(5.0, 8), 8);
}

/// The fine-tuning blocks: v1's last depthwise/pointwise pair (`conv_dw_13`),
/// v2's `block_16` then `Conv_1`; the top trains too, moving statistics never.
/// A training-mode pass with batch norm pinned to inference leaves every
/// moving statistic where it was and sends gradients to the unfrozen weights only.
#[test]
fn mobilenet_fine_tuning_blocks_unfreeze_the_last_layers() {
    let v1 = MobileNet::new(&ModelOptions {
        alpha: Some(0.25),
        ..with_top().clone()
    })
    .unwrap();
    v1.set_trainable_from("conv_dw_13").unwrap();
    let names: Vec<String> = v1
        .trainable_params()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "conv_dw_13/depthwise_kernel",
            "conv_dw_13_bn/gamma",
            "conv_dw_13_bn/beta",
            "conv_pw_13/kernel",
            "conv_pw_13_bn/gamma",
            "conv_pw_13_bn/beta",
            "conv_preds/kernel",
            "conv_preds/bias"
        ]
    );
    let v2 = MobileNetV2::new(&ModelOptions {
        alpha: Some(0.35),
        ..notop(Pooling::Avg).clone()
    })
    .unwrap();
    v2.set_trainable_from("block_16").unwrap();
    let names: Vec<String> = v2
        .trainable_params()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    let mut want = Vec::new();
    for (conv, bn) in [
        ("block_16_expand", "block_16_expand_BN"),
        ("block_16_depthwise", "block_16_depthwise_BN"),
        ("block_16_project", "block_16_project_BN"),
        ("Conv_1", "Conv_1_bn"),
    ] {
        let kind = if conv.ends_with("depthwise") {
            "depthwise_kernel"
        } else {
            "kernel"
        };
        want.extend([
            format!("{conv}/{kind}"),
            format!("{bn}/gamma"),
            format!("{bn}/beta"),
        ]);
    }
    assert_eq!(names, want);
    let err = v2.set_trainable_from("block_17").unwrap_err().to_string();
    assert!(err.contains("block_17"), "{err}");

    v2.set_bn_inference_only(true);
    let before: Vec<Vec<f32>> = v2.params().iter().map(|p| p.value().to_vec_f32()).collect();
    let y = v2.forward(&images(2, 32, 32), true).unwrap();
    engine::ops::mean(&y).unwrap().backward().unwrap();
    for (p, old) in v2.params().iter().zip(&before) {
        assert_eq!(
            p.grad().is_some(),
            want.iter().any(|w| w == p.name()),
            "{}",
            p.name()
        );
        assert_eq!(&p.value().to_vec_f32(), old, "{}", p.name());
    }
}

/// Relative L2 error ||a − b||₂ / ||b||₂.
fn relative_l2(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_vec_f64(), b.to_vec_f64());
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    assert!(norm > 0.0, "reference tensor is all zeros");
    (diff / norm).sqrt()
}

/// A frozen EfficientNet-Lite0 folds every batch norm into the convolution
/// before it (`models::layers::conv_batch_norm`); the same model with
/// trainable weights runs each pair as two layers, the reference. With
/// seeded kernels and batch-norm statistics far from the identity (γ in
/// [0.5, 1.5), β in [−0.5, 0.5), moving mean in [−1, 1), moving variance in
/// [0.2, 2)), every block's output and the pooled features of the two agree
/// to a relative L2 error of 1e-6 (measured: 2.8e-7), and differ in some
/// bits (so the folded path did run). The real checkpoint is compared the
/// same way in `model_parity.rs` (`lite_parity`).
#[test]
fn folded_batch_norm_equals_the_separate_layers_on_efficientnet_lite0() {
    let model = build("efficientnet_lite0", &notop(Pooling::Avg)).unwrap();
    let stats: Vec<(String, Tensor)> = model
        .named_tensors()
        .into_iter()
        .enumerate()
        .map(|(i, (name, t))| {
            let range = match name.rsplit('/').next().unwrap() {
                "gamma" => Some((0.5, 1.5)),
                "beta" => Some((-0.5, 0.5)),
                "moving_mean" => Some((-1.0, 1.0)),
                "moving_variance" => Some((0.2, 2.0)),
                _ => None,
            };
            let t = match range {
                Some((lo, hi)) => tests::uniform(t.shape(), lo, hi, 500 + i as u64)
                    .to_dtype(DType::F32)
                    .unwrap(),
                None => t,
            };
            (name, t)
        })
        .collect();
    model.load(stats).unwrap();
    let x = tests::uniform(&[2, 100, 100, 3], -1.0, 1.0, 7)
        .to_dtype(DType::F32)
        .unwrap();
    let blocks = model.block_names();
    let mut taps: Vec<&str> = blocks.iter().map(String::as_str).collect();
    taps.push("_avg_pooling");
    let _no_grad = engine::no_grad();
    let (_, two_layers) = model.forward_with_taps(&x, &taps).unwrap();
    model.set_trainable(false);
    let (_, folded) = model.forward_with_taps(&x, &taps).unwrap();
    let mut worst = (0.0, "");
    for name in &taps {
        let e = relative_l2(&folded[*name], &two_layers[*name]);
        if e > worst.0 {
            worst = (e, name);
        }
    }
    println!(
        "folded batch norm: worst relative L2 {:.2e} at {}",
        worst.0, worst.1
    );
    assert!(
        worst.0 <= 1e-6,
        "folded differs by {:.2e} at {}",
        worst.0,
        worst.1
    );
    let pooled = |m: &std::collections::BTreeMap<String, Tensor>| m["_avg_pooling"].to_vec_f32();
    assert_ne!(
        pooled(&folded),
        pooled(&two_layers),
        "the frozen model computed the same bits: no batch norm was folded"
    );
}
