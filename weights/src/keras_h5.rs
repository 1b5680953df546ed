//! The converter from the Keras legacy `.h5` weight files, such as the
//! published `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`, to
//! [`NamedTensors`] named and shaped as a model's [`WeightSpec`]s.
//!
//! It follows Keras's own loading rule (`load_weights_from_hdf5_group` in
//! `keras/src/legacy/saving/legacy_h5_format.py`), not dataset names:
//!
//! ```text
//! /                          attrs: layer_names = [input_1, block1_conv1, ...]
//! │                                 (or layer_names0, layer_names1, ... when large),
//! │                                 backend, keras_version
//! ├── input_1/               attrs: weight_names = []  (an empty float array, not strings)
//! ├── block1_conv1/          attrs: weight_names = [block1_conv1_W_1:0, block1_conv1_b_1:0]
//! │   ├── block1_conv1_W_1:0     float32 [3, 3, 3, 64]
//! │   └── block1_conv1_b_1:0     float32 [64]
//! └── conv1_bn/              attrs: weight_names = [conv1_bn/gamma:0, ...]
//!     └── conv1_bn/gamma:0       (a path: Keras 2 and 3 nest a group per layer)
//! ```
//!
//! Keras publishes no checksums for these files, so a file is verified by its
//! layout: every tensor the model needs present, with its shape, and every
//! value finite.
//!
//! Layers come from `layer_names` in order; each layer's weights are the
//! datasets its `weight_names` lists, in that order; layers without weights
//! are skipped. Layers are matched to the model's ([`LayerMatch`]) by name
//! (a missing or extra layer is named in the error), or by position: the
//! k-th layer with weights in `layer_names` is the model's k-th, as Keras's
//! loader does when not told `by_name` (never h5py's alphabetical
//! iteration). Position is for files whose automatic names differ from the
//! model's: InceptionV3's, written by Keras 2 (`conv2d_1` for Keras 3's
//! `conv2d`). Within a layer, weights go by position: kernel, bias; gamma,
//! beta, moving_mean, moving_variance. So old names (`block1_conv1_W_1:0`)
//! and new ones (`conv1_bn/gamma:0`) both work. A file saved as a whole
//! model (weights under `/model_weights`) works too.
//!
//! The reader is `hdf5-reader`, pure Rust. Any failure inside it, even a
//! panic on a corrupt file, becomes an [`Error::Corrupt`] naming the file.

use crate::error::{Error, Result};
use crate::validate::fmt_shape;
use crate::{NamedTensors, WeightSpec};
use engine::Tensor;
use hdf5_reader::error::Error as H5Error;
use hdf5_reader::group::Group;
use hdf5_reader::{Attribute, Datatype, Hdf5File};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// One layer of the file that has weights: its name and the paths of its
/// datasets (relative to the layer's group), in `weight_names` order.
#[derive(Debug, Clone)]
struct FileLayer {
    name: String,
    weight_names: Vec<String>,
}

/// How the file's layers are matched to the model's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerMatch {
    /// By layer name (Keras's `load_weights(by_name=True)`).
    ByName,
    /// By position among the layers with weights, in the file's
    /// `layer_names` order and the model's Keras order (Keras's default).
    ByPosition,
}

/// Reads a Keras legacy `.h5` weights file into tensors named and shaped as
/// `spec`, in spec order, matching layers by name.
///
/// Errors name the file and the first problem: not an HDF5 file, truncated,
/// no `layer_names`, a model layer missing from the file, a file layer the
/// model does not have, a wrong weight count or shape within a layer, a
/// value that is not finite or a negative variance ([`crate::check_values`]).
pub fn convert_keras_h5(path: impl AsRef<Path>, spec: &[WeightSpec]) -> Result<NamedTensors> {
    convert_keras_h5_matching(path.as_ref(), spec, LayerMatch::ByName)
}

/// [`convert_keras_h5`] matching layers by position (see [`LayerMatch`]):
/// the tensors take the model's names whatever the file calls its layers.
/// Errors as [`convert_keras_h5`], with a different count of layers with
/// weights, or a shape that differs at some position, in place of missing
/// or extra layer names.
pub fn convert_keras_h5_by_position(
    path: impl AsRef<Path>,
    spec: &[WeightSpec],
) -> Result<NamedTensors> {
    convert_keras_h5_matching(path.as_ref(), spec, LayerMatch::ByPosition)
}

fn convert_keras_h5_matching(
    path: &Path,
    spec: &[WeightSpec],
    matching: LayerMatch,
) -> Result<NamedTensors> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    convert_keras_h5_bytes(path, bytes, spec, matching)
}

