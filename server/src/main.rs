//! `corecast-server`: the server node binary. `corecast-server` runs the
//! server (with `--check-config` it only prints the merged configuration),
//! and `corecast-server token USER` mints a client token for development.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde::Serialize;

use corecast_server::config::{Config, DriverChoice};
use corecast_server::{auth, node};
use corecast_settings::build_info::VERSION_LINE;
use corecast_settings::logs::LogFormat;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// corecast server node: live rooms and broadcast over io_uring shards.
///
/// Settings come from defaults, then the TOML file given with --config, then
/// CORECAST_<SETTING> environment variables (e.g. CORECAST_JWT_SECRET,
/// CORECAST_ADMIN_KEY, CORECAST_HEARTBEAT_MS), then these flags.
/// `--check-config` prints every setting in force, defaults included.
#[derive(Parser)]
#[command(version = VERSION_LINE, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "CORECAST_CONFIG")]
    config: Option<PathBuf>,
    /// Print the merged configuration (secrets redacted) and exit.
    #[arg(long)]
    check_config: bool,
    #[command(flatten)]
    overrides: Overrides,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Mint a client token (HS256) with the configured JWT secret.
    Token {
        /// User id (the token's `sub`).
        user: String,
        /// Rooms the user may join: names or prefixes ending in `*`,
        /// comma-separated. Default: any room.
        #[arg(long, value_delimiter = ',')]
        rooms: Option<Vec<String>>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
}

/// Command-line overrides of configuration settings (see config.rs for
/// each setting's meaning and default). Secrets are not accepted as flags,
/// so they never show in a process list.
#[derive(clap::Args, Serialize, Default)]
struct Overrides {
    /// Client listener address.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    /// Control plane address.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    control_listen: Option<SocketAddr>,
    /// Number of shards, 0 = one per core.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    shards: Option<usize>,
    /// Pin shard threads to CPUs.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pin_threads: Option<bool>,
    /// CPU of shard 0 when pinning.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    first_cpu: Option<usize>,
    /// io driver.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    driver: Option<DriverChoice>,
    /// Client heartbeat interval in ms.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    heartbeat_ms: Option<u32>,
    /// Idle timeout in ms.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_timeout_ms: Option<u32>,
    /// Authentication deadline in ms.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_timeout_ms: Option<u32>,
    /// Largest client frame in bytes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_frame_len: Option<u32>,
    /// Rooms per connection.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_rooms_per_conn: Option<usize>,
    /// Outbound queue limit per connection in bytes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    outbound_queue_bytes: Option<usize>,
    /// Time over the queue limit before a slow-consumer CLOSE, ms.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    slow_consumer_grace_ms: Option<u32>,
    /// How long to try writing a CLOSE, ms.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    close_linger_ms: Option<u32>,
    /// Room rate above which members are flushed on the tick, msgs/s, 0 = off.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    hot_room_msgs_per_sec: Option<u32>,
    /// Flush tick for hot rooms, ms.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    flush_tick_ms: Option<u32>,
    /// Shutdown grace period, ms.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_grace_ms: Option<u32>,
    /// Timing wheel resolution, ms.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    timer_tick_ms: Option<u32>,
    /// PUBLISH/SEND frames per second per connection, 0 = no limit.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_rate_per_sec: Option<u32>,
    /// PUBLISH/SEND burst per connection.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_burst: Option<u32>,
    /// PUBLISH/SEND bytes per second per connection, 0 = no limit.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    publish_bytes_per_sec: Option<u32>,
    /// Refused frames in a row before CLOSE rate_limited.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit_close_after: Option<u32>,
    /// New connections per second per source address, 0 = no limit.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_rate_per_source: Option<u32>,
    /// New connections per second for the node, 0 = no limit.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_rate_total: Option<u32>,
    /// Unauthenticated connections for the node.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_unauthenticated: Option<usize>,
    /// Directory of the embedded message store.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Groups up to this size fan out on write.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    small_group_limit: Option<usize>,
    /// Storage call timeout, ms.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    store_timeout_ms: Option<u32>,
    /// Node name in a cluster.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<String>,
    /// Redis URL; set, the node joins a cluster.
    #[arg(long = "redis")]
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_url: Option<String>,
    /// PEM CA file: link to the routers over TLS, trusting these CAs.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    link_tls_ca_file: Option<PathBuf>,
    /// Client address published for dispatch.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise_addr: Option<String>,
    /// WebSocket URL published for dispatch.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise_ws_url: Option<String>,
    /// Relative share of new clients.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
    /// Connection ceiling.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_connections: Option<u64>,
    /// Lifetime of the node's Redis registration, ms.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    registry_ttl_ms: Option<u32>,
    /// Lifetime of a user's route in Redis, ms.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    route_ttl_ms: Option<u32>,
    /// AUTH verifications per second for the node, 0 = no limit.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_rate_per_sec: Option<u32>,
    /// WebSocket listener.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    ws_listen: Option<SocketAddr>,
    /// Origins allowed to open a WebSocket, comma-separated.
    #[arg(long, value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    ws_allowed_origins: Option<Vec<String>>,
    /// Largest WebSocket message, bytes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    ws_max_message_len: Option<u32>,
    /// Public HTTP listener (demo page, JS client, HTTP fallback).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    web_listen: Option<SocketAddr>,
    /// Mint demo tokens at POST /demo/token (development only).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    demo_tokens: Option<bool>,
    /// Log lines as text or JSON.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
}

fn main() -> anyhow::Result<()> {
    corecast_server::allocator::refuse_transparent_huge_pages();
    let cli = Cli::parse();
    let config = corecast_settings::load::<Config>(cli.config.as_deref(), &cli.overrides)?;
    corecast_settings::logs::init(config.log_format);
    match cli.command {
        Some(Command::Token { user, rooms, ttl_secs }) => {
            let Some(secret) = &config.jwt_secret else {
                anyhow::bail!("no JWT secret configured: set CORECAST_JWT_SECRET or jwt_secret in the config file");
            };
            println!("{}", auth::mint_token(secret.as_bytes(), &user, ttl_secs, rooms)?);
            Ok(())
        }
        None if cli.check_config => {
            let mut shown = config.clone();
            shown.jwt_secret = shown.jwt_secret.map(|_| "<redacted>".into());
            shown.admin_key = shown.admin_key.map(|_| "<redacted>".into());
            print!("{}", toml::to_string_pretty(&shown)?);
            println!(
                "# configuration is valid; {} shards, client listener {}",
                shown.shard_count(),
                shown.listen_addr()
            );
            Ok(())
        }
        None => node::run(config),
    }
}
