//! `corecast`: a command-line client for a corecast node, in the spirit of
//! `nats pub/sub`. It mints tokens, subscribes to and publishes in rooms,
//! sends and syncs stored messages, lists unread conversations and times
//! PINGs, over one blocking TCP connection speaking the protocol of
//! `docs/PROTOCOL.md` through `corecast-proto`. A server ERROR or CLOSE is
//! printed and the command exits 1.

mod args;
mod commands;
mod conn;
mod output;
mod refused;
mod target;
mod token;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::args::{Cli, Command};
use crate::conn::Conn;
use crate::output::Printer;
use crate::refused::Refused;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Printer { json: cli.global.json };
    match run(cli, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            match error.downcast_ref::<Refused>() {
                Some(refused) if out.json => println!("{}", refused.to_json()),
                _ => eprintln!("corecast: {error:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, out: Printer) -> Result<()> {
    let connect = || Conn::open(&target::node_addr(&cli.global)?, &token::for_session(&cli.global)?);
    match &cli.command {
        Command::Token { user, rooms, ttl_secs } => {
            let token = token::mint(user, rooms.as_deref(), *ttl_secs)?;
            out.emit(&token, serde_json::json!({ "type": "token", "token": token }));
            Ok(())
        }
        Command::Sub { rooms, count } => commands::rooms::sub(&mut connect()?, out, rooms, *count),
        Command::Pub { room, message } => commands::rooms::publish(&mut connect()?, out, room, message),
        Command::History { room, limit } => commands::rooms::history(&mut connect()?, out, room, *limit),
        Command::Presence { room } => commands::rooms::presence(&mut connect()?, out, room),
        Command::Send { to, message } => commands::chat::send(&mut connect()?, out, to, message),
        Command::Sync { conv, after } => commands::chat::sync(&mut connect()?, out, conv, *after),
        Command::Unread => commands::chat::unread(&mut connect()?, out),
        Command::BenchPing { count } => commands::ping::bench_ping(&mut connect()?, out, *count),
    }
}
