//! Server settings: every setting and its default, and the checks they
//! must pass. They are loaded by `corecast-settings` (defaults, a TOML
//! file, `CORECAST_<SETTING>` environment variables, command-line flags,
//! later ones winning); `--check-config` prints the result and exits. The
//! README's settings table is tested against this struct
//! (`server/tests/readme_settings.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

use corecast_cluster::room_stream::{RoomPolicy, RoomRule};
use corecast_storage::embedded::Durability;

use corecast_settings::logs::LogFormat;
use corecast_settings::{Settings, SettingsError};
use serde::{Deserialize, Serialize};

/// Which io driver the shards run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DriverChoice {
    /// io_uring when the kernel offers it, epoll otherwise.
    Auto,
    /// io_uring only; start fails without it.
    IoUring,
    /// epoll only.
    Epoll,
}

/// The whole server configuration. Field docs are the reference; the README
/// lists them with their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Client listener. `None` means 0.0.0.0:7100, or 127.0.0.1:7100 when no
    /// JWT secret is configured (a generated secret never faces the network).
    pub listen: Option<SocketAddr>,
    /// Control plane (health, metrics, admin API).
    pub control_listen: SocketAddr,
    /// Number of shards (threads pinned to cores); 0 = one per core.
    pub shards: usize,
    /// Pin each shard's thread to its own CPU (shard i on CPU first_cpu + i,
    /// wrapping around the CPUs available).
    pub pin_threads: bool,
    /// CPU of shard 0 when pinning.
    pub first_cpu: usize,
    /// io driver of the shards.
    pub driver: DriverChoice,
    /// Submission queue entries of each shard's io_uring.
    pub io_uring_entries: u32,
    /// Accept backlog of each shard's listener.
    pub listen_backlog: i32,
    /// PEM certificate chain: with `tls_key_file`, clients must speak TLS.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// HS256 secret for client tokens. `None` generates one at start (dev mode).
    pub jwt_secret: Option<String>,
    /// PEM file with an RSA public key: RS256 tokens signed by its private
    /// half are accepted too.
    pub jwt_rsa_public_key_file: Option<PathBuf>,
    /// PEM file with a P-256 public key: ES256 tokens signed by its private
    /// half are accepted too.
    pub jwt_ec_public_key_file: Option<PathBuf>,
    /// Key guarding the admin API. `None` generates one at start and prints it.
    pub admin_key: Option<String>,
    /// Interval at which clients should PING when otherwise idle.
    pub heartbeat_ms: u32,
    /// Close a connection idle this long; `None` = 3 x heartbeat.
    pub idle_timeout_ms: Option<u32>,
    /// Close a connection that has not authenticated within this time.
    pub auth_timeout_ms: u32,
    /// Largest frame a client may send, header included.
    pub max_frame_len: u32,
    /// Rooms one connection may be in at once.
    pub max_rooms_per_conn: usize,
    /// Longest room name, in bytes.
    pub max_room_name_len: usize,
    /// Bytes of messages queued for one connection before ephemeral
    /// messages to it are dropped.
    pub outbound_queue_bytes: usize,
    /// A connection over its queue limit for this long is closed as a slow
    /// consumer.
    pub slow_consumer_grace_ms: u32,
    /// How long the server keeps trying to write a CLOSE before it drops the
    /// connection.
    pub close_linger_ms: u32,
    /// Rooms publishing more than this many messages per second are flushed
    /// to their members on the flush tick instead of at once; 0 disables.
    pub hot_room_msgs_per_sec: u32,
    /// Flush tick for hot rooms.
    pub flush_tick_ms: u32,
    /// Capacity of each shard's inbox (frames from other shards and the
    /// control plane).
    pub shard_inbox_capacity: usize,
    /// On shutdown, how long shards wait for connections to take their CLOSE.
    pub shutdown_grace_ms: u32,
    /// Reconnect hint sent with CLOSE on shutdown: base delay.
    pub reconnect_base_ms: u32,
    /// Reconnect hint: random extra delay up to this, so clients spread out.
    pub reconnect_jitter_ms: u32,
    /// Timing-wheel resolution for idle and auth deadlines.
    pub timer_tick_ms: u32,
    /// PUBLISH and SEND frames one connection may send per second (0 = no
    /// limit); beyond it the frame gets ERROR rate_limited.
    pub publish_rate_per_sec: u32,
    /// Frames a connection may send at once before the rate applies.
    pub publish_burst: u32,
    /// PUBLISH and SEND bytes one connection may send per second (0 = no
    /// limit).
    pub publish_bytes_per_sec: u32,
    /// Bytes a connection may send at once before the byte rate applies.
    pub publish_bytes_burst: u32,
    /// A connection refused this many frames in a row is closed with CLOSE
    /// rate_limited.
    pub rate_limit_close_after: u32,
    /// New connections per second from one source address (0 = no limit).
    pub connect_rate_per_source: u32,
    /// New connections per second for the whole node (0 = no limit).
    pub connect_rate_total: u32,
    /// Connections that have not authenticated yet, for the whole node;
    /// beyond it new connections are closed at once.
    pub max_unauthenticated: usize,
    /// AUTH verifications per second for the whole node (0 = no limit),
    /// spent per timer tick: beyond it an AUTH gets ERROR rate_limited and
    /// CLOSE with a jittered reconnect hint, so a reconnect storm is
    /// verified at a steady pace and its excess comes back spread out.
    pub auth_rate_per_sec: u32,
    /// Log (and count) a shard whose thread is held by one task for longer
    /// than this; 0 disables the watchdog.
    pub stall_threshold_ms: u32,
    /// Directory of the embedded message store.
    pub data_dir: PathBuf,
    /// When a stored message counts as stored: `{ mode = "strict" }` (fsync
    /// before SENT) or `{ mode = "batched", interval_ms = N }`.
    pub durability: Durability,
    /// Groups up to this size fan out on write into members' inboxes.
    pub small_group_limit: usize,
    /// A storage call slower than this fails with `unavailable`.
    pub store_timeout_ms: u32,
    /// Capacity of the queue from shards to the router core.
    pub core_inbox_capacity: usize,
    /// This node's name in a cluster; `None` = `<hostname>-<client port>`.
    /// Each start adds a random suffix, so routes of an earlier run of the
    /// same node are never mistaken for this run's connections.
    pub node_id: Option<String>,
    /// Redis URL (`redis://host:port/`, or `redis+sentinel://host1:26379,
    /// host2:26379,host3:26379/service` for a Sentinel-managed primary,
    /// followed across failovers). Set, the node joins a cluster: it
    /// registers in Redis, writes its users' routes there and links to every
    /// router; chat goes to the routers instead of an in-process core.
    pub redis_url: Option<String>,
    /// PEM CA certificate(s): set, the node links to the routers over TLS
    /// and accepts a router only with a certificate from these CAs naming
    /// the host of its link address.
    pub link_tls_ca_file: Option<PathBuf>,
    /// Client address published for dispatch; `None` = the listen address.
    pub advertise_addr: Option<String>,
    /// WebSocket URL published for dispatch; `None` = built from the
    /// advertised client host, the WebSocket port and path (`wss` with TLS).
    pub advertise_ws_url: Option<String>,
    /// Control-plane address routers pull health from; `None` =
    /// `control_listen`.
    pub advertise_control_addr: Option<String>,
    /// PEM certificate chain: with `control_tls_key_file`, the control
    /// plane (health, metrics, admin API) speaks only HTTPS, and routers
    /// reach it trusting their `control_tls_ca_file`. The certificate must
    /// name the host of `advertise_control_addr`.
    pub control_tls_cert_file: Option<PathBuf>,
    /// PEM private key of `control_tls_cert_file`.
    pub control_tls_key_file: Option<PathBuf>,
    /// Relative share of new clients dispatch sends here.
    pub weight: u32,
    /// Most client connections; `None` = the open-file limit minus a reserve
    /// for the node's own files and links.
    pub max_connections: Option<u64>,
    /// Lifetime of the node's registration in Redis; renewed every third of
    /// it. A node that stops renewing drops out of the cluster after this.
    pub registry_ttl_ms: u32,
    /// Lifetime of a user's route in Redis; renewed every third of it while
    /// the user is connected.
    pub route_ttl_ms: u32,
    /// WebSocket listener on the shards; `None` = the client listener's
    /// address with port + 1 (7101). TLS (wss) when TLS is configured.
    pub ws_listen: Option<SocketAddr>,
    /// Path of the WebSocket endpoint.
    pub ws_path: String,
    /// Origins allowed to open a WebSocket (`scheme://host[:port]`, exact);
    /// empty allows every origin (tokens, not cookies, authenticate).
    pub ws_allowed_origins: Vec<String>,
    /// Largest WebSocket message a client may send.
    pub ws_max_message_len: u32,
    /// Public HTTP listener: the demo page, the JavaScript client and the
    /// HTTP fallback (SSE + POST); `None` = client port + 2 (7102).
    pub web_listen: Option<SocketAddr>,
    /// Serve `POST /demo/token`, which mints a token for any name. For demos
    /// and development only; on by itself when the JWT secret is generated.
    pub demo_tokens: bool,
    /// Log lines as readable text or as JSON objects (for log shippers).
    pub log_format: LogFormat,
    /// Room options by name pattern (`[[rooms]]`): history, presence, join
    /// and leave events. The first matching rule applies; other rooms are
    /// plain. The default has one rule, for the demo page's `demo-*` rooms.
    pub rooms: Vec<RoomRule>,
    /// Bytes of room history this node holds in all, split evenly between
    /// its shards (each owns the rooms that hash to it). Over it the least
    /// recently used room loses its whole history and its epoch moves on.
    pub room_history_budget_bytes: u64,
}

