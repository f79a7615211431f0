//! `report.html`: the results of one or more runs as a self-contained page,
//! charts first (inline SVG, nothing fetched from the network), then the
//! verdict and one table per step. Runs are told apart by target, so the
//! same page shows a C1M run alone or corecast beside its peers
//! (`bench/compare.sh`).

mod chart;
mod curves;

use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::summary::Summary;
use curves::Line;

/// The results of one target: its steps or scenarios, in order.
struct Run<'a> {
    label: &'a str,
    steps: Vec<&'a Summary>,
}

impl Run<'_> {
    /// The time series to draw: the connect scenario's (or C1M's first
    /// step's, which covers the whole run), else the longest.
    fn series(&self) -> &[crate::monitor::Point] {
        let connect = self.steps.iter().find(|s| s.scenario == "connect" && !s.series.is_empty());
        match connect {
            Some(step) => &step.series,
            None => self.steps.iter().map(|s| s.series.as_slice()).max_by_key(|s| s.len()).unwrap_or(&[]),
        }
    }

    fn hist(&self, scenario: &str) -> &[(u64, u64)] {
        self.steps.iter().find(|s| s.scenario == scenario).map_or(&[], |s| s.latency_hist.as_slice())
    }
}

/// Reads results: a JSON array of summaries (`c1m.json`) or one summary
/// per line (`--json` output, `results.jsonl`).
pub fn load(files: &[PathBuf]) -> Result<Vec<Summary>> {
    let mut all = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        if text.trim_start().starts_with('[') {
            let steps: Vec<Summary> =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
            all.extend(steps);
            continue;
        }
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            all.push(serde_json::from_str(line).with_context(|| format!("{}:{}", file.display(), n + 1))?);
        }
    }
    Ok(all)
}

