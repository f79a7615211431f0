//! A concurrent persistent-chat workload, the history it records and a
//! checker over that history. Per conversation, sender connections keep
//! SENDs in flight (resending the same client_msg_id after `unavailable`,
//! a timeout or a lost connection, reconnecting as needed, until SENT
//! comes), readers loop SYNC from their cursor (cursor = SYNC_END.last_seq,
//! docs/PROTOCOL.md §10) and keep the live PUSH frames they see, and a
//! "phone" reconnects (same device) before each SYNC. Everything runs on
//! plain threads with blocking sockets, bounded in count and time, and
//! stops by itself. After it, every member SYNCs each conversation from 0
//! ([`final_sync`]) and [`check`] — a pure function of what was recorded —
//! lists every violation of: (a) each acknowledged message is stored once,
//! at the seq it was acknowledged with; (b) seqs are unique in a
//! conversation and increase in the order each sender connection received
//! its SENTs; (c) no reader's cursor passed an acknowledged message it did
//! not receive; (d) every member's full SYNC has every acknowledged message.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use corecast_proto::{ClientRequest, ErrorCode};

use super::{token, Client, Push, Received, Reply};

/// A request unanswered this long counts as lost: the client reconnects
/// and resends.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long senders keep resending after they stop starting new messages.
const DRAIN: Duration = Duration::from_secs(60);
/// Bound on the final SYNC of one member.
const FINAL_WAIT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before connecting again after a failed attempt.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How long a sender waits for a frame before looking at its outbox again.
const POLL: Duration = Duration::from_millis(20);
/// Pause of a reader (and a phone) between SYNCs once it has caught up.
const READER_PAUSE: Duration = Duration::from_millis(5);
const PHONE_PAUSE: Duration = Duration::from_millis(20);
/// `limit` of the readers' SYNCs, and of the final ones.
const SYNC_LIMIT: u16 = 50;
const FINAL_SYNC_LIMIT: u16 = 200;

/// A conversation of the workload: a direct one between two users, or a
/// group.
#[derive(Debug, Clone)]
pub struct Conv {
    /// The group id; `None` for a direct conversation.
    pub group: Option<String>,
    /// The two users of a direct conversation, or the group's members.
    pub members: Vec<String>,
}

impl Conv {
    /// The direct conversation of `{name}-a` and `{name}-b`.
    pub fn direct(name: &str) -> Conv {
        Conv { group: None, members: vec![format!("{name}-a"), format!("{name}-b")] }
    }

    /// Group `name` with `size` members `{name}-m0`, `{name}-m1`, ...
    pub fn group(name: &str, size: usize) -> Conv {
        Conv { group: Some(name.into()), members: (0..size).map(|i| format!("{name}-m{i}")).collect() }
    }

    /// The conversation id (docs/PROTOCOL.md §10.1).
    pub fn id(&self) -> String {
        match &self.group {
            Some(group) => format!("g:{group}"),
            None => {
                let (a, b) = (&self.members[0], &self.members[1]);
                let (low, high) = if a.as_bytes() <= b.as_bytes() { (a, b) } else { (b, a) };
                format!("d:{}:{low}{high}", low.len())
            }
        }
    }

    /// The body of the admin call creating the group (`POST
    /// /v1/admin/groups`); `None` for a direct conversation.
    pub fn group_body(&self) -> Option<String> {
        let group = self.group.as_ref()?;
        Some(serde_json::json!({ "group": group, "members": self.members }).to_string())
    }

    fn kind(&self) -> u8 {
        if self.group.is_some() {
            3
        } else {
            2
        }
    }

    /// SEND's `to` for a message from `sender`.
    fn to(&self, sender: &str) -> String {
        match &self.group {
            Some(group) => group.clone(),
            None => self.members.iter().find(|m| *m != sender).unwrap_or(&self.members[0]).clone(),
        }
    }
}

/// The client addresses of the server nodes. Client `i` starts at the
/// `i`-th (modulo their number) and moves to the next when one does not
/// answer; a test replaces the address of a node it started again.
#[derive(Clone)]
pub struct Endpoints(Arc<Mutex<Vec<SocketAddr>>>);

