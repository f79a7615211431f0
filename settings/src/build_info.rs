//! Which build is running: the version of the workspace and the git
//! commit it was built from (captured by `build.rs`; `unknown` when the
//! source had no git). Both binaries print it with `--version`, report it
//! in `/health` and export it as the `corecast_build_info` metric.

/// The workspace version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit of the build, or `unknown`.
pub const COMMIT: &str = env!("CORECAST_GIT_COMMIT");

/// What `--version` prints after the binary's name.
pub const VERSION_LINE: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("CORECAST_GIT_COMMIT"), ")");

/// Sets `corecast_build_info{version, commit}` to 1 in the installed
/// metrics recorder, the usual way to join a build to other series.
pub fn record_metric() {
    metrics::gauge!("corecast_build_info", "version" => VERSION, "commit" => COMMIT).set(1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_line_names_version_and_commit() {
        assert_eq!(VERSION_LINE, format!("{VERSION} (commit {COMMIT})"));
        assert!(!COMMIT.is_empty());
    }
}