fn group(summaries: &[Summary]) -> Vec<Run<'_>> {
    let mut runs: Vec<Run<'_>> = Vec::new();
    for s in summaries {
        match runs.iter_mut().find(|r| r.label == s.target) {
            Some(run) => run.steps.push(s),
            None => runs.push(Run { label: &s.target, steps: vec![s] }),
        }
    }
    runs
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The charts: (id, title, x, y, lines), those with no line left out.
fn charts(runs: &[Run<'_>]) -> Vec<(&'static str, &'static str, &'static str, &'static str, Vec<Line>)> {
    let each = |f: &dyn Fn(&Run<'_>) -> Vec<Line>| runs.iter().flat_map(f).collect::<Vec<Line>>();
    let all = vec![
        ("ramp", "Ramp: connections over time", "seconds", "connections", each(&|r| curves::ramp(r.label, r.series()))),
        (
            "memory",
            "Memory grown against connections held",
            "connections",
            "MiB since the start",
            each(&|r| curves::memory(r.label, r.series())),
        ),
        ("cpu", "Server CPU", "seconds", "% of one core", each(&|r| curves::cpu(r.label, r.series()))),
        (
            "pressure",
            "Host pressure: time tasks stalled (PSI, last 10 s)",
            "seconds",
            "% of the time",
            each(&|r| curves::pressure(r.label, r.series())),
        ),
        (
            "rates",
            "Harness: connects and deliveries",
            "seconds",
            "per second",
            each(&|r| curves::rates(r.label, r.series())),
        ),
        (
            "broadcast",
            "Broadcast: connections that have it after t ms",
            "ms after the admin call",
            "connections",
            each(&|r| curves::cumulative(r.label.to_string(), r.hist("broadcast"), false).into_iter().collect()),
        ),
        (
            "fanout",
            "Fan-out latency distribution",
            "latency, ms",
            "% of deliveries at or below",
            each(&|r| curves::cumulative(r.label.to_string(), r.hist("fanout"), true).into_iter().collect()),
        ),
    ];
    all.into_iter().filter(|c| !c.4.is_empty()).collect()
}

/// The whole page.
pub fn html(title: &str, summaries: &[Summary]) -> Result<String> {
    let runs = group(summaries);
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
         body{{font-family:sans-serif;margin:1.5em;max-width:1600px}} figure{{display:inline-block;margin:0.5em}}\
         pre{{background:#f6f6f6;padding:0.8em;display:inline-block;vertical-align:top;margin:0.5em}}\
         .ok{{color:#176b2c}} .fail{{color:#b00020}}</style></head>\n<body>\n<h1>{t}</h1>\n",
        t = escape(title)
    );
    page.push_str("<h2>Verdict</h2>\n<ul>\n");
    for run in &runs {
        let problems: Vec<&String> = run.steps.iter().flat_map(|s| &s.problems).collect();
        if problems.is_empty() {
            let _ = writeln!(page, "<li class=\"ok\">{}: ok, nothing failed or dropped</li>", escape(run.label));
        }
        for p in problems {
            let _ = writeln!(page, "<li class=\"fail\">{}: {}</li>", escape(run.label), escape(p));
        }
    }
    page.push_str("</ul>\n<h2>Charts</h2>\n");
    for (id, title, x, y, lines) in charts(&runs) {
        let svg = chart::svg(title, x, y, &lines)?;
        let _ = writeln!(page, "<figure id=\"{id}\">{svg}</figure>");
    }
    page.push_str("<h2>Steps</h2>\n");
    for run in &runs {
        for step in &run.steps {
            let _ = writeln!(page, "<pre>{}</pre>", escape(&step.table()));
        }
    }
    page.push_str("</body></html>\n");
    Ok(page)
}

/// Writes each chart as its own `ID.svg` in `dir` (for documents that
/// embed images), returning the files written.
pub fn write_svgs(dir: &Path, summaries: &[Summary]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for (id, title, x, y, lines) in charts(&group(summaries)) {
        let path = dir.join(format!("{id}.svg"));
        std::fs::write(&path, chart::svg(title, x, y, &lines)?)
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Writes the page for `summaries` to `path`.
pub fn write(path: &Path, title: &str, summaries: &[Summary]) -> Result<()> {
    std::fs::write(path, html(title, summaries)?).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::Point;

    fn summary(target: &str, scenario: &str) -> Summary {
        let series = (0..5).map(|t| Point { t_s: t as f64, ready: t * 100, rss_bytes: t << 20, ..Point::default() });
        Summary {
            target: target.into(),
            scenario: scenario.into(),
            series: series.collect(),
            latency_hist: vec![(1_000_000, 5), (4_000_000, 5)],
            ..Summary::default()
        }
    }

    #[test]
    fn the_page_has_every_chart_with_each_targets_series() {
        let results = [summary("corecast", "broadcast"), summary("corecast", "fanout"), summary("nats", "fanout")];
        let page = html("side <by> side", &results).unwrap();
        for id in ["ramp", "memory", "cpu", "rates", "broadcast", "fanout"] {
            assert!(page.contains(&format!("<figure id=\"{id}\"><svg")), "chart {id} missing");
        }
        assert!(page.contains("corecast: harness ready") && page.contains("nats: harness ready"));
        assert!(page.contains("side &lt;by&gt; side"));
        assert_eq!(page.matches("<pre>").count(), 3, "one table per step");
        assert!(!page.contains("src=") && !page.contains("href="), "nothing to fetch");
    }

    #[test]
    fn problems_show_in_the_verdict_and_charts_without_data_are_left_out() {
        let mut failing = Summary { target: "corecast".into(), scenario: "connect".into(), ..Summary::default() };
        failing.problems = vec!["5 connections dropped: 5 hold: close 4002".into()];
        let page = html("t", &[failing]).unwrap();
        assert!(page.contains("class=\"fail\">corecast: 5 connections dropped"));
        assert!(!page.contains("<figure"), "no series, no chart");
    }

    #[test]
    fn charts_can_be_written_one_file_each() {
        let dir = std::env::temp_dir().join(format!("corecast-report-svgs-{}", std::process::id()));
        let written = write_svgs(&dir, &[summary("corecast", "fanout")]).unwrap();
        let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect();
        assert_eq!(names, ["ramp.svg", "memory.svg", "cpu.svg", "rates.svg", "fanout.svg"]);
        assert!(std::fs::read_to_string(&written[4]).unwrap().contains("Fan-out latency distribution"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loads_arrays_and_lines() {
        let dir = std::env::temp_dir().join(format!("corecast-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let one = serde_json::to_string(&summary("a", "fanout")).unwrap();
        std::fs::write(dir.join("lines.jsonl"), format!("{one}\n\n{one}\n")).unwrap();
        std::fs::write(dir.join("steps.json"), format!("[{one},{one},{one}]")).unwrap();
        let all = load(&[dir.join("lines.jsonl"), dir.join("steps.json")]).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].series.len(), 5, "the series survives the round trip");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