impl Endpoints {
    pub fn new(addrs: Vec<SocketAddr>) -> Endpoints {
        assert!(!addrs.is_empty(), "no endpoints");
        Endpoints(Arc::new(Mutex::new(addrs)))
    }

    /// Replaces the `i`-th address.
    pub fn replace(&self, i: usize, addr: SocketAddr) {
        self.0.lock().unwrap()[i] = addr;
    }

    fn get(&self, slot: usize) -> SocketAddr {
        let addrs = self.0.lock().unwrap();
        addrs[slot % addrs.len()]
    }
}

/// Counts connections of the whole test process, to name them.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// Connects to the endpoint of `slot` and AUTHs `user` as `device`; on
/// failure moves `slot` to the next endpoint and returns `None`.
fn open(endpoints: &Endpoints, slot: &mut usize, user: &str, device: &str) -> Option<(Client, u64)> {
    let addr = endpoints.get(*slot);
    let attempt = || {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok()?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT)).ok()?;
        let mut client = Client::from_stream(stream);
        client.try_request(0, &ClientRequest::Auth { token: &token(user, 3600, None), device })?;
        match client.recv_within(REQUEST_TIMEOUT) {
            Received::Frame(Reply::AuthOk(_)) => Some((client, CONNECTIONS.fetch_add(1, Ordering::Relaxed))),
            _ => None,
        }
    };
    let opened = attempt();
    if opened.is_none() {
        *slot += 1;
    }
    opened
}

/// Whether an ERROR says "resend the same request".
fn retryable(code: u16) -> bool {
    code == ErrorCode::Unavailable.as_u16() || code == ErrorCode::Internal.as_u16()
}

/// A message as a reader got it: its seq, sender and client_msg_id (the
/// payload; `None` when the payload is not one the workload sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub seq: u64,
    pub from: String,
    pub cmid: Option<u64>,
    /// A live PUSH (rid 0), not part of a SYNC answer.
    pub live: bool,
}

impl Got {
    fn of(push: &Push, live: bool) -> Got {
        let cmid = std::str::from_utf8(&push.payload).ok().and_then(|p| p.parse().ok());
        Got { seq: push.seq, from: push.from.clone(), cmid, live }
    }
}

/// How many connections of each role each conversation gets, and for how
/// long.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Sender connections per conversation.
    pub senders: usize,
    /// SENDs each sender keeps unanswered at most.
    pub in_flight: usize,
    /// New messages per second per sender, at most.
    pub rate: u32,
    /// SYNC-looping readers per conversation, besides its phone.
    pub readers: usize,
    /// How long senders start new messages; then they only resend until
    /// everything is acknowledged (or [`DRAIN`] passed).
    pub sending: Duration,
}

/// One SENT, as a sender connection received it.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The connection it came on (numbered in the test process).
    pub conn: u64,
    pub cmid: u64,
    pub seq: u64,
    /// It answered a resend, which may return an earlier seq.
    pub resent: bool,
    pub at: Instant,
}

/// What one sender thread did: its SENTs in the order they arrived.
#[derive(Debug, Default)]
pub struct SenderLog {
    pub user: String,
    pub conv: String,
    pub acks: Vec<Ack>,
    /// client_msg_ids never acknowledged.
    pub unacked: Vec<u64>,
    /// SEND requests written, resends included.
    pub sends: u64,
    /// Of those, the ones for a message already sent before.
    pub resends: u64,
    pub connections: u64,
    pub unexpected: Vec<String>,
}

/// What one reader (or phone) did.
#[derive(Debug, Default)]
pub struct ReaderLog {
    /// user/device.
    pub name: String,
    pub conv: String,
    /// Every message it got, by SYNC or live, in arrival order.
    pub received: Vec<Got>,
    /// Its cursor after each SYNC_END.
    pub cursors: Vec<u64>,
    pub syncs: u64,
    pub connections: u64,
    pub unexpected: Vec<String>,
}

/// A member's full SYNC of a conversation, from 0.
#[derive(Debug)]
pub struct FinalRead {
    pub conv: String,
    pub member: String,
    pub messages: Vec<Got>,
}

