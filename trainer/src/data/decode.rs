//! The trainer's one image decoder, with one policy, used by the image-folder
//! reader ([`super::image_folder`]), `evaluate`'s and `predict`'s single
//! images ([`crate::train::evaluate::read_image_32`]) and ImageNet `predict`
//! ([`crate::imagenet::read_image`]).
//!
//! ```text
//! file bytes ─▶ format by content (magic bytes; JPEG or PNG) ─▶ size from the header
//!   (checked against the caller's SizeRule before any pixel is decoded)
//!   ─▶ decode under image::Limits ─▶ 8-bit RGB (HWC)
//! ```
//!
//! - The format is told by the bytes (`image::guess_format`), never by the
//!   file's name: a PNG named `.jpg` is read as the PNG it is.
//! - Every colour type becomes 8-bit RGB, as Keras's `color_mode="rgb"`
//!   (PIL's `convert("RGB")`) does: grayscale is repeated in R, G and B,
//!   alpha is dropped (not blended), palettes are expanded; 16-bit values
//!   are scaled to 8 bits (`v * 255 / 65535`, rounded).
//! - The size comes from the header first, so that a hostile header cannot
//!   make the decoder allocate: [`SizeRule::Exactly`] (the dataset readers'
//!   32x32) refuses any other size; [`SizeRule::Any`] accepts up to
//!   [`MAX_DECODED_SIDE`] a side. The decoder itself then runs under
//!   `image::Limits` (sides and bytes), the second guard.
//! - A file that is not a JPEG or PNG, or that cannot be decoded, is an
//!   error naming it.

use super::{IMAGE_BYTES, IMAGE_SIDE};
use crate::error::{Error, Result};
use std::path::Path;

/// The largest side of an image of any size ([`SizeRule::Any`]) that is
/// decoded: 8192 px, a large photo (evaluate and predict resize it).
pub const MAX_DECODED_SIDE: u32 = 8192;

/// The most bytes the decoder may allocate for an image of any size: room
/// for 8-bit RGBA at [`MAX_DECODED_SIDE`] squared (256 MiB); a 16-bit image
/// that large is refused.
pub const MAX_DECODED_BYTES: u64 = 256 << 20;

/// The most bytes the decoder may allocate for an image of an exact size
/// (the dataset readers' 32x32 images): 8 MiB, many times what any colour
/// type of a 32x32 image needs.
pub const MAX_EXACT_BYTES: u64 = 8 << 20;

/// What size an image must have to be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeRule {
    /// Exactly `side` x `side` pixels (the dataset readers: 32x32).
    Exactly(u32),
    /// Any size up to [`MAX_DECODED_SIDE`] a side (single images that are
    /// resized afterwards).
    Any,
}

/// Decodes the JPEG or PNG file at `path` (format told by its content) into
/// 8-bit RGB, refusing a size `rule` does not allow before decoding (see
/// the module docs).
pub fn read_rgb8(path: &Path, rule: SizeRule) -> Result<image::RgbImage> {
    let (bytes, format) = read_image_bytes(path)?;
    let cannot = |e| Error::data(path, format!("cannot be decoded as {format:?}: {e}"));
    let reader = || image::ImageReader::with_format(std::io::Cursor::new(&bytes), format);
    let (width, height) = reader().into_dimensions().map_err(cannot)?;
    let (max_side, max_alloc) = match rule {
        SizeRule::Exactly(side) => {
            if (width, height) != (side, side) {
                return Err(Error::data(
                    path,
                    format!(
                        "is {width}x{height}; every image must be {side}x{side} (the model \
                         resizes from {side}x{side} itself). Resize your images to \
                         {side}x{side} first"
                    ),
                ));
            }
            (side, MAX_EXACT_BYTES)
        }
        SizeRule::Any => {
            if width > MAX_DECODED_SIDE || height > MAX_DECODED_SIDE {
                return Err(Error::data(
                    path,
                    format!(
                        "is {width}x{height}; images up to {MAX_DECODED_SIDE}x\
                         {MAX_DECODED_SIDE} are read (they are resized to the model's size). \
                         Resize it first"
                    ),
                ));
            }
            (MAX_DECODED_SIDE, MAX_DECODED_BYTES)
        }
    };
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    limits.max_alloc = Some(max_alloc);
    let mut reader = reader();
    reader.limits(limits);
    Ok(reader.decode().map_err(cannot)?.into_rgb8())
}

/// Decodes one dataset image, a 32x32 JPEG or PNG of any colour type, into
/// `out` as 8-bit RGB (HWC, 3,072 bytes): [`read_rgb8`] with
/// [`SizeRule::Exactly`] 32.
pub fn decode_image(path: &Path, out: &mut [u8]) -> Result<()> {
    debug_assert_eq!(out.len(), IMAGE_BYTES);
    let rgb = read_rgb8(path, SizeRule::Exactly(IMAGE_SIDE as u32))?;
    out.copy_from_slice(rgb.as_raw());
    Ok(())
}

/// The bytes of the image file at `path` and its format, told by its
/// content: JPEG or PNG, anything else is an error.
fn read_image_bytes(path: &Path) -> Result<(Vec<u8>, image::ImageFormat)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "reading", e))?;
    let format = image::guess_format(&bytes).map_err(|_| {
        Error::data(
            path,
            "is not a JPEG or PNG image (judged by its content, not its name); only those \
             are read (in a class folder, move other files out, or name them with a leading \
             '.' to have them skipped)",
        )
    })?;
    if !matches!(format, image::ImageFormat::Jpeg | image::ImageFormat::Png) {
        return Err(Error::data(
            path,
            format!("is a {format:?} image; only JPEG and PNG are read. Convert it to PNG"),
        ));
    }
    Ok((bytes, format))
}
