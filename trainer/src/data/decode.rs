//! The trainer's one image decoder, with one policy, used by the image-folder
//! reader ([`super::image_folder`]) and its streams ([`super::stream`]),
//! `evaluate`'s and `predict`'s single images
//! ([`crate::train::evaluate::read_image_32`]) and ImageNet `predict`
//! ([`crate::imagenet::read_image`]).
//!
//! ```text
//! file bytes ─▶ format by content (magic bytes: JPEG, PNG, BMP, GIF, WebP) ─▶ size from the header
//!   (checked against the caller's SizeRule before any pixel is decoded)
//!   ─▶ decode under image::Limits ─▶ 8-bit RGB (HWC)
//!   ─▶ (read_resized) centre crop to a square with --crop-to-aspect-ratio
//!      ─▶ bilinear resize to S x S (engine's, half-pixel centres) ─▶ rounded to 8 bits
//! ```
//!
//! - The format is told by the bytes (`image::guess_format`), never by the
//!   file's name: a PNG named `.jpg` is read as the PNG it is. A GIF gives
//!   its first frame, as Keras's `tf.image.decode_image(expand_animations=False)`.
//! - Every colour type becomes 8-bit RGB, as Keras's `color_mode="rgb"`
//!   (PIL's `convert("RGB")`) does: grayscale is repeated in R, G and B,
//!   alpha is dropped (not blended), palettes are expanded; 16-bit values
//!   are scaled to 8 bits (`v * 255 / 65535`, rounded).
//! - The size comes from the header first, so that a hostile header cannot
//!   make the decoder allocate: [`SizeRule::Exactly`] (the dataset readers'
//!   32x32) refuses any other size; [`SizeRule::Any`] accepts up to
//!   [`MAX_DECODED_SIDE`] a side. The decoder itself then runs under
//!   `image::Limits` (sides and bytes), the second guard.
//! - [`read_resized`] brings an image of any size to the model's square
//!   input as Keras's `image_dataset_from_directory` does: a bilinear resize
//!   without antialiasing (the aspect ratio is not kept), or with
//!   `crop_to_aspect_ratio` the largest centred square first. The result is
//!   kept as 8 bits (rounded), at most half a level from Keras's floats, so
//!   that a batch of images is the same uint8 batch whatever its source.
//! - A file that is not one of those formats, or that cannot be decoded, is
//!   an error naming it.

use super::{IMAGE_BYTES, IMAGE_SIDE};
use crate::error::{Error, Result};
use std::io::{BufReader, Read};
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

/// The formats read, as users name them (for messages).
pub const FORMATS: &str = "JPEG, PNG, BMP, GIF or WebP";

/// What size an image must have to be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeRule {
    /// Exactly `side` x `side` pixels (the dataset readers: 32x32).
    Exactly(u32),
    /// Any size up to [`MAX_DECODED_SIDE`] a side (single images that are
    /// resized afterwards).
    Any,
}

/// Decodes the image file at `path` (format told by its content) into
/// 8-bit RGB, refusing a size `rule` does not allow before decoding (see
/// the module docs).
pub fn read_rgb8(path: &Path, rule: SizeRule) -> Result<image::RgbImage> {
    let (bytes, format) = read_image_bytes(path)?;
    decode_bytes(path, &bytes, format, rule)
}

/// [`read_rgb8`] of the file's `bytes`, already read, in `format`.
fn decode_bytes(
    path: &Path,
    bytes: &[u8],
    format: image::ImageFormat,
    rule: SizeRule,
) -> Result<image::RgbImage> {
    let cannot = |e| Error::data(path, format!("cannot be decoded as {format:?}: {e}"));
    let reader = || image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
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
            check_side(path, width, height)?;
            (MAX_DECODED_SIDE, MAX_DECODED_BYTES)
        }
    };
    decode_limited(path, bytes, format, max_side, max_alloc)
}

/// The pixels of the file's `bytes` in `format` (its size already checked)
/// as 8-bit RGB, decoded under `image::Limits` of `max_side` and `max_alloc`.
fn decode_limited(
    path: &Path,
    bytes: &[u8],
    format: image::ImageFormat,
    max_side: u32,
    max_alloc: u64,
) -> Result<image::RgbImage> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    limits.max_alloc = Some(max_alloc);
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| Error::data(path, format!("cannot be decoded as {format:?}: {e}")))?;
    Ok(image.into_rgb8())
}

/// The width and height of the image file at `path`, from its header only
/// (a few KB read): an error naming the file unless it is an image of a
/// format read here, with a readable header, at most [`MAX_DECODED_SIDE`] a
/// side.
pub fn probe(path: &Path) -> Result<(u32, u32)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, "reading", e))?;
    let mut head = Vec::with_capacity(64);
    BufReader::new(&file)
        .take(64)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(path, "reading", e))?;
    let format = format_of(path, &head)?;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, "reading", e))?;
    let (width, height) = image::ImageReader::with_format(BufReader::new(file), format)
        .into_dimensions()
        .map_err(|e| Error::data(path, format!("cannot be decoded as {format:?}: {e}")))?;
    check_side(path, width, height)?;
    Ok((width, height))
}

/// The bytes [`inspect`] reads at most: a 32x32 image fits many times,
/// and a photo's header almost always does.
pub const INSPECT_BYTES: u64 = 64 << 10;

/// What [`inspect`] learns of an image file in one read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// Width and height, from the header.
    pub size: (u32, u32),
    /// The 8-bit RGB pixels of a 32x32 image (decoded from the same read).
    pub pixels_32: Option<Vec<u8>>,
}