/// Everything a workload run recorded.
#[derive(Debug)]
pub struct History {
    pub convs: Vec<Conv>,
    pub senders: Vec<SenderLog>,
    pub readers: Vec<ReaderLog>,
    pub took: Duration,
}

impl History {
    pub fn acked(&self) -> usize {
        self.senders.iter().map(|s| s.acks.len()).sum()
    }

    /// SENDs repeated after `unavailable`, a timeout or a lost connection.
    pub fn resends(&self) -> u64 {
        self.senders.iter().map(|s| s.resends).sum()
    }

    /// Connections senders opened beyond their first.
    pub fn sender_reconnects(&self) -> u64 {
        self.senders.iter().map(|s| s.connections.saturating_sub(1)).sum()
    }

    /// The spans, longer than `longer_than`, in which a sender got no SENT
    /// between two SENTs: when its SENDs were stuck.
    pub fn stalls(&self, longer_than: Duration) -> Vec<(Instant, Instant)> {
        let gaps = self.senders.iter().flat_map(|s| s.acks.windows(2).map(|pair| (pair[0].at, pair[1].at)));
        gaps.filter(|(from, to)| *to - *from > longer_than).collect()
    }
}

/// A workload under way.
pub struct Running {
    convs: Vec<Conv>,
    senders: Vec<JoinHandle<SenderLog>>,
    readers: Vec<JoinHandle<ReaderLog>>,
    stop: Arc<AtomicBool>,
    started: Instant,
}

impl Workload {
    /// Starts the threads for `convs` (groups already created), clients
    /// spread over `endpoints`.
    pub fn start(&self, convs: &[Conv], endpoints: &Endpoints) -> Running {
        let started = Instant::now();
        let stop_new = started + self.sending;
        let stop = Arc::new(AtomicBool::new(false));
        let (mut senders, mut readers) = (Vec::new(), Vec::new());
        for (c, conv) in convs.iter().enumerate() {
            for i in 0..self.senders {
                let index = c * self.senders + i;
                let user = conv.members[i % conv.members.len()].clone();
                let sender = SenderSpec {
                    index,
                    device: format!("s{i}"),
                    to: conv.to(&user),
                    user,
                    kind: conv.kind(),
                    conv: conv.id(),
                    in_flight: self.in_flight,
                    rate: self.rate,
                };
                let endpoints = endpoints.clone();
                senders.push(std::thread::spawn(move || sender.run(&endpoints, started, stop_new)));
            }
            for j in 0..=self.readers {
                let phone = j == self.readers;
                let reader = ReaderSpec {
                    index: c * (self.readers + 1) + j,
                    user: conv.members[(self.senders + j) % conv.members.len()].clone(),
                    device: if phone { "phone".into() } else { format!("r{j}") },
                    conv: conv.id(),
                    phone,
                };
                let (endpoints, stop) = (endpoints.clone(), stop.clone());
                let deadline = stop_new + DRAIN + REQUEST_TIMEOUT;
                readers.push(std::thread::spawn(move || reader.run(&endpoints, &stop, deadline)));
            }
        }
        Running { convs: convs.to_vec(), senders, readers, stop, started }
    }
}

impl Running {
    /// Waits until every sender is done, then stops the readers.
    pub fn finish(self) -> History {
        let senders: Vec<SenderLog> = self.senders.into_iter().map(|t| t.join().expect("sender thread")).collect();
        self.stop.store(true, Ordering::Relaxed);
        let readers: Vec<ReaderLog> = self.readers.into_iter().map(|t| t.join().expect("reader thread")).collect();
        History { convs: self.convs, senders, readers, took: self.started.elapsed() }
    }
}

/// One message waiting for its SENT.
struct Attempt {
    cmid: u64,
    /// SEND requests written for it so far.
    tries: u32,
    not_before: Instant,
    sent_at: Instant,
}

struct SenderSpec {
    index: usize,
    user: String,
    device: String,
    kind: u8,
    to: String,
    conv: String,
    in_flight: usize,
    rate: u32,
}

