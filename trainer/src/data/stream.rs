//! Images batch by batch ([`Images`]), as uint8 NHWC `(b, side, side, 3)`:
//! copied from memory, or decoded and resized from disk by a small pipeline
//! that runs ahead of the model.
//!
//! ```text
//! files ─▶ WORKERS threads: batch k = decode + (crop) + resize each file ─▶ bounded queue
//!   ─▶ the caller, in batch order (a batch that finishes early waits its turn)
//! ```
//!
//! Memory stays bounded whatever the dataset's size: workers claim batch k
//! only while k < (batches handed out) + [`AHEAD`], so at most [`AHEAD`]
//! decoded batches exist at once besides the caller's. Two workers keep a
//! CPU backbone fed (decoding a 500x375 JPEG and resizing it to 224 takes
//! a few ms; a backbone pass on an image far longer); the backbone's own
//! threads take the rest of the cores.
//!
//! A file that fails to decode here (its header was read when the dataset
//! was listed) is an error naming it; the pass stops.

use super::decode::read_resized;
use super::Dataset;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Decoding threads of a streamed pass.
pub const WORKERS: usize = 2;

/// Most batches decoded ahead of the one the caller is using.
pub const AHEAD: usize = 2 * WORKERS;

/// Images to read batch by batch: uint8 pixels in memory, or the images
/// of a dataset (some of them, or all), in memory or streamed from disk.
#[derive(Debug, Clone, Copy)]
pub enum Images<'a> {
    /// uint8 NHWC `side x side` images.
    Pixels {
        /// The images' bytes.
        pixels: &'a [u8],
        /// Their height and width.
        side: usize,
    },
    /// The images `idx` of a dataset, in that order.
    Of {
        /// The dataset.
        ds: &'a Dataset,
        /// Which of its images (all, in order, when None).
        idx: Option<&'a [usize]>,
    },
}

impl<'a> Images<'a> {
    /// Number of images.
    pub fn len(&self) -> usize {
        match self {
            Images::Pixels { pixels, side } => pixels.len() / (side * side * 3).max(1),
            Images::Of { ds, idx } => idx.map_or(ds.len(), <[usize]>::len),
        }
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Height and width of every image.
    pub fn side(&self) -> usize {
        match self {
            Images::Pixels { side, .. } => *side,
            Images::Of { ds, .. } => ds.side,
        }
    }

    /// Bytes of one image.
    pub fn image_bytes(&self) -> usize {
        self.side() * self.side() * 3
    }

    /// The images, `batch_size` at a time (the last batch may be shorter),
    /// each `Result` one batch of uint8 NHWC pixels.
    pub fn batches(self, batch_size: usize) -> Batches<'a> {
        let batch_size = batch_size.max(1);
        let n = self.len();
        let memory = |pixels, idx| Source::Memory {
            pixels,
            idx,
            next: 0,
        };
        let source = match self {
            Images::Pixels { pixels, .. } => memory(pixels, None),
            Images::Of { ds, idx } => match ds.streamed {
                None => memory(&ds.images, idx),
                Some(crop) => {
                    let files: Vec<PathBuf> = match idx {
                        None => ds.files.clone(),
                        Some(idx) => idx.iter().map(|&i| ds.files[i].clone()).collect(),
                    };
                    Source::Disk(Pipeline::start(files, ds.side, crop, batch_size))
                }
            },
        };
        Batches {
            source,
            batch_size,
            n,
            image_bytes: self.image_bytes(),
        }
    }

    /// The images `rows` (indices into these images), in that order, as one
    /// uint8 NHWC batch: from memory, or decoded by [`WORKERS`] threads.
    pub fn gather(self, rows: &[usize]) -> Result<Vec<u8>> {
        let b = self.image_bytes();
        let (ds, idx) = match self {
            Images::Pixels { pixels, .. } => {
                return Ok(rows
                    .iter()
                    .flat_map(|&i| &pixels[i * b..(i + 1) * b])
                    .copied()
                    .collect())
            }
            Images::Of { ds, idx } => (ds, idx),
        };
        let picked: Vec<usize> = match idx {
            None => rows.to_vec(),
            Some(idx) => rows.iter().map(|&r| idx[r]).collect(),
        };
        let per_batch = picked.len().div_ceil(WORKERS).max(1);
        let mut out = Vec::with_capacity(picked.len() * b);
        let images = Images::Of {
            ds,
            idx: Some(&picked),
        };
        for batch in images.batches(per_batch) {
            out.extend(batch?);
        }
        Ok(out)
    }
}

