//! Temporary files: what happens to them on an error, on a signal, and when
//! a process dies without cleaning up.
//!
//! Every writer of the trainer and the `weights` crate writes beside its
//! destination, under a hidden name that carries the writer's process id,
//! and renames the file into place once it is complete:
//!
//! ```text
//! .NAME.tmp-PID-...       npy::NpyWriter (features, labels, the feature cache),
//!                         weights::save_safetensors (models, converted weights)
//! .NAME.partial-PID-...   download (files being downloaded)
//! .NAME.unpacking-PID-... download (an archive being unpacked)
//! ```
//!
//! - On an error or an early return, the writer's `Drop` deletes its file.
//! - On SIGINT, SIGTERM or SIGHUP the first signal only raises the stop flag
//!   ([`crate::signals`]; the work stops after the current batch and the writers' `Drop` runs);
//!   a second one exits at once, and then [`remove_own`] deletes this
//!   process's temporary files in every folder registered with [`watch`]
//!   first (destructors do not run on `exit`).
//! - A process killed outright (SIGKILL, a crash, power loss) leaves its file
//!   behind. [`remove_stale`] deletes such files in the feature cache when it
//!   is safe: the process that wrote the file is gone (Linux: no
//!   `/proc/PID`) and the file has not been touched for [`STALE_AFTER`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// How long a dead process's temporary file is left alone before
/// [`remove_stale`] deletes it (a process of another PID namespace sharing
/// the folder could still be writing it).
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// The markers after `.NAME` in a temporary file's name, each followed by `-PID-`.
const MARKERS: [&str; 3] = [".tmp-", ".partial-", ".unpacking-"];

fn watched() -> &'static Mutex<Vec<PathBuf>> {
    static WATCHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    &WATCHED
}

/// Registers `dir` as a folder where this process writes temporary files,
/// for [`remove_own`].
pub fn watch(dir: &Path) {
    let dir = match dir.as_os_str().is_empty() {
        true => PathBuf::from("."),
        false => dir.to_path_buf(),
    };
    let mut w = watched().lock().unwrap_or_else(|e| e.into_inner());
    if !w.contains(&dir) {
        w.push(dir);
    }
}

/// The process id in a temporary file's name (`.NAME.tmp-PID-...`), or
/// None when the name is not one of a temporary file.
pub fn writer_pid(name: &str) -> Option<u32> {
    if !name.starts_with('.') {
        return None;
    }
    MARKERS.iter().find_map(|m| {
        let rest = &name[name.rfind(m)? + m.len()..];
        rest.split('-').next()?.parse().ok()
    })
}

/// Deletes this process's temporary files (and unpacking folders) in every
/// watched folder; returns how many were deleted.
pub fn remove_own() -> usize {
    let me = std::process::id();
    let dirs = watched().lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut removed = 0;
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if writer_pid(&e.file_name().to_string_lossy()) == Some(me) && remove(&e.path()) {
                removed += 1;
            }
        }
    }
    removed
}

fn remove(path: &Path) -> bool {
    if path.is_dir() {
        std::fs::remove_dir_all(path).is_ok()
    } else {
        std::fs::remove_file(path).is_ok()
    }
}

/// Whether process `pid` is gone, when that can be known (Linux, where
/// `/proc` lists the live processes); None elsewhere.
fn is_dead(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(!proc.join(pid.to_string()).exists())
}

/// Deletes the temporary files in `dir` left by processes that are gone,
/// untouched for [`STALE_AFTER`]; says how many it deleted (to stderr)
/// and returns that count. Does nothing where liveness cannot be known.
pub fn remove_stale(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let Some(pid) = writer_pid(&e.file_name().to_string_lossy()) else {
            continue;
        };
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_AFTER);
        if pid != std::process::id() && old && is_dead(pid) == Some(true) && remove(&e.path()) {
            removed += 1;
        }
    }
    if removed > 0 {
        eprintln!(
            "note: deleted {removed} temporary file(s) in {} left by runs that were killed",
            dir.display()
        );
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_pid_is_read_from_every_kind_of_temporary_name() {
        assert_eq!(writer_pid(".a.npy.tmp-123-0-00ff"), Some(123));
        assert_eq!(writer_pid(".m.safetensors.tmp-7-2"), Some(7));
        assert_eq!(writer_pid(".x.tar.gz.partial-42-0"), Some(42));
        assert_eq!(writer_pid(".cifar.unpacking-9-1"), Some(9));
        assert_eq!(writer_pid("a.npy.tmp-123-0"), None, "not hidden");
        assert_eq!(writer_pid(".a.npy"), None);
        assert_eq!(writer_pid(".a.tmp-x-1"), None);
    }
}
