//! What the parent tells a worker process and what the worker says back.
//!
//! A worker gets its [`WorkerPlan`] as the first JSON line on stdin (not on
//! argv, so the JWT secret never shows in a process list), then
//! [`Command`]s one per line. It writes [`WorkerMsg`]s to stdout, one JSON
//! object per line; its logs go to stderr. Connections are numbered
//! globally: with `rooms > 0`, numbers below `publishers` are publishers
//! (publisher `p` publishes to room `p % rooms`), the rest are members
//! (member `m` joins room `m % rooms`); with `rooms == 0` every connection
//! just stays connected. With `history` the rooms are stream rooms: every
//! member checks the stream positions it gets ([`crate::stream`]).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::stream::StreamCounts;
use crate::target::Target;

/// Everything one worker process needs to run its share.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerPlan {
    /// Index of this worker.
    pub worker: usize,
    /// Which server speaks what.
    pub target: Target,
    /// The server's client address.
    pub addr: SocketAddr,
    /// WebSocket path (corecast over WebSocket).
    #[serde(default)]
    pub ws_path: String,
    /// Source addresses to bind (with `IP_BIND_ADDRESS_NO_PORT`), one per
    /// connection round-robin; empty: unbound.
    pub source_ips: Vec<Ipv4Addr>,
    /// JWT secret (corecast target).
    pub jwt_secret: Option<String>,
    /// Prefix of user and client ids, unique per run.
    pub run_id: String,
    /// Global number of this worker's first connection.
    pub first_conn: usize,
    /// Connections of this worker.
    pub conns: usize,
    /// Publishers in the whole run (global numbers `0..publishers`).
    pub publishers: usize,
    /// Rooms in the whole run (0: connections only).
    pub rooms: usize,
    /// Payload bytes of each published message.
    pub payload_len: usize,
    /// Messages per second per publisher; `None` = as fast as the socket takes them.
    pub rate: Option<f64>,
    /// The rooms have a stream (corecast history): JOIN must be answered
    /// JOINED, and members check that positions grow by one.
    #[serde(default)]
    pub history: bool,
    /// New connections per second for this worker; `None` = as fast as possible.
    pub connect_rate: Option<f64>,
    /// Connections of this worker that may be connecting at once.
    pub connect_concurrency: usize,
    /// Per-connection bound on connect + handshake + subscribe.
    pub connect_timeout_ms: u64,
    /// Heartbeat interval until the server names one (corecast's AUTH_OK);
    /// 0: send none.
    pub heartbeat_ms: u64,
    /// Monotonic time at which the worker reports and exits no matter what.
    pub deadline_ns: u64,
}

/// What a connection does, derived from its global number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Connects, authenticates and stays.
    Idle,
    /// Publishes to `room`; `id` is its global number, stamped in payloads.
    Publisher {
        /// Room index.
        room: usize,
        /// Global publisher number.
        id: usize,
    },
    /// Receives from `room`.
    Member {
        /// Room index.
        room: usize,
    },
}

impl WorkerPlan {
    /// The role of the connection with global number `g`.
    pub fn role(&self, g: usize) -> Role {
        if self.rooms == 0 {
            Role::Idle
        } else if g < self.publishers {
            Role::Publisher { room: g % self.rooms, id: g }
        } else {
            Role::Member { room: (g - self.publishers) % self.rooms }
        }
    }

    /// How many publishers publish to `room` (a member tracks a sequence
    /// number for each; publisher `p` is the `p / rooms`-th of its room).
    pub fn publishers_in_room(&self, room: usize) -> usize {
        if self.rooms == 0 || room >= self.rooms {
            return 0;
        }
        (self.publishers + self.rooms - 1 - room) / self.rooms
    }
}

