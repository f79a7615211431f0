//! Metric names and the per-shard handles the data path increments.
//!
//! Handles are resolved once per shard (label `shard`), so the hot path does
//! an uncontended atomic add and no registry lookup. The control plane
//! renders them in Prometheus text format at `GET /metrics`.

use corecast_proto::ErrorCode;
use metrics::{counter, gauge, Counter, Gauge};

/// The handles one shard updates.
pub struct ShardMetrics {
    /// Open connections on this shard.
    pub connections: Gauge,
    /// Connections accepted.
    pub accepts: Counter,
    /// Frames decoded from clients.
    pub frames_in: Counter,
    /// Frames written to clients.
    pub frames_out: Counter,
    /// PUSH frames queued to a connection.
    pub deliveries: Counter,
    /// PUSH frames encoded (once per message, however many recipients).
    pub encodes: Counter,
    /// Ephemeral messages dropped because a connection's queue was full.
    pub drops_slow_consumer: Counter,
    /// Frames to another shard dropped because its inbox was full.
    pub drops_inbox_full: Counter,
    /// Chat requests refused because the router core's inbox was full.
    pub drops_core_inbox_full: Counter,
    /// Connections closed as slow consumers.
    pub slow_consumer_closes: Counter,
    /// Failed AUTH attempts.
    pub auth_failures: Counter,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: Counter,
    /// Rooms with at least one member on this shard.
    pub rooms: Gauge,
    shard: String,
}

impl ShardMetrics {
    /// Resolves every handle for `shard` and records the io driver in use.
    pub fn new(shard: u16, driver: &'static str) -> ShardMetrics {
        let s = shard.to_string();
        gauge!("corecast_shard_driver", "shard" => s.clone(), "driver" => driver).set(1.0);
        ShardMetrics {
            connections: gauge!("corecast_connections", "shard" => s.clone()),
            accepts: counter!("corecast_accepts_total", "shard" => s.clone()),
            frames_in: counter!("corecast_frames_in_total", "shard" => s.clone()),
            frames_out: counter!("corecast_frames_out_total", "shard" => s.clone()),
            deliveries: counter!("corecast_deliveries_total", "shard" => s.clone()),
            encodes: counter!("corecast_encodes_total", "shard" => s.clone()),
            drops_slow_consumer: counter!("corecast_drops_total", "shard" => s.clone(), "reason" => "slow_consumer"),
            drops_inbox_full: counter!("corecast_drops_total", "shard" => s.clone(), "reason" => "inbox_full"),
            drops_core_inbox_full: counter!("corecast_drops_total", "shard" => s.clone(), "reason" => "core_inbox_full"),
            slow_consumer_closes: counter!("corecast_slow_consumer_closes_total", "shard" => s.clone()),
            auth_failures: counter!("corecast_auth_failures_total", "shard" => s.clone()),
            tls_handshake_failures: counter!("corecast_tls_handshake_failures_total", "shard" => s.clone()),
            rooms: gauge!("corecast_rooms", "shard" => s.clone()),
            shard: s,
        }
    }

    /// Counts a limit being hit, by limit name.
    pub fn limit_hit(&self, limit: &'static str) {
        counter!("corecast_limit_hits_total", "shard" => self.shard.clone(), "limit" => limit).increment(1);
    }

    /// Counts a connection closed by the server, by code.
    pub fn closed_by_server(&self, code: ErrorCode) {
        counter!("corecast_server_closes_total", "shard" => self.shard.clone(), "code" => code.name()).increment(1);
    }
}
