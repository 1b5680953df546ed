//! NumPy `.npy` files: a streaming writer for features and labels, and a
//! reader for the trainer's feature cache and for tests.
//!
//! Format 1.0 (numpy's `lib/format.py`): the magic `\x93NUMPY`, version
//! bytes 1 0, a little-endian u16 header length, then the header, a Python
//! dict literal such as `{'descr': '<f4', 'fortran_order': False, 'shape':
//! (50000, 2048), }`, padded with spaces and ended by `\n` so the data starts
//! at a multiple of 64 bytes; then the elements in C order. We write the
//! header byte for byte as numpy 2.x does (including its spare spaces after
//! the dict, left so the first dimension can grow in place), so a file we
//! write equals `np.save`'s.
//!
//! [`NpyWriter`] is created with the full shape, takes rows batch by batch
//! (features of 50,000 images never sit in memory whole) and on
//! [`NpyWriter::finish`] renames its temporary file into place: a file at the
//! final path is always complete. Its temporary file has a name no other
//! writer uses (`.NAME.tmp-PID-N-RANDOM`, created only if new), so two
//! processes writing one path never write one file.
//!
//! A checksummed file ([`NpyWriter::create_checksummed`], the feature
//! cache's) ends with a trailer after the data: [`CHECKSUM_MAGIC`] and the
//! md5 of every byte before it; [`read_checksummed`] verifies it all.
//! numpy's `np.load` reads the array and ignores the trailer.

use crate::error::{Error, Result};
use md5::{Digest, Md5};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// numpy aligns the start of the data to this many bytes.
const ARRAY_ALIGN: usize = 64;
/// numpy leaves room after the dict for a first dimension this many digits long.
const GROWTH_AXIS_MAX_DIGITS: usize = 21;
const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Opens the trailer of a checksummed file; the md5 of the file's bytes before it follows.
pub const CHECKSUM_MAGIC: &[u8; 8] = b"THAW-MD5";
/// Bytes of the trailer: the magic and a 16-byte md5.
pub const CHECKSUM_TRAILER_LEN: usize = 24;

