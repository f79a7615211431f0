//! Where a test outside the server crate finds the `corecast-server`
//! binary: beside the test's own binary (where `cargo build --workspace
//! --bins` puts it), or else built once into a scratch target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `corecast-server` binary for a test whose own binary is `beside`
/// (an `env!("CARGO_BIN_EXE_...")` path). When missing there, it is built
/// into `<target>/<scratch>` from `manifest_dir`, the calling crate's.
pub fn corecast_server(beside: &str, manifest_dir: &str, scratch: &str) -> PathBuf {
    let profile_dir = Path::new(beside).parent().expect("a binary has a directory");
    let found = profile_dir.join("corecast-server");
    if found.exists() {
        return found;
    }
    let target_dir = profile_dir.parent().expect("a profile directory has a parent").join(scratch);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "corecast-server", "--target-dir"])
        .arg(&target_dir)
        .current_dir(manifest_dir)
        .status()
        .expect("run cargo build -p corecast-server");
    assert!(status.success(), "cargo build -p corecast-server failed");
    target_dir.join("debug").join("corecast-server")
}