/// The default `[[rooms]]`: the demo page's rooms keep their last 100
/// messages for ten minutes and show who is there.
pub fn default_room_rules() -> Vec<RoomRule> {
    vec![RoomRule {
        pattern: "demo-*".into(),
        history_size: 100,
        history_ttl_ms: 600_000,
        presence: true,
        join_leave_events: true,
    }]
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: None,
            control_listen: SocketAddr::from(([127, 0, 0, 1], 7180)),
            shards: 0,
            pin_threads: true,
            first_cpu: 0,
            driver: DriverChoice::Auto,
            io_uring_entries: 2048,
            listen_backlog: 4096,
            tls_cert_file: None,
            tls_key_file: None,
            jwt_secret: None,
            jwt_rsa_public_key_file: None,
            jwt_ec_public_key_file: None,
            admin_key: None,
            heartbeat_ms: 30_000,
            idle_timeout_ms: None,
            auth_timeout_ms: 5_000,
            max_frame_len: corecast_proto::DEFAULT_MAX_FRAME_LEN,
            max_rooms_per_conn: 64,
            max_room_name_len: 200,
            outbound_queue_bytes: 256 * 1024,
            slow_consumer_grace_ms: 3_000,
            close_linger_ms: 2_000,
            hot_room_msgs_per_sec: 200,
            flush_tick_ms: 2,
            shard_inbox_capacity: 65_536,
            shutdown_grace_ms: 5_000,
            reconnect_base_ms: 1_000,
            reconnect_jitter_ms: 5_000,
            timer_tick_ms: 100,
            publish_rate_per_sec: 1_000,
            publish_burst: 2_000,
            publish_bytes_per_sec: 4 << 20,
            publish_bytes_burst: 8 << 20,
            rate_limit_close_after: 100,
            connect_rate_per_source: 1_000,
            connect_rate_total: 50_000,
            max_unauthenticated: 20_000,
            auth_rate_per_sec: 20_000,
            stall_threshold_ms: 500,
            data_dir: PathBuf::from("data"),
            durability: Durability::Strict,
            small_group_limit: 200,
            store_timeout_ms: 5_000,
            core_inbox_capacity: 65_536,
            node_id: None,
            redis_url: None,
            link_tls_ca_file: None,
            advertise_addr: None,
            advertise_ws_url: None,
            advertise_control_addr: None,
            control_tls_cert_file: None,
            control_tls_key_file: None,
            weight: 100,
            max_connections: None,
            registry_ttl_ms: 3_000,
            route_ttl_ms: 120_000,
            ws_listen: None,
            ws_path: "/ws".into(),
            ws_allowed_origins: Vec::new(),
            ws_max_message_len: 1 << 20,
            web_listen: None,
            demo_tokens: false,
            log_format: LogFormat::Text,
            rooms: default_room_rules(),
            room_history_budget_bytes: 64 << 20,
        }
    }
}