impl SenderSpec {
    fn run(self, endpoints: &Endpoints, started: Instant, stop_new: Instant) -> SenderLog {
        let mut log = SenderLog { user: self.user.clone(), conv: self.conv.clone(), ..SenderLog::default() };
        let give_up = stop_new + DRAIN;
        let mut slot = self.index;
        let mut conn: Option<(Client, u64)> = None;
        let mut waiting: HashMap<u32, Attempt> = HashMap::new();
        let mut outbox: VecDeque<Attempt> = VecDeque::new();
        let mut created = 0u64;
        loop {
            let now = Instant::now();
            if now >= give_up {
                log.unacked.extend(waiting.values().chain(&outbox).map(|a| a.cmid));
                return log;
            }
            if now >= stop_new && waiting.is_empty() && outbox.is_empty() {
                return log;
            }
            let Some((client, serial)) = conn.as_mut() else {
                conn = open(endpoints, &mut slot, &self.user, &self.device);
                match conn {
                    Some(_) => log.connections += 1,
                    None => std::thread::sleep(RETRY_PAUSE),
                }
                continue;
            };
            // New messages, paced, while fewer than `in_flight` are unanswered.
            let due = (now.min(stop_new) - started).as_secs_f64() * f64::from(self.rate);
            while now < stop_new && (created as f64) < due && waiting.len() + outbox.len() < self.in_flight {
                // Unique per user: each sender thread has its own upper half.
                let cmid = (self.index as u64) << 32 | created;
                outbox.push_back(Attempt { cmid, tries: 0, not_before: now, sent_at: now });
                created += 1;
            }
            let mut lost = false;
            while outbox.front().is_some_and(|a| a.not_before <= now) {
                let mut attempt = outbox.pop_front().expect("checked");
                let payload = attempt.cmid.to_string();
                let send = ClientRequest::Send {
                    kind: self.kind,
                    to: &self.to,
                    client_msg_id: attempt.cmid,
                    payload: payload.as_bytes(),
                };
                let Some(rid) = client.try_request(0, &send) else {
                    outbox.push_front(attempt);
                    lost = true;
                    break;
                };
                log.sends += 1;
                log.resends += u64::from(attempt.tries > 0);
                (attempt.tries, attempt.sent_at) = (attempt.tries + 1, now);
                waiting.insert(rid, attempt);
            }
            if !lost {
                lost = self.read_one(client, *serial, &mut waiting, &mut outbox, &mut log);
            }
            if lost {
                conn = None;
                // Resend everything unanswered on the next connection, oldest first.
                let mut unanswered: Vec<Attempt> = waiting.drain().map(|(_, a)| a).collect();
                unanswered.sort_by_key(|a| std::cmp::Reverse(a.cmid));
                for attempt in unanswered {
                    outbox.push_front(attempt);
                }
            }
        }
    }

    /// Reads at most one frame and acts on it; true when the connection
    /// is lost (closed, or a request went unanswered too long).
    fn read_one(
        &self,
        client: &mut Client,
        serial: u64,
        waiting: &mut HashMap<u32, Attempt>,
        outbox: &mut VecDeque<Attempt>,
        log: &mut SenderLog,
    ) -> bool {
        match client.recv_within(POLL) {
            Received::Frame(Reply::Sent { rid, conv, seq, .. }) => match waiting.remove(&rid) {
                Some(attempt) => {
                    if conv != self.conv {
                        log.unexpected.push(format!("SENT for {} names conversation {conv}", attempt.cmid));
                    }
                    let ack =
                        Ack { conn: serial, cmid: attempt.cmid, seq, resent: attempt.tries > 1, at: Instant::now() };
                    log.acks.push(ack);
                }
                None => log.unexpected.push(format!("{}: SENT for unknown rid {rid}", self.user)),
            },
            Received::Frame(Reply::Error { rid, code, message }) => match waiting.remove(&rid) {
                Some(mut attempt) if retryable(code) => {
                    let backoff = Duration::from_millis(50 * u64::from(attempt.tries.min(10)));
                    attempt.not_before = Instant::now() + backoff;
                    outbox.push_back(attempt);
                }
                Some(attempt) => {
                    log.unexpected.push(format!("SEND {} refused for good: {code} {message}", attempt.cmid));
                }
                None => log.unexpected.push(format!("{}: ERROR {code} for unknown rid {rid}", self.user)),
            },
            // Live copies of the other senders' messages.
            Received::Frame(Reply::Push(_)) => {}
            Received::Frame(Reply::Close { .. }) | Received::Eof => return true,
            Received::Frame(other) => log.unexpected.push(format!("{}: unexpected {other:?}", self.user)),
            Received::Timeout => return waiting.values().any(|a| a.sent_at.elapsed() > REQUEST_TIMEOUT),
        }
        false
    }
}

