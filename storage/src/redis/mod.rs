//! The Redis message store: one Redis shared by the routers of a small
//! cluster (and by the multi-router tests, where ScyllaDB cannot run).
//!
//! It is exactly as durable as that Redis: run it with `appendonly yes` and
//! `appendfsync always`, so a message is on disk before its SENT, and keep
//! it apart from the route table's Redis, which needs no persistence. Every
//! write that must be atomic (an append with its idempotency record and
//! fan-out, a cursor that never moves back, group changes) is one Lua
//! script, which Redis runs alone.
//!
//! Behind Sentinel (a `redis+sentinel://` URL, see [`connect`]) the store
//! follows a failover; replication is asynchronous, so a write the store
//! reported done can still be lost in one unless the store waits for a
//! replica after each write ([`RedisStore::with_replica_acks`], `WAIT`).
//!
//! Keys, under the prefix (`ccs:` by the router); `{n}:` is the byte length
//! of the id that follows, so ids containing `:` cannot collide, and seqs
//! are 16-digit lowercase hex so that byte order is numeric order (sorted
//! set scores are doubles and cannot hold a 64-bit seq):
//! - `msg:{conv}`: hash seq → message (postcard);
//! - `tl:{conv}`: sorted set of seqs (all scores 0, read by lex range);
//! - `last:{conv}`: the highest seq;
//! - `cid:{n}:{sender}:{client_msg_id}`: `{conv}\n{seq}` of the message;
//! - `inbox:{n}:{user}:{conv}`: sorted set of seqs copied to the user;
//! - `uconv:{user}`: hash conv → highest seq, the user's conversations;
//! - `cur:{n}:{user}:{device}`: hash conv → read seq;
//! - `fence:{conv}`: appends of conv below this seq fail;
//! - `group:{g}` (marker: empty, or `large` once read-fan-out for good),
//!   `members:{g}` (set), `groups` (set),
//!   `ugroups:{user}` (set);
//! - `epoch`: the epoch counter.

pub mod connect;
mod failover;
mod scripts;
mod writes;

use async_trait::async_trait;
use redis::AsyncCommands;

use self::connect::{RedisConnection, RedisEndpoint};
pub use self::writes::ReplicaAcks;
use self::writes::{evalsha, write};
use crate::{AppendOutcome, Fanout, GroupInfo, MessageStore, StoreError, StoredMessage, UserConversation};

/// Messages in a Redis server.
pub struct RedisStore {
    conn: RedisConnection,
    prefix: String,
    acks: Option<ReplicaAcks>,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

fn hex(seq: u64) -> String {
    format!("{seq:016x}")
}

fn unhex(s: &str) -> Result<u64, StoreError> {
    u64::from_str_radix(s, 16).map_err(|_| StoreError::Internal(format!("bad seq {s:?} in redis")))
}

fn decode(bytes: &[u8]) -> Result<StoredMessage, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Internal(format!("undecodable message in redis: {e}")))
}

impl RedisStore {
    /// Connects to the Redis at `url` (either form of [`connect`]); fails
    /// at once if it does not answer.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let endpoint = RedisEndpoint::parse(url).map_err(|e| StoreError::Unavailable(format!("redis url: {e}")))?;
        let conn = endpoint.connect().await.map_err(unavailable)?;
        Ok(RedisStore { conn, prefix: prefix.to_string(), acks: None })
    }

    /// Makes every write wait for `acks.replicas` replicas (see
    /// [`ReplicaAcks`]); 0 replicas waits for none.
    pub fn with_replica_acks(mut self, acks: ReplicaAcks) -> RedisStore {
        self.acks = (acks.replicas > 0).then_some(acks);
        self
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    fn key2(&self, kind: &str, first: &str, second: &str) -> String {
        format!("{}{kind}:{}:{first}:{second}", self.prefix, first.len())
    }

    /// The messages of `conv` with these seqs, in order.
    async fn load(&self, conv: &str, seqs: &[String]) -> Result<Vec<StoredMessage>, StoreError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let bodies: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(self.key("msg", conv))
            .arg(seqs)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        bodies
            .into_iter()
            .map(|body| decode(&body.ok_or_else(|| StoreError::Internal(format!("{conv}: indexed message missing")))?))
            .collect()
    }

    /// Seqs of a sorted set above `after_seq`, at most `limit`.
    async fn range(&self, set: String, after_seq: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        redis::cmd("ZRANGEBYLEX")
            .arg(set)
            .arg(format!("({}", hex(after_seq)))
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn sorted_set(&self, key: String) -> Result<Vec<String>, StoreError> {
        let mut members: Vec<String> = self.conn.clone().smembers(key).await.map_err(unavailable)?;
        members.sort();
        Ok(members)
    }
}

#[async_trait]
impl MessageStore for RedisStore {
    async fn next_epoch(&self, _owner: &str) -> Result<u64, StoreError> {
        write(&self.conn, None, redis::cmd("INCR").arg(format!("{}epoch", self.prefix)), self.acks).await
    }

