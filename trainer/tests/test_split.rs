//! A dataset without a test split of its own (a single CIFAR-10 batch
//! file, or class folders without `train/` and `test/`) is refused by
//! `train`, which would otherwise score the model on its training images:
//! the real binary, with a `--weights` file that does not exist, so the
//! message proves the check came before the weights were read.

mod common;

use common::{assert_refused, png_folder, random_cifar, train_small as train, TempDir};

#[test]
fn a_dataset_without_a_test_split_is_refused() {
    let dir = TempDir::new("no-test-split");
    let d = dir.path();
    let missing = d.join("no-weights.safetensors");
    let out = d.join("m.safetensors");
    let cache = d.join("cache");
    let batch = random_cifar(d, 4, 4).join("data_batch_1.bin");
    let flat = png_folder(d, "flat", &[], &["cat", "dog"]);
    for data in [batch, flat] {
        let words = ["no separate test split", "HINT", "train/ and test/"];
        assert_refused(train(&data, &missing, &out, &[], &cache), &words);
    }
    assert!(!out.exists() && !cache.exists());
}
