//! thaw's trainer: everything between files on disk and the engine.
//!
//! ```text
//! --data / download ─▶ data::{cifar_binary, image_folder} ─▶ Dataset (uint8 NHWC)
//!   ─▶ resize + the model's preprocessing ─▶ backbone ─▶ features ─▶ npy / head training
//! ```
//!
//! - [`data`]: the dataset readers, [`data::Dataset`] and [`data::preprocess_data`].
//! - [`download`]: md5- or sha256-verified downloads and atomic unpacking into the cache.
//! - [`datasets`]: the datasets `--dataset` names (CIFAR-10, flowers, cats vs dogs).
//! - [`npy`]: the streaming `.npy` writer and a reader.
//! - [`outputs`]: the check, before any work, that no output is an input.
//! - [`progress`]: progress bars, or plain lines off a terminal.
//! - [`temp_files`]: temporary files on errors, signals and killed runs.
//! - [`signals`]: the stop flag raised by Ctrl-C, SIGTERM and SIGHUP.
//! - [`weights_source`]: backbone weights from `--weights`, or downloaded,
//!   converted and cached.
//! - [`limits`]: image sizes and memory checked before anything is allocated.
//! - [`train`]: feature cache, head training, fine-tuning, the saved model,
//!   evaluate/predict and the reports.
//! - [`paper`]: the journal-style report of saved runs (`NAME.report.html`,
//!   `.md`), written by `train` and by `trainer report`.
//! - [`convert`] and [`extract`]: the `convert` and `extract` subcommands.
//! - [`cli`]: the subcommands and their flags; `main.rs` only parses and runs.
//! - [`device`]: `--device cpu|cuda|auto` and what runs on a GPU.
//! - [`drift`]: how far `--precision f16|bf16` features are from f32.

#![warn(missing_docs)]

pub mod cli;
pub mod convert;
pub mod data;
pub mod datasets;
pub mod device;
pub mod download;
pub mod drift;
pub mod error;
pub mod extract;
pub mod imagenet;
pub mod limits;
pub mod npy;
pub mod outputs;
pub mod paper;
pub mod progress;
pub mod signals;
pub mod temp_files;
pub mod train;
pub mod weights_source;

pub use data::{preprocess_data, Dataset, Split};
pub use error::{Error, Result};
