//! `corecast-bench`: the load generator and C1M harness.
//!
//! The parent process parses the scenario, works out how many worker
//! processes and source addresses the host's limits call for
//! ([`limits`]), re-executes itself once per worker ([`fleet`]), drives the
//! scenario's timeline ([`scenario`]) and prints a table or one JSON object
//! ([`summary`]). Each worker runs one epoll loop over its share of the
//! connections ([`worker`]), speaking the target's protocol through an
//! adapter ([`target`]): corecast, NATS, MQTT or Redis. While a scenario
//! runs, a sampler records a time series ([`monitor`]); with `--out` the
//! full JSON and `report.html` ([`report`]) go to that folder. Any
//! connection that failed or was dropped fails the run ([`verdict`]).
//! `compare` puts saved results side by side ([`compare`]).

mod admin;
mod cli;
mod clock;
mod compare;
mod fleet;
mod latency;
mod limits;
mod monitor;
mod payload;
mod plan;
mod probe;
mod progress;
mod report;
mod scenario;
mod stream;
mod summary;
mod target;
mod token;
mod verdict;
mod worker;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use cli::{Cli, Command};
use summary::Summary;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Worker) { Level::WARN } else { Level::INFO };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default_level));
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    match cli.command {
        Command::Worker => match worker::main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("corecast-bench worker: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Compare { files } => match compare::render(&files) {
            Ok(tables) => {
                print!("{tables}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Report { out, title, svg_dir, files } => {
            let written = report::load(&files).and_then(|results| {
                if let Some(dir) = &svg_dir {
                    for svg in report::write_svgs(dir, &results)? {
                        println!("chart: {}", svg.display());
                    }
                }
                report::write(&out, &title, &results)
            });
            match written {
                Ok(()) => {
                    println!("report: {}", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Connect(args) => one(scenario::connect::run(&args), &args.common),
        Command::Fanout(args) => one(scenario::fanout::run(&args), &args.common),
        Command::RecoveryStorm(args) => one(scenario::recovery::run(&args), &args.common),
        Command::Broadcast(args) => one(scenario::broadcast::run(&args), &args.common),
        Command::Chat(args) => one(scenario::chat::run(&args), &args.common),
        Command::C1m(args) => match scenario::c1m::run(&args) {
            Ok(steps) => finish(steps, &args.common, "c1m"),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// A scenario's one summary, failed by any connection that failed or was dropped.
fn one(result: anyhow::Result<Summary>, common: &cli::Common) -> ExitCode {
    match result {
        Ok(mut summary) => {
            summary.problems.extend(verdict::connection_problems(&summary));
            let name = format!("{}-{}", summary.scenario, summary.target);
            finish(vec![summary], common, &name)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints each step's table (on stderr with `--json`, which puts one JSON
/// object per step on stdout), writes `--out`'s files, and fails the run
/// when any step has a problem.
fn finish(steps: Vec<Summary>, common: &cli::Common, name: &str) -> ExitCode {
    for step in &steps {
        let table = format!("\n== {} ({})\n{}", step.scenario, step.target, step.table());
        if common.json {
            eprint!("{table}");
            match serde_json::to_string(step) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("error: {e}"),
            }
        } else {
            print!("{table}");
        }
    }
    if let Some(dir) = &common.out {
        match write_out(dir, name, &steps) {
            Ok(page) if common.json => eprintln!("report: {}", page.display()),
            Ok(page) => println!("report: {}", page.display()),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    let problems: Vec<&String> = steps.iter().flat_map(|s| &s.problems).collect();
    if problems.is_empty() {
        return ExitCode::SUCCESS;
    }
    for p in problems {
        eprintln!("FAILED: {p}");
    }
    ExitCode::FAILURE
}

/// Writes `NAME.json` (the steps, whole) and `report.html` into `dir`.
fn write_out(dir: &Path, name: &str, steps: &[Summary]) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = dir.join(format!("{name}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(steps)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let page = dir.join("report.html");
    report::write(&page, &format!("corecast-bench {name}"), steps)?;
    Ok(page)
}
