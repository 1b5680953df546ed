//! The weights file: a standard safetensors file
//! (<https://github.com/huggingface/safetensors>), so anyone can open it with
//! standard tools.
//!
//! Layout: 8 bytes little-endian header length `n`, `n` bytes of JSON header
//! (`{"__metadata__": {..}, "block1_conv1/kernel": {"dtype": "F32", "shape":
//! [3,3,3,64], "data_offsets": [0, 6912]}, ..}`, padded with spaces to a
//! multiple of 8), then the raw little-endian tensor bytes, back to back.
//! We write the tensors in the order given (Keras order), so loading returns
//! them in the same order; reading goes through the `safetensors` crate, which
//! checks the header exactly as the reference implementation does.
//!
//! Writes are atomic: the file is written to a temporary file in the same
//! directory, flushed to disk, then renamed over the target, so a failure at
//! any point leaves the user's old file intact.

use crate::error::{Error, Result};
use crate::NamedTensors;
use engine::{CpuStorage, DType, Storage, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Writes `tensors` (f32 or f64) and `metadata` to `path` as a safetensors file, atomically.
///
/// Tensors are stored in the order given. If anything fails (directory not
/// writable, disk full, duplicate name), `path` is left as it was.
pub fn save_safetensors(
    path: impl AsRef<Path>,
    tensors: &NamedTensors,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let header = header_json(tensors, metadata)?;
    let mut header = header.into_bytes();
    // The reference writer pads the header with spaces so the data starts 8-aligned.
    while header.len() % 8 != 0 {
        header.push(b' ');
    }

    let tmp = temp_path(path)?;
    let result = write_file(&tmp, &header, tensors).and_then(|()| {
        pause_for_tests();
        fs::rename(&tmp, path).map_err(|e| {
            Error::io(
                format!("cannot rename {} to {}", tmp.display(), path.display()),
                e,
            )
        })
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable (best effort: not every platform can open a directory).
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Test hook: `THAW_TEST_SAVE_PAUSE_MS=N` sleeps N ms between writing the
/// temporary file and renaming it into place, so a test can signal a run in
/// the middle of a save (`trainer/tests/signals.rs`). Unset, it does nothing.
fn pause_for_tests() {
    if let Some(ms) = std::env::var("THAW_TEST_SAVE_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Reads a safetensors file: its tensors in file order (f32, or f64 if stored
/// so) and its `__metadata__` (empty if it has none).
///
/// Tensors of other dtypes (F16, BF16, integers) are refused with a message
/// naming the tensor: thaw's models hold f32 weights.
pub fn load_safetensors(
    path: impl AsRef<Path>,
) -> Result<(NamedTensors, BTreeMap<String, String>)> {
    let path = path.as_ref();
    let bytes =
        fs::read(path).map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    parse_safetensors(path, &bytes)
}

/// [`load_safetensors`] on the bytes of a file already read (`path` names it
/// in errors); the entry point of the fuzz targets in `fuzz/`.
pub fn parse_safetensors(
    path: &Path,
    bytes: &[u8],
) -> Result<(NamedTensors, BTreeMap<String, String>)> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        Error::corrupt(
            path,
            format!("not a valid safetensors file ({e}); HINT: write weights files with `trainer convert` or weights::save_safetensors"),
        )
    })?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::corrupt(path, format!("bad safetensors header ({e})")))?;
    let metadata: BTreeMap<String, String> = meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();

    let mut out = Vec::with_capacity(st.len());
    for name in meta.offset_keys() {
        let view = st
            .tensor(&name)
            .map_err(|e| Error::corrupt(path, format!("tensor {name}: {e}")))?;
        let data = view.data();
        let storage = match view.dtype() {
            safetensors::Dtype::F32 => CpuStorage::F32(
                data.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            safetensors::Dtype::F64 => CpuStorage::F64(
                data.chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect(),
            ),
            other => {
                return Err(Error::Mismatch(format!(
                    "{}: tensor {name} has dtype {other:?}; thaw reads F32 (or F64) tensors. HINT: convert the file to float32",
                    path.display()
                )))
            }
        };
        let t = Tensor::from_storage(Storage::Cpu(storage), view.shape())
            .map_err(|e| Error::corrupt(path, format!("tensor {name}: {e}")))?;
        out.push((name, t));
    }
    Ok((out, metadata))
}

/// The JSON header: metadata and each tensor's dtype, shape and byte range.
fn header_json(tensors: &NamedTensors, metadata: &BTreeMap<String, String>) -> Result<String> {
    let mut seen = HashMap::with_capacity(tensors.len());
    let mut entries = Vec::with_capacity(tensors.len() + 1);
    if !metadata.is_empty() {
        let m = serde_json::to_string(metadata).expect("string map serialises");
        entries.push(format!("\"__metadata__\":{m}"));
    }
    let mut offset = 0usize;
    for (i, (name, t)) in tensors.iter().enumerate() {
        if name == "__metadata__" {
            return Err(Error::Mismatch(
                "tensor name \"__metadata__\" is reserved by the safetensors format".into(),
            ));
        }
        if let Some(first) = seen.insert(name.as_str(), i) {
            return Err(Error::Mismatch(format!(
                "tensor name {name} appears twice (positions {first} and {i}); names in a weights file must be unique"
            )));
        }
        let (dtype, size) = match t.dtype() {
            DType::F32 => ("F32", 4),
            DType::F64 => ("F64", 8),
        };
        let end = offset + t.numel() * size;
        entries.push(format!(
            "{}:{{\"dtype\":\"{dtype}\",\"shape\":{},\"data_offsets\":[{offset},{end}]}}",
            serde_json::to_string(name).expect("string serialises"),
            serde_json::to_string(t.shape()).expect("shape serialises"),
        ));
        offset = end;
    }
    Ok(format!("{{{}}}", entries.join(",")))
}

/// `dir/.name.tmp-<pid>-<n>`: in the target's directory, so the rename never crosses file systems.
fn temp_path(path: &Path) -> Result<PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        Error::io(
            format!("cannot write weights to {}", path.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"),
        )
    })?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp_name = format!(".{}.tmp-{}-{n}", name.to_string_lossy(), std::process::id());
    Ok(path.with_file_name(tmp_name))
}

fn write_file(tmp: &Path, header: &[u8], tensors: &NamedTensors) -> Result<()> {
    let what = |action: &str| format!("cannot {action} temporary file {}", tmp.display());
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| Error::io(what("create"), e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut write = |bytes: &[u8]| w.write_all(bytes).map_err(|e| Error::io(what("write"), e));
    write(&(header.len() as u64).to_le_bytes())?;
    write(header)?;
    for (name, t) in tensors {
        // Through `as_slice`, so a tensor not on the CPU is an error, not a panic.
        let not_cpu = |e: engine::Error| {
            Error::Mismatch(format!(
                "tensor {name} cannot be written: {e}; HINT: copy it to the CPU first"
            ))
        };
        match t.dtype() {
            DType::F32 => {
                for chunk in t.as_slice::<f32>().map_err(not_cpu)?.chunks(1 << 16) {
                    let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
                    write(&bytes)?;
                }
            }
            DType::F64 => {
                for chunk in t.as_slice::<f64>().map_err(not_cpu)?.chunks(1 << 15) {
                    let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
                    write(&bytes)?;
                }
            }
        }
    }
    let file = w
        .into_inner()
        .map_err(|e| Error::io(what("flush"), e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(what("sync"), e))?;
    Ok(())
}
