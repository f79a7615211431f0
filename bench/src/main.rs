//! `corecast-bench`: the load generator and C1M harness.
//!
//! The parent process parses the scenario, works out how many worker
//! processes and source addresses the host's limits call for
//! ([`limits`]), re-executes itself once per worker ([`fleet`]), drives the
//! scenario's timeline ([`scenario`]) and prints a table or one JSON object
//! ([`summary`]). Each worker runs one epoll loop over its share of the
//! connections ([`worker`]), speaking the target's protocol through an
//! adapter ([`target`]): corecast, NATS, MQTT or Redis. `compare` puts
//! saved results side by side ([`compare`]).

mod admin;
mod cli;
mod clock;
mod compare;
mod fleet;
mod latency;
mod limits;
mod payload;
mod plan;
mod probe;
mod progress;
mod scenario;
mod summary;
mod target;
mod token;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use summary::Summary;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Worker) { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
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
        Command::Connect(args) => report(scenario::connect::run(&args), args.common.json),
        Command::Fanout(args) => report(scenario::fanout::run(&args), args.common.json),
        Command::Broadcast(args) => report(scenario::broadcast::run(&args), args.common.json),
        Command::Chat(args) => report(scenario::chat::run(&args), args.common.json),
    }
}

/// Prints the summary: with `json`, one object on stdout and the table on
/// stderr; otherwise the table on stdout.
fn report(result: anyhow::Result<Summary>, json: bool) -> ExitCode {
    match result {
        Ok(summary) if json => match serde_json::to_string(&summary) {
            Ok(line) => {
                eprint!("{}", summary.table());
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(summary) => {
            print!("{}", summary.table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
