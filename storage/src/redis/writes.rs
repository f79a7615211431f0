//! The writes of the Redis store, and the replicas they can wait for.
//!
//! Redis replicates asynchronously: a primary answers a write before any
//! replica has it, so a failover right after can lose a write the store
//! already reported done (a message already acknowledged with SENT, an
//! epoch already handed out). With [`ReplicaAcks`] set, every write is sent
//! together with `WAIT replicas timeout` in one pipeline, on the same
//! connection, and counts as done only once that many replicas have it; a
//! `WAIT` that times out short fails the write as unavailable (it is on the
//! primary, maybe not on a replica: the caller treats it as in doubt). This
//! narrows the loss window to what Sentinel's choice of replica can still
//! lose; it does not make Redis a consensus store.

use std::time::Duration;

use redis::{Cmd, ErrorKind, FromRedisValue, Script, ServerErrorKind, Value};

use super::connect::RedisConnection;
use super::unavailable;
use crate::StoreError;

/// How many replicas must have each write, and how long to wait for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaAcks {
    /// Replicas that must acknowledge a write (`WAIT`'s first argument).
    pub replicas: u32,
    /// Longest wait for them; then the write fails as unavailable. Keep it
    /// below [`super::connect::CALL_TIMEOUT`], which bounds every answer.
    pub timeout: Duration,
}

/// An `EVALSHA` of `script` with `keys` keys: add the keys, then the args.
pub(super) fn evalsha(script: &Script, keys: usize) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys);
    cmd
}

/// Runs the write `cmd` (an [`evalsha`] of `script`, if given: loaded and
/// sent again when the server does not have it), followed by `WAIT` on the
/// same connection when `acks` asks for replicas.
pub(super) async fn write<T: FromRedisValue>(
    conn: &RedisConnection,
    script: Option<&Script>,
    cmd: &Cmd,
    acks: Option<ReplicaAcks>,
) -> Result<T, StoreError> {
    let mut conn = conn.clone();
    let mut loaded = false;
    loop {
        let (answer, acked) = match acks {
            None => (cmd.query_async::<Value>(&mut conn).await, None),
            Some(acks) => {
                let (answer, acked): (redis::RedisResult<Value>, redis::RedisResult<u32>) = redis::pipe()
                    .ignore_errors()
                    .add_command(cmd.clone())
                    .cmd("WAIT")
                    .arg(acks.replicas)
                    .arg(acks.timeout.as_millis().max(1) as u64)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                (answer, Some((acks.replicas, acked.map_err(unavailable)?)))
            }
        };
        match (answer, script) {
            (Err(e), Some(script)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) && !loaded => {
                script.load_async(&mut conn).await.map_err(unavailable)?;
                loaded = true;
            }
            (answer, _) => {
                let answer = answer.map_err(unavailable)?;
                if let Some((wanted, acked)) = acked {
                    if acked < wanted {
                        return Err(StoreError::Unavailable(format!(
                            "redis: the write reached {acked} of {wanted} replicas in time; it may be lost on failover"
                        )));
                    }
                }
                return redis::from_redis_value(answer)
                    .map_err(|e| StoreError::Internal(format!("unexpected answer from redis: {e}")));
            }
        }
    }
}