/// Parent to worker, after the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Fan-out timeline, monotonic ns: publish in `[publish_from,
    /// publish_until)`, measure messages stamped in `[measure_from, measure_until)`.
    Go {
        /// Publishers start.
        publish_from: u64,
        /// Measurement window start.
        measure_from: u64,
        /// Measurement window end.
        measure_until: u64,
        /// Publishers stop.
        publish_until: u64,
    },
    /// Record the first broadcast each connection receives from now on.
    Watch,
    /// Recovery storm: at `at_ns` (monotonic) every member that is set up
    /// closes its connection and reconnects at once, joining again with
    /// `since` = the last stream position it saw.
    Storm {
        /// When the members drop.
        at_ns: u64,
    },
    /// Close every connection, report the result and exit.
    Stop,
}

/// Worker to parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMsg {
    /// Counters while connecting or waiting.
    Progress(Progress),
    /// Every connection is established (and subscribed) or failed.
    Ready(Ready),
    /// The final figures.
    Result(Box<WorkerResult>),
    /// The worker cannot go on.
    Fatal {
        /// What went wrong.
        error: String,
    },
}

/// Running counters of one worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    /// Connections fully set up.
    pub ready: u64,
    /// Connections that failed while being set up.
    pub failed: u64,
    /// Connections lost after they were set up.
    pub dropped: u64,
    /// Connections that have the watched broadcast.
    pub broadcast_received: u64,
    /// Stamped room messages received by members.
    pub received: u64,
    /// Of those, the ones stamped inside the measurement window.
    pub received_in_window: u64,
    /// Messages this worker's publishers stamped inside the window, per
    /// room (empty for a worker without publishers).
    pub sent_in_window_per_room: Vec<u64>,
    /// This worker has nothing more to publish.
    pub publish_done: bool,
    /// Recovery storm: members whose rejoin was answered JOINED.
    #[serde(default)]
    pub rejoined: u64,
    /// Recovery storm: members that caught up after their rejoin.
    #[serde(default)]
    pub caught_up: u64,
}

impl Progress {
    /// Adds another worker's counters; `publish_done` holds when it holds for both.
    pub fn add(&mut self, other: &Progress) {
        self.ready += other.ready;
        self.failed += other.failed;
        self.dropped += other.dropped;
        self.broadcast_received += other.broadcast_received;
        self.received += other.received;
        self.received_in_window += other.received_in_window;
        if self.sent_in_window_per_room.len() < other.sent_in_window_per_room.len() {
            self.sent_in_window_per_room.resize(other.sent_in_window_per_room.len(), 0);
        }
        for (sum, n) in self.sent_in_window_per_room.iter_mut().zip(&other.sent_in_window_per_room) {
            *sum += n;
        }
        self.publish_done &= other.publish_done;
        self.rejoined += other.rejoined;
        self.caught_up += other.caught_up;
    }

    /// The sum over workers (`publish_done` only when every worker is done).
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Progress>) -> Progress {
        all.into_iter().fold(Progress { publish_done: true, ..Progress::default() }, |mut sum, p| {
            sum.add(p);
            sum
        })
    }

    /// Room deliveries expected from the messages stamped in the window so
    /// far, given how many members each room has.
    pub fn expected_in_window(&self, members_per_room: &[u64]) -> u64 {
        self.sent_in_window_per_room.iter().zip(members_per_room).map(|(sent, members)| sent * members).sum()
    }
}

/// Sent once all connections of a worker are settled.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ready {
    /// Connections fully set up.
    pub ready: u64,
    /// Connections that failed, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Members set up in each room.
    pub members_per_room: Vec<u64>,
}

