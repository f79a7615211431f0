//! Command-line interface: one subcommand per scenario, options shared by
//! all of them in [`Common`], and the hidden `worker` subcommand the parent
//! uses to start its worker processes.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

use crate::limits::SourceIps;
use crate::target::Target;

/// corecast-bench: the C1M load generator for corecast and its peers.
///
/// Scenarios open their connections from worker processes (each under
/// ~18,000 sockets, each from its own loopback source address), report a
/// table (or one JSON object with --json) and stop by themselves.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// Scenario to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The scenarios.
#[derive(Subcommand)]
pub enum Command {
    /// Open N connections, authenticate, hold them, close. Connect rate,
    /// connect latency, failures, server bytes per connection.
    Connect(ConnectArgs),
    /// M rooms x K members, P publishers at rate R: deliveries per second,
    /// end-to-end latency, loss, deliveries per server CPU-second.
    Fanout(FanoutArgs),
    /// One stream room of K members and a publisher that keeps publishing;
    /// every member drops at once and rejoins from its last position: time
    /// until all have caught up, and that nothing was lost or repeated.
    RecoveryStorm(RecoveryStormArgs),
    /// N connections, one admin broadcast: time until the last has it.
    Broadcast(BroadcastArgs),
    /// User-to-user and group chat: SENT latency, stored messages per second, delivery latency.
    Chat(ChatArgs),
    /// C1M on one set of connections: connect, hold (memory sampled),
    /// broadcast, fan-out; a JSON file and report.html in --out.
    C1m(C1mArgs),
    /// Write report.html (SVG charts, no network needed) from result files:
    /// `--json` lines or a `c1m.json`, several targets side by side.
    Report {
        /// Where to write the page.
        #[arg(long, short = 'o')]
        out: std::path::PathBuf,
        /// The page's title.
        #[arg(long, default_value = "corecast-bench report")]
        title: String,
        /// Also write each chart as its own SVG file into this directory.
        #[arg(long)]
        svg_dir: Option<std::path::PathBuf>,
        /// Result files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Print results (`--json` output files) side by side with ratios corecast / peer.
    Compare {
        /// Files with one JSON result per line.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Internal: a worker process (plan on stdin).
    #[command(hide = true)]
    Worker,
}

/// A rate: a number per second, or `max` for as fast as possible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub Option<f64>);

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "max" {
            return Ok(Rate(None));
        }
        match s.parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => Ok(Rate(Some(v))),
            _ => Err(format!("{s:?} is neither `max` nor a positive number")),
        }
    }
}

/// How clients reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// The wire protocol on TCP.
    Tcp,
    /// The wire protocol in WebSocket binary messages (corecast only).
    Ws,
}