struct ReaderSpec {
    index: usize,
    user: String,
    device: String,
    conv: String,
    phone: bool,
}

impl ReaderSpec {
    fn run(self, endpoints: &Endpoints, stop: &AtomicBool, deadline: Instant) -> ReaderLog {
        let name = format!("{}/{}", self.user, self.device);
        let mut log = ReaderLog { name, conv: self.conv.clone(), ..ReaderLog::default() };
        let mut slot = self.index;
        let mut conn: Option<(Client, u64)> = None;
        let mut cursor = 0u64;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let Some((client, _)) = conn.as_mut() else {
                conn = open(endpoints, &mut slot, &self.user, &self.device);
                match conn {
                    Some(_) => log.connections += 1,
                    None => std::thread::sleep(RETRY_PAUSE),
                }
                continue;
            };
            let sync = ClientRequest::Sync { conv: &self.conv, after_seq: cursor, limit: SYNC_LIMIT };
            let Some(rid) = client.try_request(0, &sync) else {
                conn = None;
                continue;
            };
            log.syncs += 1;
            match sync_answer(client, rid, cursor, &mut log) {
                SyncOutcome::End { last_seq, more } => {
                    if last_seq < cursor {
                        log.unexpected.push(format!("{}: SYNC_END moved the cursor back to {last_seq}", log.name));
                    }
                    cursor = cursor.max(last_seq);
                    log.cursors.push(cursor);
                    if !more {
                        std::thread::sleep(if self.phone { PHONE_PAUSE } else { READER_PAUSE });
                    }
                }
                SyncOutcome::Retry => std::thread::sleep(RETRY_PAUSE),
                SyncOutcome::Lost => conn = None,
            }
            if self.phone {
                // A new connection (and AUTH as the same device) for each SYNC.
                conn = None;
            }
        }
        log
    }
}

/// How a SYNC ended.
enum SyncOutcome {
    End {
        last_seq: u64,
        more: bool,
    },
    /// ERROR `unavailable` or `internal`, or a final ERROR (recorded).
    Retry,
    /// The connection closed or the answer did not come in time.
    Lost,
}

/// Reads the answer to SYNC `rid` from `after`, recording every message in
/// `log` (live PUSH frames arriving meanwhile too).
fn sync_answer(client: &mut Client, rid: u32, after: u64, log: &mut ReaderLog) -> SyncOutcome {
    let asked = Instant::now();
    loop {
        match client.recv_within(REQUEST_TIMEOUT.saturating_sub(asked.elapsed())) {
            Received::Frame(Reply::Push(push)) if push.rid == rid => {
                if push.seq <= after {
                    log.unexpected.push(format!("{}: SYNC after {after} returned seq {}", log.name, push.seq));
                }
                log.received.push(Got::of(&push, false));
            }
            Received::Frame(Reply::Push(push)) => log.received.push(Got::of(&push, true)),
            Received::Frame(Reply::SyncEnd { rid: r, last_seq, more, .. }) if r == rid => {
                return SyncOutcome::End { last_seq, more };
            }
            Received::Frame(Reply::Error { rid: r, code, message }) if r == rid => {
                if !retryable(code) {
                    log.unexpected.push(format!("{}: SYNC refused: {code} {message}", log.name));
                }
                return SyncOutcome::Retry;
            }
            Received::Frame(Reply::Close { .. }) | Received::Eof | Received::Timeout => return SyncOutcome::Lost,
            Received::Frame(other) => log.unexpected.push(format!("{}: unexpected {other:?}", log.name)),
        }
    }
}

