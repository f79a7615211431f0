//! Captures the git commit the binaries are built from, for `--version`,
//! `/health` and the `corecast_build_info` metric: `CORECAST_GIT_COMMIT`
//! when set at build time (builds from a source archive), else
//! `git rev-parse HEAD`, else `unknown` (no git, or not a clone). Cargo
//! runs this again when HEAD or the branch it points to moves.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// Asks Cargo to run this script again when the file git keeps at `path`
/// (relative to its git directory) changes; only for files that exist, as
/// a missing one would rerun it on every build.
fn watch(path: &str) {
    if let Some(file) = git(&["rev-parse", "--git-path", path]) {
        if std::path::Path::new(&file).exists() {
            println!("cargo:rerun-if-changed={file}");
        }
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=CORECAST_GIT_COMMIT");
    let commit = match std::env::var("CORECAST_GIT_COMMIT") {
        Ok(commit) if !commit.is_empty() => commit,
        _ => {
            watch("HEAD");
            watch("packed-refs");
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                watch(&branch);
            }
            git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
        }
    };
    println!("cargo:rustc-env=CORECAST_GIT_COMMIT={commit}");
}
