//! `corecast-router`: the router tier binary. It owns a share of the
//! conversations, links to every server node, routes by the Redis route
//! table and answers dispatch and the cluster's admin API.
//! `--check-config` prints the merged configuration and exits.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use metrics_exporter_prometheus::PrometheusBuilder;
use serde::Serialize;

use corecast_router::tier::config::{RouterConfig, StoreChoice};
use corecast_settings::build_info::VERSION_LINE;
use corecast_settings::logs::LogFormat;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// corecast router: conversation ownership, cross-node routing, dispatch.
///
/// Settings come from defaults, then the TOML file given with --config, then
/// CORECAST_ROUTER_<SETTING> environment variables (e.g.
/// CORECAST_ROUTER_ADMIN_KEY, CORECAST_ROUTER_REDIS_URL), then these flags.
/// `--check-config` prints every setting in force, defaults included.
#[derive(Parser)]
#[command(version = VERSION_LINE, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "CORECAST_ROUTER_CONFIG")]
    config: Option<PathBuf>,
    /// Print the merged configuration (secrets redacted) and exit.
    #[arg(long)]
    check_config: bool,
    #[command(flatten)]
    overrides: Overrides,
}

/// Command-line overrides (see tier/config.rs for meanings and defaults).
/// The admin key is not accepted as a flag, so it never shows in a process
/// list.
#[derive(clap::Args, Serialize, Default)]
struct Overrides {
    /// Router id.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    router_id: Option<String>,
    /// Link listener for server nodes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    link_listen: Option<SocketAddr>,
    /// Public HTTP listener (dispatch, health).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    http_listen: Option<SocketAddr>,
    /// Admin HTTP listener (admin API, metrics).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<SocketAddr>,
    /// Redis URL.
    #[arg(long = "redis")]
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_url: Option<String>,
    /// Message store.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<StoreChoice>,
    /// Directory of the embedded store.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Lifetime of the router's Redis registration, ms.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    registry_ttl_ms: Option<u32>,
    /// Health pull interval, ms.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    health_pull_ms: Option<u32>,
    /// Log lines as text or JSON.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
}

fn random_key() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = corecast_settings::load::<RouterConfig>(cli.config.as_deref(), &cli.overrides)?;
    corecast_settings::logs::init(config.log_format);
    if cli.check_config {
        let mut shown = config.clone();
        shown.admin_key = shown.admin_key.map(|_| "<redacted>".into());
        print!("{}", toml::to_string_pretty(&shown)?);
        println!("# configuration is valid; router id {}", shown.id());
        return Ok(());
    }
    let admin_key = match &config.admin_key {
        Some(key) => key.clone(),
        None => {
            let key = random_key();
            println!("no admin key configured (CORECAST_ROUTER_ADMIN_KEY): generated for this run: {key}");
            println!("server nodes must use the same admin key for the cluster admin API to reach them");
            key
        }
    };
    let prometheus = PrometheusBuilder::new().install_recorder().context("installing the metrics recorder")?;
    corecast_settings::build_info::record_metric();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(corecast_router::tier::run(config, admin_key, prometheus))
}
