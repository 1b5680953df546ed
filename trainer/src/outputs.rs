//! An output is never an input: every command that writes files calls
//! [`refuse_inputs_as_outputs`] before any work, so `--out` naming the
//! weights, a dataset file or a file inside a dataset (or cache) folder is
//! refused instead of being overwritten.
//!
//! Two paths name the same file when their canonical paths are equal (`..`
//! and symbolic links resolved) or, on Unix, when they are the same inode on
//! the same device (a hard link). An output that does not exist yet is
//! compared by its canonical folder and its file name. An input folder
//! claims everything under it: an output inside it is refused, and so is a
//! hard link to any file in it.

use crate::error::{Error, Result};
use std::fs::Metadata;
use std::path::{Path, PathBuf};

/// A file or folder a command reads, and what it is to the user.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// How the user knows it: `--weights`, `--data`, `the cache folder`.
    pub what: &'a str,
    /// Its path as given (it may not exist: then nothing can clash with it).
    pub path: &'a Path,
}

/// A file a command writes, and the flag that names it.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    /// How the user knows it: `--out`, `the labels file of --out`.
    pub what: &'a str,
    /// Its path as given.
    pub path: &'a Path,
}

/// The canonical path `path` has or would have: the canonical file if it
/// exists, else its canonical folder joined with its name (None when the
/// folder does not exist either: then it cannot be an existing input).
fn canonical(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Some(p);
    }
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(parent.canonicalize().ok()?.join(name))
}

#[cfg(unix)]
fn same_file(a: &Metadata, b: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &Metadata, _: &Metadata) -> bool {
    false
}

#[cfg(unix)]
fn has_other_names(m: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    m.nlink() > 1
}

#[cfg(not(unix))]
fn has_other_names(_: &Metadata) -> bool {
    false
}

/// Whether the file `out` (its metadata) is a file somewhere under `dir`.
fn is_linked_under(out: &Metadata, dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| match e.file_type() {
        Ok(t) if t.is_dir() => is_linked_under(out, &e.path()),
        Ok(_) => std::fs::metadata(e.path()).is_ok_and(|m| same_file(out, &m)),
        Err(_) => false,
    })
}

/// Whether writing `out` would replace `input` or something in it.
fn clashes(out: &Path, input: &Path) -> bool {
    let (Some(out_canonical), Ok(input_meta)) = (canonical(out), std::fs::metadata(input)) else {
        return false;
    };
    let out_meta = std::fs::metadata(out).ok();
    let Ok(input_canonical) = input.canonicalize() else {
        return false;
    };
    if input_meta.is_dir() {
        return out_canonical.starts_with(&input_canonical)
            || out_meta.is_some_and(|m| {
                m.is_file() && has_other_names(&m) && is_linked_under(&m, &input_canonical)
            });
    }
    out_canonical == input_canonical || out_meta.is_some_and(|m| same_file(&m, &input_meta))
}

/// Refuses to run when an output names an input (or lies in an input
/// folder), and when two outputs name one file; the error names both paths
/// and says what to do. Call it before any work.
pub fn refuse_inputs_as_outputs(inputs: &[Input], outputs: &[Output]) -> Result<()> {
    for out in outputs {
        for input in inputs {
            if clashes(out.path, input.path) {
                let inside = if std::fs::metadata(input.path).is_ok_and(|m| m.is_dir()) {
                    " lies inside"
                } else {
                    " is the same file as"
                };
                return Err(Error::Usage(format!(
                    "{} {}{inside} {} {}, which this command reads; nothing was written \
                     (writing it would destroy that input). HINT: choose an output path \
                     outside every input, e.g. a new file name",
                    out.what,
                    out.path.display(),
                    input.what,
                    input.path.display()
                )));
            }
        }
    }
    Ok(())
}

/// Whether a file can be created in `dir`: creates and deletes a hidden
/// probe file there (named as a temporary file, so a run killed in between
/// leaves nothing [`crate::temp_files::remove_stale`] would not delete).
pub fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".write-probe.tmp-{}-0", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// Refuses, before any work, an output file `path` (named by `flag`) that
/// cannot be written: a folder, a path whose folder does not exist, or a
/// folder where no file can be created.
pub fn check_writable_file(flag: &str, path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(Error::Usage(format!(
            "{flag} {} is a folder; it takes a file name. HINT: e.g. {}",
            path.display(),
            path.join("model.safetensors").display()
        )));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::Usage(format!(
            "{flag} {}: folder {} does not exist; create it or choose another path",
            path.display(),
            dir.display()
        )));
    }
    probe_writable(dir).map_err(|e| {
        Error::Usage(format!(
            "{flag} {}: no file can be created in {} ({e}); nothing was run. HINT: choose a \
             folder you can write to",
            path.display(),
            dir.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_name_the_same_file_clash() {
        let dir = std::env::temp_dir().join(format!("thaw-outputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data/sub")).unwrap();
        let w = dir.join("w.safetensors");
        std::fs::write(&w, b"weights").unwrap();
        std::fs::write(dir.join("data/sub/batch.bin"), b"pixels").unwrap();
        assert!(clashes(&w, &w));
        assert!(clashes(&dir.join("data/../w.safetensors"), &w));
        assert!(clashes(&dir.join("data/sub/new.npy"), &dir.join("data")));
        assert!(!clashes(&dir.join("new.npy"), &w));
        assert!(!clashes(&dir.join("new.npy"), &dir.join("data")));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&w, dir.join("soft")).unwrap();
            std::fs::hard_link(&w, dir.join("hard")).unwrap();
            std::fs::hard_link(dir.join("data/sub/batch.bin"), dir.join("hard2")).unwrap();
            assert!(clashes(&dir.join("soft"), &w));
            assert!(clashes(&dir.join("hard"), &w));
            assert!(clashes(&dir.join("hard2"), &dir.join("data")));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