/// Every member SYNCs every conversation from 0 (as device "final"),
/// paging with `more`, after the workload: one thread per member. Panics
/// if a member's SYNC cannot finish within [`FINAL_WAIT`].
pub fn final_sync(convs: &[Conv], endpoints: &Endpoints) -> Vec<FinalRead> {
    let threads: Vec<JoinHandle<FinalRead>> = convs
        .iter()
        .flat_map(|conv| conv.members.iter().map(move |member| (conv.id(), member.clone())))
        .enumerate()
        .map(|(slot, (conv, member))| {
            let endpoints = endpoints.clone();
            std::thread::spawn(move || read_all(&endpoints, slot, conv, member))
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("final SYNC thread")).collect()
}

/// `member`'s whole `conv`, starting over after any failure.
fn read_all(endpoints: &Endpoints, mut slot: usize, conv: String, member: String) -> FinalRead {
    let deadline = Instant::now() + FINAL_WAIT;
    let mut log = ReaderLog { name: format!("{member}/final"), ..ReaderLog::default() };
    'again: loop {
        assert!(Instant::now() < deadline, "the final SYNC of {conv} by {member} did not finish in {FINAL_WAIT:?}");
        log.received.clear();
        let Some((mut client, _)) = open(endpoints, &mut slot, &member, "final") else {
            std::thread::sleep(RETRY_PAUSE);
            continue;
        };
        let mut after = 0;
        loop {
            let sync = ClientRequest::Sync { conv: &conv, after_seq: after, limit: FINAL_SYNC_LIMIT };
            let Some(rid) = client.try_request(0, &sync) else { continue 'again };
            let outcome = sync_answer(&mut client, rid, after, &mut log);
            assert!(log.unexpected.is_empty(), "the final SYNC of {conv} by {member}: {:?}", log.unexpected);
            match outcome {
                SyncOutcome::End { last_seq, more: true } => after = last_seq,
                SyncOutcome::End { more: false, .. } => break 'again,
                SyncOutcome::Retry | SyncOutcome::Lost => {
                    std::thread::sleep(RETRY_PAUSE);
                    continue 'again;
                }
            }
        }
    }
    let messages = log.received.into_iter().filter(|got| !got.live).collect();
    FinalRead { conv, member, messages }
}

/// What a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// (a) An acknowledged message is lost, stored twice, or stored at
    /// another seq than it was acknowledged with.
    NotStoredOnce,
    /// (b) A seq given to two messages, or a sender connection's SENTs out
    /// of seq order.
    SeqOrder,
    /// (c) A reader's cursor passed an acknowledged message it never got.
    CursorSkip,
    /// (d) A member's full SYNC lacks an acknowledged message others have.
    MemberMissing,
    /// A message never acknowledged, however often resent.
    Unacked,
    /// An answer the protocol does not allow.
    Unexpected,
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub kind: Kind,
    pub detail: String,
}

/// (user, client_msg_id): a message's idempotency key.
type Key = (String, u64);