/// [`convert_keras_h5`] or [`convert_keras_h5_by_position`] on the bytes
/// of a file already read (`path` names it in errors); the entry point of
/// the fuzz target in `fuzz/`.
pub fn convert_keras_h5_bytes(
    path: &Path,
    bytes: Vec<u8>,
    spec: &[WeightSpec],
    matching: LayerMatch,
) -> Result<NamedTensors> {
    if !bytes.starts_with(b"\x89HDF\r\n\x1a\n") && !has_hdf5_signature(&bytes) {
        return Err(Error::corrupt(
            path,
            "not an HDF5 file (no HDF5 signature); HINT: pass the Keras weights file ending in .h5",
        ));
    }
    match catch_unwind(AssertUnwindSafe(|| {
        convert_bytes(path, bytes, spec, matching)
    })) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown failure");
            Err(Error::corrupt(
                path,
                format!("the HDF5 reader failed on this file ({what}); the file is probably truncated or damaged: download it again"),
            ))
        }
    }
}

/// HDF5 allows the signature at 0, 512, 1024, 2048, ... (a user block before it).
fn has_hdf5_signature(bytes: &[u8]) -> bool {
    let mut at = 512usize;
    while at + 8 <= bytes.len() {
        if &bytes[at..at + 8] == b"\x89HDF\r\n\x1a\n" {
            return true;
        }
        at *= 2;
    }
    false
}

fn convert_bytes(
    path: &Path,
    bytes: Vec<u8>,
    spec: &[WeightSpec],
    matching: LayerMatch,
) -> Result<NamedTensors> {
    let h5 = |e: H5Error| {
        Error::corrupt(
            path,
            format!("{e}; the file is probably truncated or damaged: download it again"),
        )
    };
    let file = Hdf5File::from_vec(bytes).map_err(h5)?;
    let mut root = file.root_group().map_err(h5)?;
    let mut layer_names = read_layer_names(&root).map_err(h5)?;
    if layer_names.is_none() {
        // A whole saved model keeps its weights under /model_weights.
        if let Ok(g) = root.group("model_weights") {
            layer_names = read_layer_names(&g).map_err(h5)?;
            root = g;
        }
    }
    let Some(layer_names) = layer_names else {
        return Err(Error::corrupt(
            path,
            "no root attribute layer_names (nor layer_names0, ...): this is not a Keras legacy .h5 weights file; HINT: save with model.save_weights(\"x.weights.h5\") in Keras 2, or use the files Keras publishes",
        ));
    };
    let file_layers = layers_with_weights(path, &root, &layer_names)?;

    // The model's layers, in spec order, each with its weights in order.
    let mut model_layers: Vec<(&str, Vec<&WeightSpec>)> = Vec::new();
    for w in spec {
        match model_layers.last_mut() {
            Some((layer, ws)) if *layer == w.layer() => ws.push(w),
            _ => model_layers.push((w.layer(), vec![w])),
        }
    }

    let counts = format!(
        "{} has {} layers with weights, the model expects {}",
        path.display(),
        file_layers.len(),
        model_layers.len()
    );
    // (the file's layer, the model's layer and its weights), in model order.
    let pairs: Vec<(&FileLayer, &str, &Vec<&WeightSpec>)> = match matching {
        LayerMatch::ByName => match_by_name(&file_layers, &model_layers, &counts)?,
        LayerMatch::ByPosition => {
            if file_layers.len() != model_layers.len() {
                return Err(Error::Mismatch(format!(
                    "{counts} (matched by position, as Keras loads this model's files). HINT: is \
                     this the weights file of another model, or a with-top file for a model \
                     without its top?"
                )));
            }
            file_layers
                .iter()
                .zip(&model_layers)
                .map(|(f, (layer, ws))| (f, *layer, ws))
                .collect()
        }
    };

    let root_name = root.name();
    let source = Source {
        path,
        file: &file,
        root: root_name.trim_end_matches('/'),
        matching,
    };
    let mut out = Vec::with_capacity(spec.len());
    for (fl, layer, weights) in pairs {
        out.extend(source.read_layer(fl, layer, weights)?);
    }
    // Values too: a damaged file must not convert into NaN weights.
    crate::validate::check_values(&out).map_err(|e| match e {
        Error::Corrupt(msg) => Error::corrupt(path, msg),
        e => e,
    })?;
    Ok(out)
}

