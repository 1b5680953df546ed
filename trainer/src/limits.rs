//! Sizes checked before anything is allocated: an image size (from
//! `--image-size` or a model file) is bounded, and the memory one batch
//! needs is estimated against what the machine has, so a size that cannot
//! fit gets an error that says what does fit instead of an aborted process.
//!
//! The estimate is a lower bound, true of every registered backbone: per
//! input pixel, the f32 input (3 values), its resized and preprocessed copy
//! (3) and the first convolution's output (at least 8 channels at half
//! resolution, MobileNet alpha 0.25's: 2 values per input pixel), 8 f32 values
//! in all. The real peak is higher; a run refused here could never have run.

use crate::error::{Error, Result};

/// The largest input side accepted: the images are 32x32 upscaled, so
/// larger sizes add cost, not information.
pub const MAX_IMAGE_SIZE: usize = 2048;

/// Bytes one batch needs at least per input pixel (see the module docs).
pub const BYTES_PER_INPUT_PIXEL: u128 = 8 * 4;

/// The memory available to this process in bytes (Linux: `MemAvailable`
/// of `/proc/meminfo`); None where it cannot be read.
pub fn available_memory() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The bytes one batch of `batch` images at `size` x `size` needs at least.
pub fn batch_bytes(size: usize, batch: usize) -> u128 {
    size as u128 * size as u128 * batch as u128 * BYTES_PER_INPUT_PIXEL
}

fn gib(bytes: u128) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Checks an input side `size` for `model` (smallest input `min`) before
/// any allocation: `min <= size <= MAX_IMAGE_SIZE`, and one batch of `batch`
/// images fits in `available` bytes (None: not checked). `size_flag` and
/// `batch_flag` name where the numbers came from in the error.
pub fn check_image_size(
    model: &str,
    min: usize,
    size: usize,
    size_flag: &str,
    batch: usize,
    batch_flag: &str,
    available: Option<u128>,
) -> Result<()> {
    if size < min {
        return Err(Error::Usage(format!(
            "{size_flag} {size} is below {min}: {model} needs inputs of at least {min} px (as \
             in Keras); use {min} to {MAX_IMAGE_SIZE}"
        )));
    }
    if size > MAX_IMAGE_SIZE {
        return Err(Error::Usage(format!(
            "{size_flag} {size} is above {MAX_IMAGE_SIZE}, the largest input thaw accepts (the \
             images are 32x32; larger sizes only cost time and memory); use {min} to \
             {MAX_IMAGE_SIZE}, e.g. 224, the ImageNet size"
        )));
    }
    let Some(available) = available else {
        return Ok(());
    };
    let need = batch_bytes(size, batch);
    if need <= available {
        return Ok(());
    }
    let per_image = batch_bytes(size, 1);
    let fitting_batch = available / per_image;
    let fitting_size =
        ((available / (batch as u128 * BYTES_PER_INPUT_PIXEL)) as f64).sqrt() as usize;
    let mut fits = Vec::new();
    if fitting_batch >= 1 {
        fits.push(format!("{batch_flag} {fitting_batch} at this size"));
    }
    if fitting_size >= min {
        fits.push(format!(
            "{size_flag} {fitting_size} with {batch_flag} {batch}"
        ));
    }
    if fits.is_empty() {
        fits.push(format!("{batch_flag} 1 at {size_flag} {min}"));
    }
    let what_fits = fits.join(", or ");
    Err(Error::Usage(format!(
        "{size_flag} {size} with {batch_flag} {batch}: one batch of {model} needs at least {} \
         of memory ({batch} x {size} x {size} px x {BYTES_PER_INPUT_PIXEL} bytes), and {} is \
         available; nothing was allocated. What fits: at most {what_fits}",
        gib(need),
        gib(available)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_bounded_and_the_error_says_what_fits() {
        let gb = 1u128 << 30;
        assert!(check_image_size("m", 32, 224, "--image-size", 64, "--batch", Some(gb)).is_ok());
        let e = check_image_size("m", 32, 16, "--image-size", 1, "--batch", None).unwrap_err();
        assert!(e.to_string().contains("below 32"), "{e}");
        let e = check_image_size("m", 32, 100_000, "--image-size", 1, "--batch", None).unwrap_err();
        assert!(e.to_string().contains("above 2048"), "{e}");
        // 2048 px at batch 64 needs 64 * 2048^2 * 32 bytes = 8 GiB; 1 GiB fits batch 8 at
        // 2048 px, or 724 px (sqrt(2^30 / (64 * 32))) at batch 64.
        let e = check_image_size("m", 32, 2048, "--image-size", 64, "--batch", Some(gb))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("8.0 GiB") && e.contains("--batch 8 at this size") && e.contains("724"),
            "{e}"
        );
    }
}