/// Everything a worker measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    /// Connections attempted.
    pub attempted: u64,
    /// Connections fully set up.
    pub ready: u64,
    /// Failures while connecting, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Established connections lost before the end, by reason.
    pub disconnected: BTreeMap<String, u64>,
    /// First connect attempt (monotonic ns), 0 if none.
    pub first_attempt_ns: u64,
    /// Last connection set up (monotonic ns), 0 if none.
    pub last_ready_ns: u64,
    /// Connect + handshake latency buckets (ns, count).
    pub connect_latency: Vec<(u64, u64)>,
    /// Delivery latency buckets (ns, count) of measured room messages.
    pub latency: Vec<(u64, u64)>,
    /// Latency buckets (ns, count) of the watched broadcast.
    pub broadcast_latency: Vec<(u64, u64)>,
    /// Messages received whose stamp falls in the window.
    pub received_in_window: u64,
    /// All stamped messages received by members.
    pub received_total: u64,
    /// Sequence numbers skipped, summed over publishers and receivers.
    pub seq_gaps: u64,
    /// Messages at or below a sequence number already seen.
    pub duplicates: u64,
    /// Messages published with a stamp in the window, per room.
    pub sent_in_window_per_room: Vec<u64>,
    /// Messages published in total.
    pub sent_total: u64,
    /// Messages not published because the publisher's socket was backed up.
    pub publish_skipped: u64,
    /// Errors the server reported on established connections, by message.
    pub server_errors: BTreeMap<String, u64>,
    /// Connections that received the watched broadcast.
    pub broadcast_received: u64,
    /// When the last of them received it (monotonic ns).
    pub broadcast_last_ns: u64,
    /// Stream positions checked by members, and the recovery storm's rejoins.
    #[serde(default)]
    pub stream: StreamCounts,
    /// Recovery storm: drop to JOINED, per rejoined member, buckets (ns, count).
    #[serde(default)]
    pub rejoin_latency: Vec<(u64, u64)>,
    /// Recovery storm: drop to caught up, per member, buckets (ns, count).
    #[serde(default)]
    pub catch_up_latency: Vec<(u64, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rooms: usize, publishers: usize) -> WorkerPlan {
        WorkerPlan {
            worker: 0,
            target: Target::Corecast,
            addr: "127.0.0.1:1".parse().unwrap(),
            ws_path: String::new(),
            source_ips: Vec::new(),
            jwt_secret: None,
            run_id: "t".into(),
            first_conn: 0,
            conns: 10,
            publishers,
            rooms,
            payload_len: 100,
            rate: Some(1.0),
            history: false,
            connect_rate: None,
            connect_concurrency: 10,
            connect_timeout_ms: 1000,
            heartbeat_ms: 1000,
            deadline_ns: 0,
        }
    }

    #[test]
    fn roles_and_publisher_counts_agree() {
        let p = plan(3, 7);
        assert_eq!(p.role(5), Role::Publisher { room: 2, id: 5 });
        assert_eq!(p.role(7), Role::Member { room: 0 });
        assert_eq!(p.role(8), Role::Member { room: 1 });
        let mut count = [0; 3];
        for g in 0..7 {
            if let Role::Publisher { room, .. } = p.role(g) {
                count[room] += 1;
            }
        }
        assert_eq!(count, [p.publishers_in_room(0), p.publishers_in_room(1), p.publishers_in_room(2)]);
        assert_eq!(plan(0, 0).role(3), Role::Idle);
    }

    #[test]
    fn progress_sums_and_expects_per_room() {
        let a = Progress {
            ready: 2,
            dropped: 1,
            sent_in_window_per_room: vec![3, 1],
            publish_done: true,
            ..Default::default()
        };
        let b = Progress { ready: 5, received_in_window: 7, publish_done: true, caught_up: 4, ..Default::default() };
        let sum = Progress::sum([&a, &b]);
        assert_eq!((sum.ready, sum.dropped, sum.received_in_window, sum.caught_up), (7, 1, 7, 4));
        assert!(sum.publish_done);
        assert_eq!(sum.expected_in_window(&[10, 100]), 130);
        let c = Progress { publish_done: false, ..Default::default() };
        assert!(!Progress::sum([&a, &c]).publish_done, "one worker still publishing");
        assert!(Progress::sum(std::iter::empty()).publish_done);
    }

    #[test]
    fn commands_are_one_json_line() {
        let line = serde_json::to_string(&Command::Stop).unwrap();
        assert_eq!(line, r#"{"cmd":"stop"}"#);
        assert!(matches!(serde_json::from_str(&line).unwrap(), Command::Stop));
        let line = serde_json::to_string(&Command::Storm { at_ns: 5 }).unwrap();
        assert_eq!(line, r#"{"cmd":"storm","at_ns":5}"#);
    }
}
