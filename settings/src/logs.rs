//! Where and how the binaries log: to stderr, filtered by `RUST_LOG`
//! (default `info`), as human-readable lines or, with `log_format =
//! "json"`, one JSON object per line for log shippers. Colour codes are
//! written only when stderr is a terminal, so files and journald get
//! plain text.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// The shape of log lines (setting `log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per event: `timestamp`, `level`, `fields`
    /// (`message` among them), `target`, and the spans.
    Json,
}

/// Installs the global logger. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