/// Every violation of (a)–(d) in `history` and the members' full SYNCs
/// `finals`, plus messages never acknowledged and answers the protocol
/// does not allow. Empty means the run was correct.
pub fn check(history: &History, finals: &[FinalRead]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut flag = |kind: Kind, detail: String| out.push(Violation { kind, detail });

    // Acknowledged: key -> (conv, seq); (conv, seq) -> key.
    let mut acked: HashMap<Key, (String, u64)> = HashMap::new();
    let mut owner: HashMap<(String, u64), Key> = HashMap::new();
    for sender in &history.senders {
        for ack in &sender.acks {
            let key = (sender.user.clone(), ack.cmid);
            match acked.get(&key) {
                Some((_, seq)) if *seq != ack.seq => flag(
                    Kind::NotStoredOnce,
                    format!("{}#{:x} acknowledged with seqs {seq:#x} and {:#x}", key.0, key.1, ack.seq),
                ),
                Some(_) => {}
                None => {
                    acked.insert(key.clone(), (sender.conv.clone(), ack.seq));
                }
            }
            match owner.get(&(sender.conv.clone(), ack.seq)) {
                Some(other) if *other != key => flag(
                    Kind::SeqOrder,
                    format!(
                        "{} seq {:#x} acknowledged to {}#{:x} and {}#{:x}",
                        sender.conv, ack.seq, other.0, other.1, key.0, key.1
                    ),
                ),
                Some(_) => {}
                None => {
                    owner.insert((sender.conv.clone(), ack.seq), key);
                }
            }
        }
        // First answers on one connection come in seq order.
        let mut last_on: HashMap<u64, u64> = HashMap::new();
        for ack in sender.acks.iter().filter(|a| !a.resent) {
            if let Some(before) = last_on.insert(ack.conn, ack.seq).filter(|before| *before >= ack.seq) {
                flag(
                    Kind::SeqOrder,
                    format!(
                        "{} connection {}: SENT {:#x} for #{:x} came after SENT {before:#x}",
                        sender.conv, ack.conn, ack.seq, ack.cmid
                    ),
                );
            }
        }
        for cmid in &sender.unacked {
            flag(Kind::Unacked, format!("{}#{cmid:x} in {} never acknowledged", sender.user, sender.conv));
        }
        for what in &sender.unexpected {
            flag(Kind::Unexpected, what.clone());
        }
    }

    check_finals(history, finals, &acked, &mut flag);

    // (c) Cursors: whatever lies at or below a cursor, the reader has.
    let mut in_order: Vec<(&Key, &(String, u64))> = acked.iter().collect();
    in_order.sort_by_key(|(_, (_, seq))| *seq);
    for reader in &history.readers {
        let got: BTreeSet<u64> = reader.received.iter().map(|g| g.seq).collect();
        let reached = reader.cursors.iter().copied().max().unwrap_or(0);
        for (key, (conv, seq)) in &in_order {
            if *conv == reader.conv && *seq <= reached && !got.contains(seq) {
                let before = reader.cursors.iter().copied().filter(|c| c < seq).max().unwrap_or(0);
                let after = reader.cursors.iter().copied().find(|c| c >= seq).unwrap_or(reached);
                flag(
                    Kind::CursorSkip,
                    format!(
                        "{} in {conv}: cursor went {before:#x} -> {after:#x} but it never got {seq:#x} ({}#{:x})",
                        reader.name, key.0, key.1
                    ),
                );
            }
        }
        check_seen(&reader.name, &reader.received, &acked, &mut flag);
        for what in &reader.unexpected {
            flag(Kind::Unexpected, what.clone());
        }
    }
    out.sort_by_key(|v| v.kind);
    out
}

/// (a) and (d) over the members' full SYNCs.
fn check_finals(
    history: &History,
    finals: &[FinalRead],
    acked: &HashMap<Key, (String, u64)>,
    flag: &mut impl FnMut(Kind, String),
) {
    for conv in history.convs.iter().map(Conv::id) {
        let reads: Vec<&FinalRead> = finals.iter().filter(|f| f.conv == conv).collect();
        // Where each key was found, over all members.
        let mut found: HashMap<Key, BTreeSet<u64>> = HashMap::new();
        for read in &reads {
            let mut seen: HashMap<Key, u64> = HashMap::new();
            for pair in read.messages.windows(2).filter(|pair| pair[0].seq >= pair[1].seq) {
                flag(
                    Kind::SeqOrder,
                    format!("{conv}: {}'s SYNC gave {:#x} after {:#x}", read.member, pair[1].seq, pair[0].seq),
                );
            }
            for got in &read.messages {
                let Some(cmid) = got.cmid else {
                    flag(
                        Kind::Unexpected,
                        format!("{conv}: {}'s SYNC has a foreign message at {:#x}", read.member, got.seq),
                    );
                    continue;
                };
                let key = (got.from.clone(), cmid);
                if let Some(first) = seen.insert(key.clone(), got.seq) {
                    flag(
                        Kind::NotStoredOnce,
                        format!(
                            "{conv}: {}#{cmid:x} stored twice, at {first:#x} and {:#x} ({}'s SYNC)",
                            key.0, got.seq, read.member
                        ),
                    );
                }
                found.entry(key).or_default().insert(got.seq);
            }
        }
        let mut keys: Vec<(&Key, u64)> =
            acked.iter().filter(|(_, (c, _))| *c == conv).map(|(key, (_, seq))| (key, *seq)).collect();
        keys.sort_by_key(|(_, seq)| *seq);
        for (key, seq) in keys {
            let Some(seqs) = found.get(key) else {
                flag(
                    Kind::NotStoredOnce,
                    format!("{conv}: {}#{:x} acknowledged at {seq:#x} is in no member's SYNC", key.0, key.1),
                );
                continue;
            };
            if seqs.iter().any(|s| *s != seq) {
                flag(
                    Kind::NotStoredOnce,
                    format!("{conv}: {}#{:x} acknowledged at {seq:#x}, stored at {seqs:x?}", key.0, key.1),
                );
            }
            for read in &reads {
                if !read.messages.iter().any(|g| g.seq == seq && g.from == key.0 && g.cmid == Some(key.1)) {
                    flag(
                        Kind::MemberMissing,
                        format!("{conv}: {}'s SYNC lacks {seq:#x} ({}#{:x})", read.member, key.0, key.1),
                    );
                }
            }
        }
    }
}