/// An element type a .npy file can hold here, with its numpy `descr`.
pub trait NpyElement: Copy + Send + Sync + 'static {
    /// numpy's type string: `<f4`, `<f2`, `<i8`, `|u1`.
    const DESCR: &'static str;
    /// Appends the little-endian bytes of `values` to `out`.
    fn extend_le(values: &[Self], out: &mut Vec<u8>);
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    fn extend_le(values: &[Self], out: &mut Vec<u8>) {
        out.reserve(values.len() * 4);
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

impl NpyElement for half::f16 {
    const DESCR: &'static str = "<f2";
    fn extend_le(values: &[Self], out: &mut Vec<u8>) {
        out.reserve(values.len() * 2);
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

impl NpyElement for i64 {
    const DESCR: &'static str = "<i8";
    fn extend_le(values: &[Self], out: &mut Vec<u8>) {
        out.reserve(values.len() * 8);
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

impl NpyElement for u8 {
    const DESCR: &'static str = "|u1";
    fn extend_le(values: &[Self], out: &mut Vec<u8>) {
        out.extend_from_slice(values);
    }
}

/// Python's `repr` of a shape tuple: `()`, `(3,)`, `(3, 4)`.
fn shape_repr(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// The complete format-1.0 header (magic to final newline) numpy writes for
/// a C-order array of type `descr` and shape `shape`.
pub fn header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': {}, }}",
        shape_repr(shape)
    );
    if let Some(first) = shape.first() {
        let digits = first.to_string().len();
        dict.push_str(&" ".repeat(GROWTH_AXIS_MAX_DIGITS.saturating_sub(digits)));
    }
    // As numpy's _wrap_header: pad so magic (6) + version (2) + length (2) +
    // dict + padding + '\n' is a multiple of 64 (a full 64 of padding when
    // it already is).
    let hlen = dict.len() + 1;
    let padlen = ARRAY_ALIGN - ((MAGIC.len() + 2 + 2 + hlen) % ARRAY_ALIGN);
    let total_len = hlen + padlen;
    let mut out = Vec::with_capacity(10 + total_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(total_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', padlen));
    out.push(b'\n');
    out
}

/// Writes a .npy file of a shape known up front, rows appended in order.
///
/// Data goes to a temporary file of its own beside the destination
/// ([`temp_file`]); [`finish`](Self::finish) checks every row was written
/// and renames it into place. Dropping an unfinished writer, or a
/// [`finish`](Self::finish) that fails at any step (a full disk shows when
/// the last buffered bytes are flushed), deletes the temporary file.
pub struct NpyWriter<T: NpyElement> {
    path: PathBuf,
    tmp_path: PathBuf,
    file: Option<BufWriter<File>>,
    checksum: Option<Md5>,
    shape: Vec<usize>,
    row_len: usize,
    rows_written: usize,
    scratch: Vec<u8>,
    /// Set once the file is renamed into place; until then `Drop` deletes
    /// the temporary file, whatever step failed.
    done: bool,
    _elem: std::marker::PhantomData<T>,
}

impl<T: NpyElement> NpyWriter<T> {
    /// Starts writing an array of `shape` (rank >= 1; the first dimension
    /// counts rows) to `path`.
    pub fn create(path: impl AsRef<Path>, shape: &[usize]) -> Result<Self> {
        Self::open(path.as_ref(), shape, None)
    }

    /// As [`create`](Self::create), and [`finish`](Self::finish) appends the
    /// checksum trailer that [`read_checksummed`] verifies.
    pub fn create_checksummed(path: impl AsRef<Path>, shape: &[usize]) -> Result<Self> {
        Self::open(path.as_ref(), shape, Some(Md5::new()))
    }

    fn open(path: &Path, shape: &[usize], mut checksum: Option<Md5>) -> Result<Self> {
        let path = path.to_path_buf();
        if shape.is_empty() {
            return Err(Error::npy(
                &path,
                "NpyWriter needs a shape of rank >= 1 (rows first); got a scalar shape []",
            ));
        }
        let header = header(T::DESCR, shape);
        if header.len() - 10 > u16::MAX as usize {
            return Err(Error::npy(
                &path,
                format!("shape {shape:?} makes a header too long for format 1.0"),
            ));
        }
        let (file, tmp_path) = temp_file(&path)?;
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.write_all(&header)
            .map_err(|e| Error::io(&tmp_path, "writing", e))?;
        if let Some(h) = checksum.as_mut() {
            h.update(&header);
        }
        Ok(NpyWriter {
            path,
            tmp_path,
            file: Some(file),
            checksum,
            row_len: shape[1..].iter().product(),
            shape: shape.to_vec(),
            rows_written: 0,
            scratch: Vec::new(),
            done: false,
            _elem: std::marker::PhantomData,
        })
    }

    /// The shape given at creation.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Rows written so far.
    pub fn rows_written(&self) -> usize {
        self.rows_written
    }

    /// Appends whole rows (C order): `values.len()` must be a multiple of the
    /// row length (the product of the shape after the first dimension), and
    /// no more rows than the shape holds may be written in all.
    pub fn append(&mut self, values: &[T]) -> Result<()> {
        let rows = if self.row_len == 0 {
            if !values.is_empty() {
                return Err(Error::npy(
                    &self.path,
                    format!(
                        "rows of shape {:?} are empty; got {} values",
                        &self.shape[1..],
                        values.len()
                    ),
                ));
            }
            0
        } else {
            if !values.len().is_multiple_of(self.row_len) {
                return Err(Error::npy(
                    &self.path,
                    format!(
                        "append got {} values, not a whole number of rows of {} (shape {:?})",
                        values.len(),
                        self.row_len,
                        self.shape
                    ),
                ));
            }
            values.len() / self.row_len
        };
        if self.rows_written + rows > self.shape[0] {
            return Err(Error::npy(
                &self.path,
                format!(
                    "append of {rows} rows after {} would exceed the {} rows of shape {:?}",
                    self.rows_written, self.shape[0], self.shape
                ),
            ));
        }
        self.scratch.clear();
        T::extend_le(values, &mut self.scratch);
        if let Some(h) = self.checksum.as_mut() {
            h.update(&self.scratch);
        }
        let file = self.file.as_mut().expect("writer used after finish");
        file.write_all(&self.scratch)
            .map_err(|e| Error::io(&self.tmp_path, "writing", e))?;
        self.rows_written += rows;
        Ok(())
    }

    /// Checks that all rows were written, flushes to disk and renames the
    /// file into place.
    pub fn finish(mut self) -> Result<()> {
        self.finish_inner()?;
        self.done = true;
        Ok(())
    }

    fn finish_inner(&mut self) -> Result<()> {
        if self.rows_written != self.shape[0] {
            return Err(Error::npy(
                &self.path,
                format!(
                    "finish after {} of {} rows (shape {:?}); the file was not written",
                    self.rows_written, self.shape[0], self.shape
                ),
            ));
        }
        let mut file = self.file.take().expect("writer used after finish");
        if let Some(h) = self.checksum.take() {
            let result = file
                .write_all(CHECKSUM_MAGIC)
                .and_then(|()| file.write_all(&h.finalize()));
            if let Err(e) = result {
                return Err(Error::io(&self.tmp_path, "writing", e));
            }
        }
        let file = file
            .into_inner()
            .map_err(|e| Error::io(&self.tmp_path, "writing", e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(&self.tmp_path, "writing", e))?;
        drop(file);
        std::fs::rename(&self.tmp_path, &self.path)
            .map_err(|e| Error::io(&self.path, "renaming into place", e))?;
        // Make the rename durable (best effort: not every platform opens folders).
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// A new temporary file beside `path`, `.NAME.tmp-PID-N-RANDOM` (process id,
/// a counter, a random number), created only if no such file exists, so no
/// two writers, in one process or several, ever share one.
fn temp_file(path: &Path) -> Result<(File, PathBuf)> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // RandomState is seeded from the operating system's randomness.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let tmp = path.with_file_name(format!(
            ".{name}.tmp-{}-{n}-{random:016x}",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&tmp, "creating", e)),
        }
    }
}

/// Writes `bytes` to `path` as the writers here do: a temporary file of
/// its own beside it, synced, renamed into place; removed on any error.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let (mut file, tmp) = temp_file(path)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&tmp, "writing", e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, "writing", e)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

impl<T: NpyElement> Drop for NpyWriter<T> {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

/// Writes a whole array at once (atomically, as [`NpyWriter`]).
pub fn write<T: NpyElement>(path: impl AsRef<Path>, shape: &[usize], values: &[T]) -> Result<()> {
    let mut w = NpyWriter::<T>::create(path, shape)?;
    w.append(values)?;
    w.finish()
}

/// Writes labels as a 1-D `<i8` array (numpy's default integer type).
pub fn write_labels(path: impl AsRef<Path>, labels: &[u8]) -> Result<()> {
    let values: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    write(path, &[labels.len()], &values)
}

/// The elements of a .npy file read by [`read`].
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `<f4`
    F32(Vec<f32>),
    /// `<f2` (the activation cache's)
    F16(Vec<half::f16>),
    /// `<i8`
    I64(Vec<i64>),
    /// `|u1`
    U8(Vec<u8>),
}

/// An array read from a .npy file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// The array's shape.
    pub shape: Vec<usize>,
    /// Its elements in C order.
    pub data: NpyData,
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| Error::io(path, "reading", e))?;
    Ok(bytes)
}

/// Reads a C-order `<f4`, `<f2`, `<i8` or `|u1` .npy file (format 1.0, 2.0 or
/// 3.0); a checksum trailer is skipped unverified.
pub fn read(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    parse(path, &read_bytes(path)?)
}

/// Reads a file written by [`NpyWriter::create_checksummed`], verified
/// whole: the trailer is there, the md5 of every byte before it matches,
/// and the data is exactly the size the header gives. The error says which
/// check failed.
pub fn read_checksummed(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    let bytes = read_bytes(path)?;
    let Some(npy_len) = bytes.len().checked_sub(CHECKSUM_TRAILER_LEN) else {
        return Err(Error::npy(
            path,
            format!("is {} bytes, too short to hold a checksum", bytes.len()),
        ));
    };
    let (npy, trailer) = bytes.split_at(npy_len);
    if &trailer[..8] != CHECKSUM_MAGIC {
        return Err(Error::npy(
            path,
            "has no checksum trailer (truncated, or written by an older thaw)",
        ));
    }
    if Md5::digest(npy).as_slice() != &trailer[8..] {
        return Err(Error::npy(path, "fails its md5 checksum (damaged)"));
    }
    parse(path, npy)
}

/// Parses the bytes of a .npy file as [`read`] does (`path` names it in
/// errors); the entry point of the fuzz target in `fuzz/`.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<NpyArray> {
    let bad = |msg: String| Error::npy(path, msg);
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("is not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => {
            return Err(bad(format!(
                "has .npy format version {v}, expected 1, 2 or 3"
            )))
        }
    };
    if bytes.len() < start + hlen {
        return Err(bad(format!(
            "is truncated: header of {hlen} bytes, file of {} bytes",
            bytes.len()
        )));
    }
    let header = std::str::from_utf8(&bytes[start..start + hlen])
        .map_err(|_| bad("header is not text".into()))?;
    let descr = dict_value(header, "descr")
        .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
        .ok_or_else(|| bad(format!("header has no 'descr': {header}")))?;
    let fortran = dict_value(header, "fortran_order")
        .ok_or_else(|| bad(format!("header has no 'fortran_order': {header}")))?;
    if fortran != "False" {
        return Err(bad(
            "is in Fortran order; only C-order arrays are read".into()
        ));
    }
    let shape_text = dict_value(header, "shape")
        .ok_or_else(|| bad(format!("header has no 'shape': {header}")))?;
    let shape = parse_shape(shape_text)
        .ok_or_else(|| bad(format!("header has an unreadable shape {shape_text}")))?;
    let count: usize = shape.iter().product();
    let body = &bytes[start + hlen..];
    let elem = match descr.as_str() {
        "<f4" => 4,
        "<f2" => 2,
        "<i8" => 8,
        "|u1" => 1,
        other => {
            return Err(bad(format!(
                "has dtype {other}; only <f4, <f2, <i8 and |u1 are read"
            )))
        }
    };
    // A checksum trailer ([`read_checksummed`] verifies it) is skipped, as numpy does.
    let trailer = body.len().checked_sub(count * elem);
    let body = match trailer {
        Some(CHECKSUM_TRAILER_LEN) if body[count * elem..].starts_with(CHECKSUM_MAGIC) => {
            &body[..count * elem]
        }
        _ => body,
    };
    if body.len() != count * elem {
        return Err(bad(format!(
            "holds {} data bytes, shape {shape:?} of {descr} needs {}: truncated or corrupt",
            body.len(),
            count * elem
        )));
    }
    let data = match elem {
        4 => NpyData::F32(
            body.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        2 => NpyData::F16(
            body.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]))
                .collect(),
        ),
        8 => NpyData::I64(
            body.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        ),
        _ => NpyData::U8(body.to_vec()),
    };
    Ok(NpyArray { shape, data })
}

/// The raw text of `key`'s value in a numpy header dict (no nesting except
/// the shape tuple).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("'{key}':");
    let rest = header[header.find(&pat)? + pat.len()..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

/// Parses `()`, `(3,)`, `(3, 4)`.
fn parse_shape(text: &str) -> Option<Vec<usize>> {
    let inner = text.strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}
