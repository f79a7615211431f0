//! `corecast-bench compare FILE...`: reads scenario results (`--json`
//! output, one object per line, any number of files) and prints one
//! Markdown table per scenario with every figure per target and the ratio
//! corecast / peer. `bench/compare.sh` uses it; its output pastes straight
//! into `docs/BENCHMARKS.md`.

use std::fmt::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

/// The figures compared, as (label, JSON path).
const FIGURES: &[(&str, &[&str])] = &[
    ("connections", &["connections"]),
    ("connect rate /s", &["connect_rate_per_s"]),
    ("connect latency p50 us", &["connect_latency_us", "p50"]),
    ("connect latency p99 us", &["connect_latency_us", "p99"]),
    ("server CPU s", &["server_cpu_s"]),
    ("connects / server CPU s", &["connects_per_server_cpu_s"]),
    ("server RSS bytes / conn", &["server_rss_bytes_per_conn"]),
    ("kernel TCP mem bytes / conn", &["kernel_bytes_per_conn"]),
    ("kernel slab bytes / conn", &["kernel_slab_bytes_per_conn"]),
    ("published /s", &["publish_rate_per_s"]),
    ("deliveries /s", &["deliveries_per_s"]),
    ("deliveries / server CPU s", &["deliveries_per_server_cpu_s"]),
    ("latency p50 us", &["latency_us", "p50"]),
    ("latency p90 us", &["latency_us", "p90"]),
    ("latency p99 us", &["latency_us", "p99"]),
    ("latency p99.9 us", &["latency_us", "p999"]),
    ("latency max us", &["latency_us", "max"]),
    ("lost", &["lost"]),
    ("failed connections", &["failed"]),
];

fn figure(result: &Value, path: &[&str]) -> Option<f64> {
    let mut v = result;
    for key in path {
        v = v.get(key)?;
    }
    match v {
        Value::Object(map) => Some(map.values().filter_map(Value::as_f64).fold(0.0, |a, b| a + b)),
        v => v.as_f64(),
    }
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// Renders the tables for the results in `files`.
pub fn render(files: &[PathBuf]) -> Result<String> {
    let mut results = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value =
                serde_json::from_str(line).with_context(|| format!("a result line in {}", file.display()))?;
            results.push(v);
        }
    }
    Ok(tables(&results))
}

fn tables(results: &[Value]) -> String {
    let mut scenarios: Vec<&str> = Vec::new();
    for r in results {
        if let Some(s) = r["scenario"].as_str() {
            if !scenarios.contains(&s) {
                scenarios.push(s);
            }
        }
    }
    let mut out = String::new();
    for scenario in scenarios {
        let runs: Vec<&Value> = results.iter().filter(|r| r["scenario"] == scenario).collect();
        let name = |r: &Value| r["target"].as_str().unwrap_or("?").to_string();
        let base = runs.iter().find(|r| r["target"] == "corecast");
        let peers: Vec<&&Value> = runs.iter().filter(|r| r["target"] != "corecast").collect();
        let _ = writeln!(out, "\n### {scenario}\n");
        let mut header = String::from("| figure |");
        for r in &runs {
            let _ = write!(header, " {} |", name(r));
        }
        if base.is_some() {
            for p in &peers {
                let _ = write!(header, " corecast/{} |", name(p));
            }
        }
        let _ = writeln!(out, "{header}");
        let _ = writeln!(out, "|{}", "---|".repeat(header.matches('|').count() - 1));
        for (label, path) in FIGURES {
            let values: Vec<Option<f64>> = runs.iter().map(|r| figure(r, path)).collect();
            // In `connect`, `latency_us` is the connect latency already shown.
            let repeated = scenario == "connect" && path[0] == "latency_us";
            if repeated || values.iter().all(Option::is_none) {
                continue;
            }
            let mut row = format!("| {label} |");
            for v in &values {
                let _ = write!(row, " {} |", cell(*v));
            }
            if let Some(base) = base {
                let b = figure(base, path);
                for p in &peers {
                    let ratio = match (b, figure(p, path)) {
                        (Some(b), Some(p)) if p != 0.0 => format!("{:.2}", b / p),
                        _ => "-".into(),
                    };
                    let _ = write!(row, " {ratio} |");
                }
            }
            let _ = writeln!(out, "{row}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_per_scenario_with_ratios() {
        let results: Vec<Value> = [
            r#"{"scenario":"fanout","target":"corecast","deliveries_per_server_cpu_s":400.0,"latency_us":{"p99":10.0},"failed":{}}"#,
            r#"{"scenario":"fanout","target":"nats","deliveries_per_server_cpu_s":100.0,"latency_us":{"p99":20.0},"failed":{"x":2}}"#,
            r#"{"scenario":"connect","target":"nats","connections":5}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let out = tables(&results);
        assert!(out.contains("### fanout"), "{out}");
        assert!(out.contains("| corecast | nats | corecast/nats |"), "{out}");
        assert!(out.contains("| deliveries / server CPU s | 400 | 100 | 4.00 |"), "{out}");
        assert!(out.contains("| latency p99 us | 10.00 | 20.00 | 0.50 |"), "{out}");
        assert!(out.contains("| failed connections | 0.00 | 2.00 | 0.00 |"), "{out}");
        assert!(out.contains("### connect"), "{out}");
        assert!(!out.contains("lost"), "rows without any value are left out: {out}");
    }
}