/// Options of every scenario.
#[derive(Args, Clone)]
pub struct Common {
    /// Server to drive.
    #[arg(long, value_enum, default_value_t = Target::Corecast)]
    pub target: Target,
    /// How corecast clients connect: plain TCP, or WebSocket (binary
    /// messages) on the server's WebSocket port.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// WebSocket path (with `--transport ws`).
    #[arg(long, default_value = "/ws")]
    pub ws_path: String,
    /// Ask this dispatch URL (a router's `GET /v1/dispatch`) for the nodes
    /// to connect to, as a client would: worker `w` connects to node
    /// `w mod nodes` of the answer (corecast; overrides --addr).
    #[arg(long)]
    pub dispatch: Option<String>,
    /// Server client address [default: 127.0.0.1 and the target's usual port: 7100 (7101 over WebSocket), 4222, 1883, 6379].
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// corecast control address (admin API, metrics).
    #[arg(long, default_value = "127.0.0.1:7180")]
    pub control: SocketAddr,
    /// HS256 secret to mint client tokens with (corecast).
    #[arg(long, env = "CORECAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Admin key for the admin API (corecast broadcast).
    #[arg(long, env = "CORECAST_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// PID of the server, to measure its RSS and CPU time and the kernel's
    /// socket memory; a comma list for the nodes of a one-host cluster
    /// (summed, and per node in the time series).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Control addresses of the nodes (same order as --server-pid), whose
    /// `GET /health` connection counts go into the time series.
    #[arg(long, value_delimiter = ',')]
    pub node_control: Vec<SocketAddr>,
    /// Worker processes [default: as few as the limits allow].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Most sockets one worker process opens.
    #[arg(long, default_value_t = 18_000)]
    pub max_conns_per_worker: usize,
    /// Source addresses: `auto` (127.0.0.2, .3, ...), `none`, or a comma list.
    #[arg(long, default_value = "auto")]
    pub source_ips: SourceIps,
    /// With `--source-ips auto`: most connections per source address. The
    /// kernel's source-port search slows down as an address's port range
    /// fills, so fewer per address means a faster ramp.
    #[arg(long, default_value_t = 4000)]
    pub conns_per_source: usize,
    /// New connections per second over all workers, or `max`.
    #[arg(long, default_value = "max")]
    pub connect_rate: Rate,
    /// Connections one worker may have connecting at once.
    #[arg(long, default_value_t = 1000)]
    pub connect_concurrency: usize,
    /// Bound on one connection's connect + handshake + subscribe, ms.
    #[arg(long, default_value_t = 10_000)]
    pub connect_timeout_ms: u64,
    /// Heartbeat interval, ms, until the server names its own (corecast's
    /// AUTH_OK); every connection past its AUTH_OK is pinged once per interval.
    #[arg(long, default_value_t = 15_000)]
    pub heartbeat_ms: u64,
    /// Send no heartbeats at all: to check that a server's idle close is
    /// caught and fails the run.
    #[arg(long)]
    pub no_heartbeat: bool,
    /// Bound on the whole run, seconds.
    #[arg(long, default_value_t = 600)]
    pub max_run_s: u64,
    /// Print one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Directory for the full results: the JSON and report.html.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// `connect` options.
#[derive(Args, Clone)]
pub struct ConnectArgs {
    /// Connections to open.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: usize,
    /// Seconds to hold them once all are set up.
    #[arg(long, default_value_t = 5.0)]
    pub hold_s: f64,
    #[command(flatten)]
    pub common: Common,
}

/// `fanout` options.
#[derive(Args, Clone)]
pub struct FanoutArgs {
    /// Rooms (M).
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Members per room (K), not counting publishers.
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Publishers (P), spread round-robin over the rooms.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Messages per second per publisher, or `max` (open loop).
    #[arg(long, default_value = "10")]
    pub rate: Rate,
    /// Payload bytes (at least 24: the stamp).
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Seconds of publishing before the window.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_s: f64,
    /// Seconds of the measurement window.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Most seconds to wait for stragglers after publishing stops (ends as
    /// soon as every expected delivery arrived).
    #[arg(long, default_value_t = 2.0)]
    pub drain_s: f64,
    /// Stream rooms (corecast): the rooms are named `live-bench-room-N` and
    /// the server must have a `[[rooms]]` rule with history for them
    /// (`pattern = "live-*"`, `history_size` > 0). JOIN must be answered
    /// JOINED, and every member checks that the PUSH positions it gets grow
    /// by exactly one; any gap, duplicate or loss fails the run.
    #[arg(long)]
    pub history: bool,
    #[command(flatten)]
    pub common: Common,
}

/// `recovery-storm` options: one stream room (`live-bench-room-0`; the
/// server needs a `[[rooms]]` rule with history for `live-*`, large enough
/// for what is published while the members are away, and admission limits
/// that let every member back at once).
#[derive(Args, Clone)]
pub struct RecoveryStormArgs {
    /// Members of the room; every one of them drops and rejoins.
    #[arg(long, default_value_t = 10_000)]
    pub members: usize,
    /// Messages per second the room's one publisher publishes throughout.
    #[arg(long, default_value = "20")]
    pub rate: Rate,
    /// Payload bytes (at least 24: the stamp).
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Seconds of publishing before the members drop.
    #[arg(long, default_value_t = 3.0)]
    pub before_s: f64,
    /// Seconds of publishing after the drop; every member must have caught
    /// up before it ends.
    #[arg(long, default_value_t = 15.0)]
    pub after_s: f64,
    /// Most seconds to wait for stragglers after publishing stops (ends as
    /// soon as every expected delivery arrived).
    #[arg(long, default_value_t = 5.0)]
    pub drain_s: f64,
    #[command(flatten)]
    pub common: Common,
}

/// `broadcast` options.
#[derive(Args, Clone)]
pub struct BroadcastArgs {
    /// Connections to open.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub connections: usize,
    /// Payload bytes (at least 24).
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Seconds to wait for the broadcast to reach everyone.
    #[arg(long, default_value_t = 10.0)]
    pub timeout_s: f64,
    #[command(flatten)]
    pub common: Common,
}

/// `c1m` options: the connections are numbered as in `fanout`, the first
/// `rooms` being the publishers and the rest the rooms' members.
#[derive(Args, Clone)]
pub struct C1mArgs {
    /// Connections, publishers included.
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    pub connections: usize,
    /// Connections per room (one of them its publisher).
    #[arg(long, default_value_t = 10_000)]
    pub room_size: usize,
    /// Seconds to hold every connection before the broadcast; memory is sampled in the middle.
    #[arg(long, default_value_t = 60.0)]
    pub hold_s: f64,
    /// Seconds to wait for the broadcast to reach everyone.
    #[arg(long, default_value_t = 120.0)]
    pub broadcast_timeout_s: f64,
    /// Messages per second per room.
    #[arg(long, default_value = "0.05")]
    pub rate: Rate,
    /// Payload bytes (at least 24: the stamp).
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Seconds of publishing before the fan-out window.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_s: f64,
    /// Seconds of the fan-out window.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Most seconds to wait for stragglers after publishing stops (ends
    /// as soon as every expected delivery arrived).
    #[arg(long, default_value_t = 30.0)]
    pub drain_s: f64,
    #[command(flatten)]
    pub common: Common,
}

/// `chat` options.
#[derive(Args, Clone)]
pub struct ChatArgs {
    /// Direct conversations: one sender and one online receiver each.
    #[arg(long, default_value_t = 20)]
    pub pairs: usize,
    /// Groups: one sender and `group_size - 1` online receivers each.
    #[arg(long, default_value_t = 2)]
    pub groups: usize,
    /// Members per group, sender included.
    #[arg(long, default_value_t = 10)]
    pub group_size: usize,
    /// SENDs each sender keeps in flight (waiting for SENT).
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Payload bytes (at least 24: the stamp).
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Seconds to wait for deliveries after sending stops.
    #[arg(long, default_value_t = 2.0)]
    pub drain_s: f64,
    /// Milliseconds between two timed admin API calls during the load (0:
    /// none); shows whether chat load slows the control plane.
    #[arg(long, default_value_t = 10)]
    pub admin_probe_ms: u64,
    #[command(flatten)]
    pub common: Common,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("max".parse::<Rate>(), Ok(Rate(None)));
        assert_eq!("2.5".parse::<Rate>(), Ok(Rate(Some(2.5))));
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
