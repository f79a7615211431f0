//! How every corecast component reaches Redis: the route table and registry
//! (router and node), the routers' invalidation subscription and the Redis
//! message store all turn their URL into a connection here.
//!
//! Two URL forms:
//! - `redis://[user:password@]host:port[/db]` (and everything else the
//!   `redis` crate parses): one fixed server, through the crate's
//!   [`ConnectionManager`], which reconnects to that address;
//! - `redis+sentinel://[user:password@]host1[:port],host2[:port],…/service[/db]`:
//!   a Sentinel-managed primary. The hosts are the sentinels (port 26379
//!   when left out), `service` the name they monitor; the credentials and
//!   db are the primary's (the sentinels are reached without them). The
//!   connection asks the sentinels for the current primary, and asks again
//!   whenever the primary stops answering or answers READONLY (it was
//!   demoted), so it follows a failover (see [`super::failover`]).
//!
//! Both kinds wait at most [`CALL_TIMEOUT`] to connect and for each answer.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::sync::Mutex;

use super::failover::Failover;

/// How long connecting, or one Redis call, may take before it fails.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The scheme of Sentinel URLs.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// Port of a sentinel whose address names none.
const SENTINEL_PORT: u16 = 26379;

fn bad_url(what: &'static str, detail: String) -> RedisError {
    RedisError::from((ErrorKind::InvalidClientConfig, what, detail))
}

/// Where a Redis URL points: one server, or a primary found through sentinels.
#[derive(Clone)]
pub struct RedisEndpoint(Endpoint);

#[derive(Clone)]
enum Endpoint {
    Plain(redis::Client),
    /// Lookups take `&mut SentinelClient` (it caches its sentinel connections).
    Sentinel(Arc<Mutex<SentinelClient>>),
}

impl RedisEndpoint {
    /// Parses `url` (either form above); contacts nobody yet.
    pub fn parse(url: &str) -> RedisResult<RedisEndpoint> {
        match url.strip_prefix(SENTINEL_SCHEME) {
            None => Ok(RedisEndpoint(Endpoint::Plain(redis::Client::open(url)?))),
            Some(rest) => sentinel_client(rest).map(|c| RedisEndpoint(Endpoint::Sentinel(Arc::new(Mutex::new(c))))),
        }
    }

    /// A connection for commands; fails at once if the server (or, for
    /// Sentinel, every sentinel or the primary they name) does not answer.
    pub async fn connect(&self) -> RedisResult<RedisConnection> {
        match &self.0 {
            Endpoint::Plain(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CALL_TIMEOUT))
                    .set_response_timeout(Some(CALL_TIMEOUT))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let manager = ConnectionManager::new_with_config(client.clone(), config).await?;
                Ok(RedisConnection(Connection::Plain(manager)))
            }
            Endpoint::Sentinel(sentinel) => {
                Ok(RedisConnection(Connection::Sentinel(Arc::new(Failover::connect(sentinel.clone()).await?))))
            }
        }
    }

    /// A new pub/sub connection, to the current primary for Sentinel. It
    /// does not follow a failover: its message stream ends when the server
    /// goes away (or Sentinel demotes it), and the caller asks for a new one.
    pub async fn pubsub(&self) -> RedisResult<PubSub> {
        match &self.0 {
            Endpoint::Plain(client) => client.get_async_pubsub().await,
            Endpoint::Sentinel(sentinel) => {
                let primary =
                    tokio::time::timeout(CALL_TIMEOUT, async { sentinel.lock().await.async_get_client().await })
                        .await
                        .map_err(|_| RedisError::from((ErrorKind::Io, "no sentinel named a primary in time")))??;
                primary.get_async_pubsub().await
            }
        }
    }
}

/// Parses what follows `redis+sentinel://`.
fn sentinel_client(rest: &str) -> RedisResult<SentinelClient> {
    let usage = "redis+sentinel://[user:password@]host[:port],host[:port],.../service[/db]";
    if rest.contains(['?', '#']) {
        return Err(bad_url("Sentinel URLs take no query or fragment", usage.into()));
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let (service, db) = path.split_once('/').unwrap_or((path, ""));
    if service.is_empty() {
        return Err(bad_url("a Sentinel URL names the monitored service after the hosts", usage.into()));
    }
    let sentinels = hosts
        .split(',')
        .map(|host| {
            if host.is_empty() {
                return Err(bad_url("empty sentinel address", usage.into()));
            }
            let has_port = match host.strip_prefix('[') {
                Some(v6) => v6.contains("]:"),
                None => host.contains(':'),
            };
            let url = if has_port { format!("redis://{host}") } else { format!("redis://{host}:{SENTINEL_PORT}") };
            url.into_connection_info()
        })
        .collect::<RedisResult<Vec<_>>>()?;
    // The primary's credentials and db, parsed by the crate as in a plain
    // URL (percent-decoding included); the address is a placeholder.
    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    let primary = format!("redis://{userinfo}placeholder/{db}").into_connection_info()?;
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(primary.redis_settings().clone());
    SentinelClient::build(sentinels, service.to_string(), Some(node), SentinelServerType::Master)
}

/// Turns `url` into a connection (see [`RedisEndpoint::connect`]).
pub async fn connect(url: &str) -> RedisResult<RedisConnection> {
    RedisEndpoint::parse(url)?.connect().await
}

/// A Redis connection that reconnects by itself: to the same server for a
/// plain URL, to whichever server the sentinels name for a Sentinel URL.
/// Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisConnection(Connection);

#[derive(Clone)]
enum Connection {
    Plain(ConnectionManager),
    Sentinel(Arc<Failover>),
}

impl RedisConnection {
    /// Whether this connection follows a Sentinel-managed primary.
    pub fn follows_sentinel(&self) -> bool {
        matches!(self.0, Connection::Sentinel(_))
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Connection::Plain(manager) => manager.req_packed_command(cmd),
            Connection::Sentinel(failover) => Box::pin(failover.command(cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Connection::Plain(manager) => manager.req_packed_commands(pipeline, offset, count),
            Connection::Sentinel(failover) => Box::pin(failover.pipeline(pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Connection::Plain(manager) => manager.get_db(),
            Connection::Sentinel(failover) => failover.db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel_error(url: &str) -> String {
        match RedisEndpoint::parse(url) {
            Ok(_) => panic!("{url} parsed"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn plain_and_sentinel_urls_parse_and_bad_sentinel_urls_say_why() {
        assert!(matches!(RedisEndpoint::parse("redis://127.0.0.1:6379/").unwrap().0, Endpoint::Plain(_)));
        for url in [
            "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380,127.0.0.1/mymaster",
            "redis+sentinel://:secret@a,b:1/m/2",
            "redis+sentinel://[::1]:26379,[::1]/m",
        ] {
            assert!(matches!(RedisEndpoint::parse(url).unwrap().0, Endpoint::Sentinel(_)), "{url}");
        }
        assert!(sentinel_error("redis+sentinel://127.0.0.1:26379").contains("names the monitored service"));
        assert!(sentinel_error("redis+sentinel://127.0.0.1:26379/").contains("names the monitored service"));
        assert!(sentinel_error("redis+sentinel://a,,b/m").contains("empty sentinel address"));
        assert!(sentinel_error("redis+sentinel://a/m?protocol=resp3").contains("no query"));
        assert!(RedisEndpoint::parse("redis+sentinel://a/m/notadb").is_err());
        assert!(RedisEndpoint::parse("http://a/").is_err());
    }
}