impl Settings for Config {
    const ENV_PREFIX: &'static str = "CORECAST_";
    /// `CORECAST_` is shared with the router (`CORECAST_ROUTER_*`) and other
    /// tools: the node reads only its own keys from it.
    const ENV_PREFIX_OWNED: bool = false;

    fn validate(&self) -> Result<(), SettingsError> {
        let bad = |msg: &str| Err(SettingsError::Invalid(msg.to_string()));
        if self.shards > crate::shard::MAX_SHARDS {
            return Err(SettingsError::Invalid(format!("shards must be at most {}", crate::shard::MAX_SHARDS)));
        }
        if self.heartbeat_ms == 0 || self.auth_timeout_ms == 0 || self.timer_tick_ms == 0 {
            return bad("heartbeat_ms, auth_timeout_ms and timer_tick_ms must be positive");
        }
        if self.max_frame_len < corecast_proto::HEADER_LEN as u32 + 64 {
            return bad("max_frame_len must leave room for a header and a token (>= 76)");
        }
        if self.outbound_queue_bytes < self.max_frame_len as usize {
            return bad("outbound_queue_bytes must hold at least one maximum-size frame");
        }
        if self.jwt_secret.as_deref().is_some_and(|s| s.len() < 16) {
            return bad("jwt_secret must be at least 16 bytes");
        }
        if self.admin_key.as_deref().is_some_and(|k| k.len() < 16) {
            return bad("admin_key must be at least 16 bytes");
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return bad("tls_cert_file and tls_key_file go together");
        }
        if self.control_tls_cert_file.is_some() != self.control_tls_key_file.is_some() {
            return bad("control_tls_cert_file and control_tls_key_file go together");
        }
        if !self.ws_path.starts_with('/') || self.ws_max_message_len < self.max_frame_len {
            return bad("ws_path must start with '/' and ws_max_message_len hold one maximum-size frame");
        }
        if self.registry_ttl_ms < 300 || self.route_ttl_ms < self.registry_ttl_ms {
            return bad("registry_ttl_ms must be >= 300 and route_ttl_ms >= registry_ttl_ms");
        }
        if self.node_id.as_deref().is_some_and(|id| id.is_empty() || id.len() > 64 || id.contains('/')) {
            return bad("node_id must be 1..=64 bytes without '/'");
        }
        if self.flush_tick_ms == 0 && self.hot_room_msgs_per_sec > 0 {
            return bad("flush_tick_ms must be positive while hot_room_msgs_per_sec is set");
        }
        RoomPolicy::new(&self.rooms).map_err(|e| SettingsError::Invalid(e.to_string()))?;
        Ok(())
    }
}