/// (a) as a reader saw it: an acknowledged message under another seq.
fn check_seen(name: &str, received: &[Got], acked: &HashMap<Key, (String, u64)>, flag: &mut impl FnMut(Kind, String)) {
    let mut reported = BTreeSet::new();
    for got in received {
        let Some(cmid) = got.cmid else { continue };
        let key = (got.from.clone(), cmid);
        if let Some((conv, seq)) = acked.get(&key).filter(|(_, seq)| *seq != got.seq) {
            if reported.insert((key.clone(), got.seq)) {
                flag(
                    Kind::NotStoredOnce,
                    format!("{name} got {}#{cmid:x} in {conv} at {:#x}, acknowledged at {seq:#x}", key.0, got.seq),
                );
            }
        }
    }
}

/// One paragraph on a run: operations, acknowledged messages, violations
/// by kind and the first few of each.
pub fn report(label: &str, history: &History, violations: &[Violation]) -> String {
    let sends: u64 = history.senders.iter().map(|s| s.sends).sum();
    let resends = history.resends();
    let syncs: u64 = history.readers.iter().map(|r| r.syncs).sum();
    let connections: u64 = history.senders.iter().map(|s| s.connections).sum::<u64>()
        + history.readers.iter().map(|r| r.connections).sum::<u64>();
    let live: usize = history.readers.iter().map(|r| r.received.iter().filter(|g| g.live).count()).sum();
    let mut by_kind: BTreeMap<Kind, Vec<&Violation>> = BTreeMap::new();
    for v in violations {
        by_kind.entry(v.kind).or_default().push(v);
    }
    let counts: Vec<String> = by_kind.iter().map(|(kind, list)| format!("{kind:?} {}", list.len())).collect();
    let mut text = format!(
        "[{label}] {} operations ({sends} SEND incl. {resends} resends, {syncs} SYNC, {connections} connections, \
         {live} live PUSH seen) in {:.1}s; {} messages acknowledged in {} conversations; {} violations{}{}",
        sends + syncs,
        history.took.as_secs_f64(),
        history.acked(),
        history.convs.len(),
        violations.len(),
        if counts.is_empty() { "" } else { ": " },
        counts.join(", "),
    );
    for list in by_kind.values() {
        for v in list.iter().take(3) {
            text.push_str(&format!("\n    {:?}: {}", v.kind, v.detail));
        }
    }
    text
}

/// The final SYNC, the checker and the report (also printed): what a test
/// asserts on.
pub fn verdict(label: &str, history: &History, endpoints: &Endpoints) -> (Vec<Violation>, String) {
    let finals = final_sync(&history.convs, endpoints);
    let violations = check(history, &finals);
    let text = report(label, history, &violations);
    println!("{text}");
    (violations, text)
}
