//! A connection to a Sentinel-managed primary that follows failovers.
//!
//! Hand-written because the `redis` crate (1.8) has no such manager: its
//! [`redis::aio::ConnectionManager`] reconnects to one fixed address, and
//! its Sentinel support ([`SentinelClient`]) only finds the current primary
//! (checking that it answers `ROLE` as master) and opens a connection to
//! it. This module keeps one multiplexed connection from the latter and
//! replaces it when it breaks:
//!
//! - an I/O error, a timeout or a dropped connection: the call fails (the
//!   command may or may not have run: the caller decides, as with a plain
//!   connection) and the primary is looked up again for the next calls;
//! - a READONLY answer (the server was demoted to replica; it ran nothing):
//!   the primary is looked up again and the call is sent there, once.
//!
//! Lookups run one at a time, and calls that saw the same broken connection
//! share the one lookup that follows (a generation number tells). While no
//! primary can be found, each call fails after at most one lookup.

use std::sync::Arc;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisResult, ServerErrorKind, Value};
use tokio::sync::Mutex;

use super::connect::CALL_TIMEOUT;

/// The primary behind some sentinels, and the connection to it.
pub(super) struct Failover {
    sentinel: Arc<Mutex<SentinelClient>>,
    config: AsyncConnectionConfig,
    state: std::sync::Mutex<State>,
    db: i64,
}

struct State {
    /// Bumped by every lookup, whatever it found.
    generation: u64,
    /// What the last lookup found.
    current: RedisResult<MultiplexedConnection>,
}

/// What an answer says about the connection it came on.
enum Health {
    Fine,
    /// The server is a replica now; the command did not run.
    Demoted,
    /// The connection is gone or stuck.
    Broken,
}

fn health(error: &RedisError) -> Health {
    // A transaction aborted by a READONLY of one of its commands, too.
    let read_only = |e: &RedisError| {
        e.clone()
            .into_server_errors()
            .is_some_and(|errs| errs.iter().any(|(_, e)| e.kind() == Some(ServerErrorKind::ReadOnly)))
    };
    match error.kind() {
        ErrorKind::Server(ServerErrorKind::ReadOnly) => Health::Demoted,
        _ if read_only(error) => Health::Demoted,
        _ if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_timeout()
            || error.is_unrecoverable_error() =>
        {
            Health::Broken
        }
        _ => Health::Fine,
    }
}

fn value_health(value: &Value) -> Health {
    match value {
        Value::ServerError(e) if e.kind() == Some(ServerErrorKind::ReadOnly) => Health::Demoted,
        _ => Health::Fine,
    }
}

fn result_health<T>(result: &RedisResult<T>, values: impl Fn(&T) -> Health) -> Health {
    match result {
        Ok(answer) => values(answer),
        Err(e) => health(e),
    }
}

impl Failover {
    /// Finds the primary and connects to it; fails if that fails.
    pub(super) async fn connect(sentinel: Arc<Mutex<SentinelClient>>) -> RedisResult<Failover> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT));
        let first = lookup(&mut *sentinel.lock().await, &config).await?;
        let db = first.get_db();
        let state = std::sync::Mutex::new(State { generation: 0, current: Ok(first) });
        Ok(Failover { sentinel, config, state, db })
    }

    pub(super) fn db(&self) -> i64 {
        self.db
    }

    fn current(&self) -> (u64, RedisResult<MultiplexedConnection>) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.generation, state.current.clone())
    }

    /// A new lookup, unless one already ran since generation `seen`: then
    /// what that one found.
    async fn replace(&self, seen: u64) -> (u64, RedisResult<MultiplexedConnection>) {
        let mut sentinel = self.sentinel.lock().await;
        let (generation, current) = self.current();
        if generation != seen {
            return (generation, current);
        }
        let found = lookup(&mut sentinel, &self.config).await;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Said once per outage, not per failed lookup.
        match (&state.current, &found) {
            (Ok(_), Err(e)) => tracing::warn!("no Redis primary from the sentinels (retrying with each call): {e}"),
            (Err(_), Ok(_)) => tracing::info!("the sentinels named a Redis primary again; connected"),
            _ => {}
        }
        state.generation += 1;
        state.current = found.clone();
        (state.generation, found)
    }

    /// Runs `send` on the current connection, following the primary as the
    /// module doc says.
    async fn call<T, F>(
        &self,
        send: impl Fn(MultiplexedConnection) -> F,
        values: impl Fn(&T) -> Health,
    ) -> RedisResult<T>
    where
        F: std::future::Future<Output = RedisResult<T>>,
    {
        let (mut generation, mut connection) = self.current();
        if connection.is_err() {
            (generation, connection) = self.replace(generation).await;
        }
        let result = send(connection?).await;
        match result_health(&result, &values) {
            Health::Fine => result,
            Health::Demoted => {
                tracing::warn!("the Redis primary was demoted; asking the sentinels for the new one");
                let (_, connection) = self.replace(generation).await;
                send(connection?).await
            }
            Health::Broken => {
                let _ = self.replace(generation).await;
                result
            }
        }
    }

    pub(super) async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        self.call(|mut c| async move { c.req_packed_command(cmd).await }, value_health).await
    }

    pub(super) async fn pipeline(&self, pipeline: &Pipeline, offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        let values = |answers: &Vec<Value>| {
            answers.iter().map(value_health).find(|h| !matches!(h, Health::Fine)).unwrap_or(Health::Fine)
        };
        self.call(|mut c| async move { c.req_packed_commands(pipeline, offset, count).await }, values).await
    }
}

/// Asks the sentinels for the primary and connects to it, within twice
/// [`CALL_TIMEOUT`] (the sentinels, then the primary).
async fn lookup(sentinel: &mut SentinelClient, config: &AsyncConnectionConfig) -> RedisResult<MultiplexedConnection> {
    match tokio::time::timeout(CALL_TIMEOUT * 2, sentinel.get_async_connection_with_config(config)).await {
        Ok(found) => found,
        Err(_) => Err(RedisError::from((ErrorKind::Io, "the sentinels named no reachable primary in time"))),
    }
}