impl Config {
    /// The `[[rooms]]` rules, compiled (checked by `validate`).
    pub fn room_policy(&self) -> RoomPolicy {
        RoomPolicy::new(&self.rooms).unwrap_or_default()
    }

    /// The idle timeout in force.
    pub fn idle_timeout_ms(&self) -> u32 {
        self.idle_timeout_ms.unwrap_or(self.heartbeat_ms.saturating_mul(3))
    }

    /// Number of shards in force.
    pub fn shard_count(&self) -> usize {
        if self.shards == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(crate::shard::MAX_SHARDS)
        } else {
            self.shards
        }
    }

    /// The node name in force (without the per-start suffix).
    pub fn node_name(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let host = host.trim();
            let host = if host.is_empty() { "node" } else { host };
            format!("{host}-{}", self.listen_addr().port())
        })
    }

    /// The connection ceiling in force: the configured one, or the
    /// open-file limit less a reserve for the node's own descriptors (store
    /// files, listeners, router links, io_uring).
    pub fn connection_ceiling(&self) -> u64 {
        const RESERVE: u64 = 512;
        self.max_connections.unwrap_or_else(|| {
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: getrlimit writes into the struct we own.
            let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
            let files = if ok { limit.rlim_cur } else { 1024 };
            files.saturating_sub(RESERVE).max(1)
        })
    }

    /// The WebSocket listen address in force.
    pub fn ws_listen_addr(&self) -> SocketAddr {
        self.ws_listen.unwrap_or_else(|| next_port(self.listen_addr(), 1))
    }

    /// The public HTTP listen address in force.
    pub fn web_listen_addr(&self) -> SocketAddr {
        self.web_listen.unwrap_or_else(|| next_port(self.listen_addr(), 2))
    }

    /// The client listen address in force.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.unwrap_or_else(|| {
            let ip = if self.jwt_secret.is_some() { [0, 0, 0, 0] } else { [127, 0, 0, 1] };
            SocketAddr::from((ip, 7100))
        })
    }
}