/// The layers of `layer_names` that have weights, in file order, each with
/// its `weight_names`.
fn layers_with_weights(
    path: &Path,
    root: &Group,
    layer_names: &[String],
) -> Result<Vec<FileLayer>> {
    let mut file_layers = Vec::new();
    for name in layer_names {
        let group = root.group(name).map_err(|e| {
            Error::corrupt(
                path,
                format!("layer_names lists {name} but the file has no group {name} ({e})"),
            )
        })?;
        let weight_names = match group.attribute("weight_names") {
            Ok(a) => string_list(&a).map_err(|msg| {
                Error::corrupt(path, format!("layer {name}: attribute weight_names {msg}"))
            })?,
            // Keras reads a missing weight_names as "no weights".
            Err(_) => Vec::new(),
        };
        if !weight_names.is_empty() {
            file_layers.push(FileLayer {
                name: name.clone(),
                weight_names,
            });
        }
    }
    Ok(file_layers)
}

/// The open file and how its layers were matched: what reading one
/// layer's weights needs, and what its errors name.
struct Source<'a> {
    path: &'a Path,
    file: &'a Hdf5File,
    /// The group holding the layers' groups, without a trailing `/`.
    root: &'a str,
    matching: LayerMatch,
}

impl Source<'_> {
    /// The weights of the model's `layer`, read from the file's layer `fl`
    /// in the model's order, each checked against its expected shape.
    fn read_layer(
        &self,
        fl: &FileLayer,
        layer: &str,
        weights: &[&WeightSpec],
    ) -> Result<NamedTensors> {
        let path = self.path;
        // The file's name for the layer, and the model's when they differ.
        let layer_desc = if fl.name == layer {
            layer.to_string()
        } else {
            format!("{} (the model's {layer}, by position)", fl.name)
        };
        if fl.weight_names.len() != weights.len() {
            return Err(Error::Mismatch(format!(
                "{}: layer {layer_desc} has {} weights ({}), the model expects {} ({})",
                path.display(),
                fl.weight_names.len(),
                fl.weight_names.join(", "),
                weights.len(),
                weights
                    .iter()
                    .map(|w| w.kind())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut out = Vec::with_capacity(weights.len());
        for (dataset_name, w) in fl.weight_names.iter().zip(weights) {
            let full = format!("{}/{}/{dataset_name}", self.root, fl.name);
            let t = read_f32(self.file, &full, &w.shape).map_err(|e| match e {
                ReadError::Shape(shape) => Error::Mismatch(format!(
                    "{}: layer {layer_desc}: dataset {dataset_name} (weight {}) has shape {}, expected {}. \
                     HINT: {}",
                    path.display(),
                    w.name,
                    fmt_shape(&shape),
                    fmt_shape(&w.shape),
                    match self.matching {
                        LayerMatch::ByName => "the layer names match but not this shape: is it the \
                            file of another variant of the model (for MobileNet and MobileNetV2, \
                            another alpha)?",
                        LayerMatch::ByPosition => "the layers are matched by position and this \
                            one's shape differs: is it the weights file of another model?",
                    }
                )),
                ReadError::Other(msg) => Error::corrupt(
                    path,
                    format!("layer {layer_desc}: dataset {dataset_name}: {msg}"),
                ),
            })?;
            out.push((w.name.clone(), t));
        }
        Ok(out)
    }
}

/// Pairs each of the model's layers with the file's layer of the same name;
/// errors name a model layer missing from the file, or a file layer the
/// model does not have (with a hint: another model's file, a deeper
/// sibling's, or a with-top file).
fn match_by_name<'a, 'm>(
    file_layers: &'a [FileLayer],
    model_layers: &'a [(&'m str, Vec<&'m WeightSpec>)],
    counts: &str,
) -> Result<Vec<(&'a FileLayer, &'m str, &'a Vec<&'m WeightSpec>)>> {
    let by_name: HashMap<&str, &FileLayer> =
        file_layers.iter().map(|l| (l.name.as_str(), l)).collect();
    let matched = model_layers
        .iter()
        .filter(|(l, _)| by_name.contains_key(l))
        .count();
    for (layer, _) in model_layers {
        if !by_name.contains_key(layer) {
            let first: Vec<&str> = file_layers
                .iter()
                .take(4)
                .map(|l| l.name.as_str())
                .collect();
            let hint = if matched == 0 {
                " HINT: no layer name matches: is this the weights file of another model?"
            } else {
                ""
            };
            return Err(Error::Mismatch(format!(
                "{counts}; layer {layer} is missing from the file (its layers begin {}).{hint}",
                first.join(", ")
            )));
        }
    }
    let wanted: HashMap<&str, ()> = model_layers.iter().map(|(l, _)| (*l, ())).collect();
    if let Some(at) = file_layers
        .iter()
        .position(|l| !wanted.contains_key(l.name.as_str()))
    {
        let extra = &file_layers[at];
        // Extra layers after all of the model's are a top; among them, a
        // deeper sibling's file.
        let among = file_layers[at..]
            .iter()
            .any(|l| wanted.contains_key(l.name.as_str()));
        let hint = if among {
            "HINT: the model's layers come before and after it in the file: is this the file of a deeper model of the same family (VGG19's for VGG16)?"
        } else {
            "HINT: with-top files hold the ImageNet classifier (fc1, fc2, predictions; conv_preds; Logits): build the model with its top, or use the _notop / _no_top file"
        };
        return Err(Error::Mismatch(format!(
            "{counts}; the file has layer {} ({} weights), which the model does not have. {hint}",
            extra.name,
            extra.weight_names.len()
        )));
    }

    Ok(model_layers
        .iter()
        .map(|(layer, ws)| (by_name[layer], *layer, ws))
        .collect())
}

/// `layer_names`, or `layer_names0`, `layer_names1`, ... concatenated (Keras
/// splits the list when it would not fit in one object header); None if absent.
fn read_layer_names(group: &Group) -> std::result::Result<Option<Vec<String>>, H5Error> {
    let attrs = group.attributes()?;
    let find = |name: &str| attrs.iter().find(|a| a.name == name);
    let bad =
        |a: &Attribute, msg: String| H5Error::InvalidData(format!("attribute {}: {msg}", a.name));
    if let Some(a) = find("layer_names") {
        return string_list(a).map(Some).map_err(|m| bad(a, m));
    }
    let mut names = Vec::new();
    let mut chunk = 0;
    while let Some(a) = find(&format!("layer_names{chunk}")) {
        names.extend(string_list(a).map_err(|m| bad(a, m))?);
        chunk += 1;
    }
    Ok(if chunk == 0 { None } else { Some(names) })
}

/// An attribute holding a list of strings (fixed or variable length). An empty
/// attribute of any type is an empty list: Keras writes `weight_names` of a
/// layer without weights as an empty float64 array.
fn string_list(a: &Attribute) -> std::result::Result<Vec<String>, String> {
    let n = a.num_elements().map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(Vec::new());
    }
    if let Some(s) = &a.decoded_strings {
        return Ok(s.clone());
    }
    match &a.datatype {
        Datatype::String { .. } | Datatype::VarLen { .. } => {
            a.read_strings().map_err(|e| e.to_string())
        }
        other => Err(format!(
            "holds {n} values of type {other:?}, expected strings"
        )),
    }
}

/// Why a dataset could not be read as the weight it should be.
enum ReadError {
    /// Its shape is not the expected one (found before reading any data).
    Shape(Vec<usize>),
    /// Not found, not a float type, or the reader failed.
    Other(String),
}

/// A float dataset of shape `expected` as an f32 tensor (f64 files are
/// rounded to f32), every value finite. The shape is checked before anything
/// is allocated, so a damaged header claiming a huge shape cannot exhaust memory.
fn read_f32(
    file: &Hdf5File,
    full_path: &str,
    expected: &[usize],
) -> std::result::Result<Tensor, ReadError> {
    let other = |e: H5Error| ReadError::Other(e.to_string());
    let ds = file.dataset(full_path).map_err(other)?;
    let shape: Vec<usize> = ds
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
        .collect();
    if shape != expected {
        return Err(ReadError::Shape(shape));
    }
    let n: usize = shape.iter().product();
    let values: Vec<f32> = match ds.dtype() {
        Datatype::FloatingPoint { size: 4, .. } => {
            let mut v = vec![0f32; n];
            ds.read_into(&mut v).map_err(other)?;
            v
        }
        Datatype::FloatingPoint { size: 8, .. } => {
            let mut v = vec![0f64; n];
            ds.read_into(&mut v).map_err(other)?;
            v.into_iter().map(|x| x as f32).collect()
        }
        t => {
            return Err(ReadError::Other(format!(
                "has type {t:?}, expected float32"
            )))
        }
    };
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(ReadError::Other(format!(
            "value {} at flat index {i} is not finite; the file is damaged: download it again",
            values[i]
        )));
    }
    Tensor::from_vec(values, &shape).map_err(|e| ReadError::Other(e.to_string()))
}
