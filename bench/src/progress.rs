//! Progress while connections ramp: an indicatif bar when stderr is a
//! terminal, otherwise a plain line on stderr at most once a second.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A progress display on stderr.
pub struct Bar {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    last_line: Option<Instant>,
    last_text: String,
}

impl Bar {
    /// A display for `total` steps.
    pub fn new(label: &str, total: u64) -> Bar {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            {
                bar.set_style(style);
            }
            bar.set_prefix(label.to_string());
            bar
        });
        Bar { bar, label: label.to_string(), total, last_line: None, last_text: String::new() }
    }

    /// Moves to `pos` with a status message.
    pub fn set(&mut self, pos: u64, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos);
            bar.set_message(msg.to_string());
            return;
        }
        let due = self.last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        let text = format!("{}: {pos}/{} {msg}", self.label, self.total);
        if due && text != self.last_text {
            eprintln!("{text}");
            self.last_line = Some(Instant::now());
            self.last_text = text;
        }
    }

    /// Ends the display with a final message.
    pub fn finish(self, msg: &str) {
        match self.bar {
            Some(bar) => bar.finish_with_message(msg.to_string()),
            None => eprintln!("{}: {msg}", self.label),
        }
    }
}