    async fn append(&self, message: &StoredMessage, fanout: &Fanout) -> Result<AppendOutcome, StoreError> {
        let body = postcard::to_allocvec(message).map_err(|e| StoreError::Internal(e.to_string()))?;
        let (mode, members) = match fanout {
            Fanout::Timeline { members } => ("timeline", members),
            Fanout::Inboxes { members } => ("inboxes", members),
        };
        let mut invocation = evalsha(&scripts::APPEND_SCRIPT, 0);
        invocation
            .arg(&self.prefix)
            .arg(&message.conv)
            .arg(hex(message.seq))
            .arg(self.key2("cid", &message.sender, &message.client_msg_id.to_string()))
            .arg(body)
            .arg(mode);
        for member in members {
            invocation.arg(member).arg(self.key2("inbox", member, &message.conv));
        }
        let answer: redis::Value = write(&self.conn, Some(&scripts::APPEND_SCRIPT), &invocation, self.acks).await?;
        match answer {
            redis::Value::Nil => Ok(AppendOutcome::Stored),
            redis::Value::BulkString(bytes) => Ok(AppendOutcome::Duplicate(decode(&bytes)?)),
            redis::Value::Int(0) => {
                Err(StoreError::Fenced(format!("{} is fenced above seq {}", message.conv, message.seq)))
            }
            other => Err(StoreError::Internal(format!("unexpected answer of the append script: {other:?}"))),
        }
    }

    async fn fence(&self, conv: &str, below: u64) -> Result<(), StoreError> {
        let script = &scripts::FENCE_SCRIPT;
        let fence = evalsha(script, 1).arg(self.key("fence", conv)).arg(hex(below)).to_owned();
        let _: i64 = write(&self.conn, Some(script), &fence, self.acks).await?;
        Ok(())
    }

    async fn read_timeline(&self, conv: &str, after_seq: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        let seqs = self.range(self.key("tl", conv), after_seq, limit).await?;
        self.load(conv, &seqs).await
    }

    async fn read_inbox(
        &self,
        user: &str,
        conv: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let seqs = self.range(self.key2("inbox", user, conv), after_seq, limit).await?;
        self.load(conv, &seqs).await
    }

    async fn last_seq(&self, conv: &str) -> Result<u64, StoreError> {
        let last: Option<String> = self.conn.clone().get(self.key("last", conv)).await.map_err(unavailable)?;
        last.map_or(Ok(0), |s| unhex(&s))
    }

    async fn user_conversations(&self, user: &str) -> Result<Vec<UserConversation>, StoreError> {
        let entries: Vec<(String, String)> =
            self.conn.clone().hgetall(self.key("uconv", user)).await.map_err(unavailable)?;
        let mut convs = entries
            .into_iter()
            .map(|(conv, seq)| Ok(UserConversation { conv, last_seq: unhex(&seq)? }))
            .collect::<Result<Vec<_>, StoreError>>()?;
        convs.sort_by(|a, b| a.conv.cmp(&b.conv));
        Ok(convs)
    }

    async fn set_cursor(&self, user: &str, device: &str, conv: &str, seq: u64) -> Result<(), StoreError> {
        let script = &scripts::SET_CURSOR_SCRIPT;
        let cursor = evalsha(script, 1).arg(self.key2("cur", user, device)).arg(conv).arg(hex(seq)).to_owned();
        let _: () = write(&self.conn, Some(script), &cursor, self.acks).await?;
        Ok(())
    }

    async fn cursors(&self, user: &str, device: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let entries: Vec<(String, String)> =
            self.conn.clone().hgetall(self.key2("cur", user, device)).await.map_err(unavailable)?;
        let mut cursors =
            entries.into_iter().map(|(conv, seq)| Ok((conv, unhex(&seq)?))).collect::<Result<Vec<_>, StoreError>>()?;
        cursors.sort();
        Ok(cursors)
    }

    async fn create_group(&self, group: &str, members: &[String], large_above: usize) -> Result<(), StoreError> {
        let created: i64 = self.change_group(group, "create", large_above, members).await?;
        match created {
            1 => Ok(()),
            _ => Err(StoreError::AlreadyExists(format!("group {group:?}"))),
        }
    }

    async fn add_members(&self, group: &str, members: &[String], large_above: usize) -> Result<(), StoreError> {
        self.change_members(group, "add", large_above, members).await
    }

    async fn remove_members(&self, group: &str, members: &[String]) -> Result<(), StoreError> {
        self.change_members(group, "remove", usize::MAX, members).await
    }

    async fn group(&self, group: &str) -> Result<Option<GroupInfo>, StoreError> {
        let marker: Option<String> = self.conn.clone().get(self.key("group", group)).await.map_err(unavailable)?;
        let Some(marker) = marker else { return Ok(None) };
        let members = self.sorted_set(self.key("members", group)).await?;
        Ok(Some(GroupInfo { group: group.to_string(), members, read_fanout: marker == "large" }))
    }

    async fn list_groups(&self) -> Result<Vec<String>, StoreError> {
        self.sorted_set(format!("{}groups", self.prefix)).await
    }

    async fn user_groups(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.sorted_set(self.key("ugroups", user)).await
    }
}

impl RedisStore {
    async fn change_members(
        &self,
        group: &str,
        how: &str,
        large_above: usize,
        members: &[String],
    ) -> Result<(), StoreError> {
        let found: i64 = self.change_group(group, how, large_above, members).await?;
        match found {
            1 => Ok(()),
            _ => Err(StoreError::NotFound(format!("group {group:?}"))),
        }
    }

    /// Runs the group script: 1 when done, 0 when the group exists
    /// (create) or does not (add, remove).
    async fn change_group(
        &self,
        group: &str,
        how: &str,
        large_above: usize,
        members: &[String],
    ) -> Result<i64, StoreError> {
        let script = &scripts::CHANGE_GROUP_SCRIPT;
        let change = evalsha(script, 0).arg(&self.prefix).arg(group).arg(how).arg(large_above).arg(members).to_owned();
        write(&self.conn, Some(script), &change, self.acks).await
    }
}