impl<'a> From<&'a Dataset> for Images<'a> {
    fn from(ds: &'a Dataset) -> Images<'a> {
        Images::Of { ds, idx: None }
    }
}

/// 32x32 images in memory (CIFAR-10's).
impl<'a> From<&'a [u8]> for Images<'a> {
    fn from(pixels: &'a [u8]) -> Images<'a> {
        Images::Pixels {
            pixels,
            side: super::IMAGE_SIDE,
        }
    }
}

/// 32x32 images in memory (CIFAR-10's).
impl<'a> From<&'a Vec<u8>> for Images<'a> {
    fn from(pixels: &'a Vec<u8>) -> Images<'a> {
        pixels.as_slice().into()
    }
}

/// An iterator over the batches of [`Images::batches`].
pub struct Batches<'a> {
    source: Source<'a>,
    batch_size: usize,
    n: usize,
    image_bytes: usize,
}

impl Batches<'_> {
    /// Number of batches.
    pub fn len(&self) -> usize {
        self.n.div_ceil(self.batch_size)
    }

    /// Whether there is no batch.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

enum Source<'a> {
    Memory {
        pixels: &'a [u8],
        idx: Option<&'a [usize]>,
        next: usize,
    },
    Disk(Pipeline),
}

impl Iterator for Batches<'_> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        let b = self.image_bytes;
        match &mut self.source {
            Source::Memory { pixels, idx, next } => {
                let start = *next;
                let end = (start + self.batch_size).min(self.n);
                if start >= end {
                    return None;
                }
                *next = end;
                Some(Ok(match idx {
                    None => pixels[start * b..end * b].to_vec(),
                    Some(idx) => idx[start..end]
                        .iter()
                        .flat_map(|&i| &pixels[i * b..(i + 1) * b])
                        .copied()
                        .collect(),
                }))
            }
            Source::Disk(p) => p.next(),
        }
    }
}

/// The worker threads of a streamed pass and what they have sent.
struct Pipeline {
    rx: Option<Receiver<(usize, Result<Vec<u8>>)>>,
    /// Batches received before their turn.
    pending: BTreeMap<usize, Result<Vec<u8>>>,
    /// The next batch to hand out; workers read it to stay [`AHEAD`].
    next: Arc<AtomicUsize>,
    batches: usize,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Pipeline {
    fn start(files: Vec<PathBuf>, side: usize, crop: bool, batch_size: usize) -> Pipeline {
        let files = Arc::new(files);
        let batches = files.len().div_ceil(batch_size);
        let (tx, rx) = sync_channel(AHEAD);
        let claimed = Arc::new(AtomicUsize::new(0));
        let next = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..WORKERS.min(batches))
            .map(|_| {
                let (files, tx, claimed, next, stop) = (
                    files.clone(),
                    tx.clone(),
                    claimed.clone(),
                    next.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || loop {
                    let k = claimed.fetch_add(1, Ordering::SeqCst);
                    if k >= batches {
                        return;
                    }
                    while k >= next.load(Ordering::SeqCst) + AHEAD {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        std::thread::park_timeout(std::time::Duration::from_millis(1));
                    }
                    let chunk = &files[k * batch_size..((k + 1) * batch_size).min(files.len())];
                    if stop.load(Ordering::SeqCst)
                        || tx.send((k, decode_batch(chunk, side, crop))).is_err()
                    {
                        return;
                    }
                })
            })
            .collect();
        Pipeline {
            rx: Some(rx),
            pending: BTreeMap::new(),
            next,
            batches,
            stop,
            workers,
        }
    }

    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        let k = self.next.load(Ordering::SeqCst);
        if k >= self.batches {
            return None;
        }
        let batch = loop {
            if let Some(b) = self.pending.remove(&k) {
                break b;
            }
            match self.rx.as_ref().map(Receiver::recv) {
                Some(Ok((j, b))) => {
                    self.pending.insert(j, b);
                }
                _ => {
                    break Err(Error::Usage(format!(
                        "the image decoding threads stopped before batch {k} of {}; this is a \
                         bug, please report it",
                        self.batches
                    )))
                }
            }
        };
        self.next.store(k + 1, Ordering::SeqCst);
        Some(batch)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.rx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The files decoded, centre-cropped with `crop`, and resized to `side`, as
/// one uint8 NHWC batch.
fn decode_batch(files: &[PathBuf], side: usize, crop: bool) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(files.len() * side * side * 3);
    for f in files {
        out.extend(read_resized(f, side, crop)?);
    }
    Ok(out)
}
