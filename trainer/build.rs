//! Records the git commit the trainer is built from, for `NAME.run.json`
//! (`THAW_GIT_COMMIT`): `git rev-parse HEAD`, or "unknown" where git or the
//! repository is absent (a source tarball, a machine without git).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=THAW_GIT_COMMIT={commit}");
    // Run again when HEAD moves: the HEAD file (a branch switch) and the
    // branch's ref (a commit), where they are files. Without git, only when
    // this script changes.
    println!("cargo:rerun-if-changed=build.rs");
    for path in [
        git(&["rev-parse", "--git-path", "HEAD"]),
        git(&["rev-parse", "--symbolic-full-name", "HEAD"])
            .and_then(|r| git(&["rev-parse", "--git-path", &r])),
    ]
    .into_iter()
    .flatten()
    .filter(|p| std::path::Path::new(p).exists())
    {
        println!("cargo:rerun-if-changed={path}");
    }
}