/// The size of the image file at `path` (as [`probe`]) and, for a 32x32
/// image, its pixels, from one read of at most [`INSPECT_BYTES`] (a header
/// further in is read by [`probe`]). The image-folder reader inspects every
/// file before anything else, so that unreadable files are all listed at
/// once and 32x32 images (CIFAR-10's JPEG copy) are read once.
pub fn inspect(path: &Path) -> Result<Inspected> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, "reading", e))?;
    let len = file.metadata().map_or(0, |m| m.len());
    let mut bytes = Vec::with_capacity(len.min(INSPECT_BYTES) as usize + 1);
    file.take(INSPECT_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, "reading", e))?;
    let whole = (bytes.len() as u64) < INSPECT_BYTES;
    let format = format_of(path, &bytes)?;
    let reader = image::ImageReader::with_format(std::io::Cursor::new(&bytes), format);
    let size = match reader.into_dimensions() {
        Ok(size) => size,
        Err(_) if !whole => probe(path)?,
        Err(e) => {
            return Err(Error::data(
                path,
                format!("cannot be decoded as {format:?}: {e}"),
            ))
        }
    };
    check_side(path, size.0, size.1)?;
    let side = IMAGE_SIDE as u32;
    let pixels_32 = match whole && size == (side, side) {
        true => Some(decode_limited(path, &bytes, format, side, MAX_EXACT_BYTES)?.into_raw()),
        false => None,
    };
    Ok(Inspected { size, pixels_32 })
}

/// Decodes the image file at `path` (any size, any format and colour type
/// read here) to 8-bit RGB `side` x `side` (HWC): centre-cropped to a square
/// first when `crop_to_square`, then resized bilinearly (see the module
/// docs). An image already `side` x `side` (after the crop) is not resampled.
pub fn read_resized(path: &Path, side: usize, crop_to_square: bool) -> Result<Vec<u8>> {
    let rgb = read_rgb8(path, SizeRule::Any)?;
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let (pixels, w, h) = match crop_to_square {
        true => centre_square(rgb.as_raw(), w, h),
        false => (rgb.into_raw(), w, h),
    };
    resize_rgb8(&pixels, w, h, side)
}

/// 8-bit RGB `[h, w, 3]` resized to `side` x `side` by the engine's bilinear
/// resize (half-pixel centres, no antialiasing: `tf.image.resize`'s
/// default), rounded back to 8 bits; returned as is when already that size.
pub fn resize_rgb8(pixels: &[u8], w: usize, h: usize, side: usize) -> Result<Vec<u8>> {
    if (w, h) == (side, side) {
        return Ok(pixels.to_vec());
    }
    Ok(engine::ops::bilinear_resize::resize_image_u8(
        pixels,
        [h, w, 3],
        side,
        side,
    )?)
}

/// The largest centred square of an RGB image `[h, w, 3]`, as Keras's
/// `crop_to_aspect_ratio=True` takes it for a square target: side
/// `min(w, h)`, offsets `(w - side) / 2` and `(h - side) / 2` rounded down.
pub fn centre_square(pixels: &[u8], w: usize, h: usize) -> (Vec<u8>, usize, usize) {
    let side = w.min(h);
    let (x0, y0) = ((w - side) / 2, (h - side) / 2);
    let mut out = Vec::with_capacity(side * side * 3);
    for row in y0..y0 + side {
        out.extend_from_slice(&pixels[(row * w + x0) * 3..(row * w + x0 + side) * 3]);
    }
    (out, side, side)
}

/// Decodes one dataset image, a 32x32 image of any format and colour type
/// read here, into `out` as 8-bit RGB (HWC, 3,072 bytes): [`read_rgb8`]
/// with [`SizeRule::Exactly`] 32.
pub fn decode_image(path: &Path, out: &mut [u8]) -> Result<()> {
    debug_assert_eq!(out.len(), IMAGE_BYTES);
    let rgb = read_rgb8(path, SizeRule::Exactly(IMAGE_SIDE as u32))?;
    out.copy_from_slice(rgb.as_raw());
    Ok(())
}

/// Refuses an image larger than [`MAX_DECODED_SIDE`] a side.
fn check_side(path: &Path, width: u32, height: u32) -> Result<()> {
    if width > MAX_DECODED_SIDE || height > MAX_DECODED_SIDE {
        return Err(Error::data(
            path,
            format!(
                "is {width}x{height}; images up to {MAX_DECODED_SIDE}x{MAX_DECODED_SIDE} are \
                 read (they are resized to the model's size). Resize it first"
            ),
        ));
    }
    Ok(())
}

/// The bytes of the image file at `path` and its format, told by its
/// content.
fn read_image_bytes(path: &Path) -> Result<(Vec<u8>, image::ImageFormat)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "reading", e))?;
    let format = format_of(path, &bytes)?;
    Ok((bytes, format))
}

/// The format of the file at `path` told by its first bytes `head`: one of
/// [`FORMATS`], anything else is an error.
fn format_of(path: &Path, head: &[u8]) -> Result<image::ImageFormat> {
    use image::ImageFormat::{Bmp, Gif, Jpeg, Png, WebP};
    let format = image::guess_format(head).map_err(|_| {
        Error::data(
            path,
            format!(
                "is not an image ({FORMATS}; judged by its content, not its name): {} (in a \
                 class folder, move other files out, name them with a leading '.' to have \
                 them skipped, or pass --skip-bad-images)",
                match head.len() {
                    0 => "the file is empty".to_string(),
                    _ => "its first bytes are no image format's".to_string(),
                }
            ),
        )
    })?;
    if !matches!(format, Jpeg | Png | Bmp | Gif | WebP) {
        return Err(Error::data(
            path,
            format!("is a {format:?} image; only {FORMATS} are read. Convert it to PNG"),
        ));
    }
    Ok(format)
}