/// `addr` with its port moved up by `by` (an ephemeral port stays 0).
fn next_port(addr: SocketAddr, by: u16) -> SocketAddr {
    let port = if addr.port() == 0 { 0 } else { addr.port().saturating_add(by) };
    SocketAddr::new(addr.ip(), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct NoOverrides {}

    #[test]
    fn defaults_are_valid_and_loopback_without_secret() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.listen_addr(), SocketAddr::from(([127, 0, 0, 1], 7100)));
        assert_eq!(config.idle_timeout_ms(), 90_000);
        let with_secret = Config { jwt_secret: Some("0123456789abcdef".into()), ..Config::default() };
        assert_eq!(with_secret.listen_addr(), SocketAddr::from(([0, 0, 0, 0], 7100)));
    }

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = std::env::temp_dir().join(format!("corecast-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "heartbeat_ms = 1000\nmax_rooms_per_conn = 5\n").unwrap();
        #[derive(Serialize)]
        struct Flags {
            max_rooms_per_conn: usize,
        }
        let config = corecast_settings::load::<Config>(Some(path.as_path()), &Flags { max_rooms_per_conn: 9 }).unwrap();
        assert_eq!(config.heartbeat_ms, 1000);
        assert_eq!(config.max_rooms_per_conn, 9);
        std::fs::write(&path, "no_such_setting = 1\n").unwrap();
        assert!(corecast_settings::load::<Config>(Some(path.as_path()), &NoOverrides {}).is_err());
    }
    #[test]
    fn certificates_come_with_their_keys() {
        let half = Config { control_tls_cert_file: Some("control.pem".into()), ..Config::default() };
        assert!(half.validate().unwrap_err().to_string().contains("control_tls_key_file"));
        let whole = Config { control_tls_key_file: Some("control.key".into()), ..half };
        whole.validate().unwrap();
        let half = Config { tls_key_file: Some("client.key".into()), ..Config::default() };
        assert!(half.validate().unwrap_err().to_string().contains("tls_cert_file"));
    }
}
