//! Where and how the binaries log: to stderr, filtered by `RUST_LOG`
//! (default `info`), as human-readable lines or, with `log_format =
//! "json"`, one JSON object per line for log shippers. Colour codes are
//! written only when stderr is a terminal, so files and journald get
//! plain text.
//!
//! `RUST_LOG` is read as targets and levels (`warn,corecast_server=debug`),
//! tracing-subscriber's `Targets` filter; a value that does not parse is
//! named on stderr and `info` applies. Span and field filters, which need
//! a regex engine in every process, are not offered.

use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

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
    let filter = filter_from(std::env::var("RUST_LOG").ok().as_deref());
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry.with(lines.with_ansi(std::io::stderr().is_terminal())).init(),
        LogFormat::Json => registry.with(lines.json().with_ansi(false)).init(),
    }
}

/// The filter a `RUST_LOG` value asks for; `info` when unset or unreadable.
fn filter_from(spec: Option<&str>) -> Targets {
    let info = || Targets::new().with_default(LevelFilter::INFO);
    match spec.map(str::trim).filter(|spec| !spec.is_empty()) {
        None => info(),
        Some(spec) => spec.parse().unwrap_or_else(|e| {
            eprintln!("RUST_LOG={spec:?} is not a list of target=level: {e}; logging at info");
            info()
        }),
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn rust_log_sets_levels_by_target_with_info_by_default() {
        let default = filter_from(None);
        assert!(default.would_enable("corecast_server::shard", &Level::INFO));
        assert!(!default.would_enable("corecast_server::shard", &Level::DEBUG));
        let spec = filter_from(Some("warn,corecast_server=debug"));
        assert!(spec.would_enable("corecast_server::shard", &Level::DEBUG));
        assert!(!spec.would_enable("corecast_router", &Level::INFO));
        assert!(spec.would_enable("corecast_router", &Level::WARN));
        let unreadable = filter_from(Some("corecast=loud"));
        assert!(unreadable.would_enable("corecast_router", &Level::INFO));
        assert!(!unreadable.would_enable("corecast_router", &Level::DEBUG));
    }
}
