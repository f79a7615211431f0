//! [`ScyllaStore`]: the [`MessageStore`] on a ScyllaDB cluster.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::CqlValue;

use super::append;
use super::convert::{bits_from_cql, execution, limit_to_cql, seq_from_cql, seq_to_cql};
use super::query::{conditional, fetch_all, fetch_one, Writes};
use super::schema::{self, bucket};
use super::statements::Statements;
use crate::{AppendOutcome, Fanout, GroupInfo, MessageStore, StoreError, StoredMessage, UserConversation};

/// Client-side limit of one request (the router answers SEND with
/// ERROR(unavailable) rather than keep a client waiting longer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit of opening one connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Compare-and-set rounds [`MessageStore::next_epoch`] tries before giving up.
const EPOCH_CAS_ATTEMPTS: usize = 32;
/// The row of the shared epoch counter.
const EPOCH_ROW: &str = "sequence";

/// The message store on a ScyllaDB cluster.
///
/// Every request goes through the driver's default load-balancing policy,
/// which is token-aware (it sends a prepared statement to a replica that
/// owns the partition, and on ScyllaDB to the owning shard) and set here
/// explicitly so that no driver default change can turn it off. Requests
/// run at LOCAL_QUORUM, lightweight transactions at LOCAL_SERIAL, with
/// client-side monotonic write timestamps. The
/// futures must be polled inside a tokio runtime (the driver's connections
/// are tokio tasks); the router core runs on one.
pub struct ScyllaStore {
    session: Session,
    st: Statements,
}

impl std::fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaStore").finish_non_exhaustive()
    }
}

impl ScyllaStore {
    /// Connects to the cluster through `nodes` (`host:port`), creates
    /// `keyspace` with `replication_factor` and every table if absent, and
    /// prepares every statement. Must run inside a tokio runtime.
    pub async fn connect(nodes: &[String], keyspace: &str, replication_factor: u32) -> Result<ScyllaStore, StoreError> {
        schema::validate_keyspace(keyspace)?;
        if nodes.is_empty() {
            return Err(StoreError::Unavailable("no ScyllaDB node given".into()));
        }
        let policy = DefaultPolicy::builder().token_aware(true).build();
        let profile = ExecutionProfile::builder()
            .load_balancing_policy(policy)
            .consistency(Consistency::LocalQuorum)
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .request_timeout(Some(REQUEST_TIMEOUT))
            .build();
        let session = SessionBuilder::new()
            .known_nodes(nodes)
            .connection_timeout(CONNECT_TIMEOUT)
            // Client-side write timestamps, monotonic per store: an add and a
            // later remove of a group member keep their order whichever
            // coordinators they reach. (Statements `USING TIMESTAMP` keep theirs.)
            .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
            .default_execution_profile_handle(profile.into_handle())
            .build()
            .await
            .map_err(|e| StoreError::Unavailable(format!("connecting to ScyllaDB at {nodes:?}: {e}")))?;
        schema::create(&session, keyspace, replication_factor).await?;
        let st = Statements::prepare(&session, keyspace).await?;
        Ok(ScyllaStore { session, st })
    }

    /// Messages of one partition family (timeline, or one user's inbox)
    /// after `after_seq`, walking the conversation's buckets in order.
    async fn read_buckets(
        &self,
        inbox_user: Option<&str>,
        conv: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        // Seqs never reach 2^63 here, so nothing lies after such an after_seq.
        let Ok(after) = i64::try_from(after_seq) else { return Ok(Vec::new()) };
        if limit == 0 || after == i64::MAX {
            return Ok(Vec::new());
        }
        let first_bucket = bucket(after_seq + 1);
        let buckets: Vec<(i64,)> =
            fetch_all(&self.session, &self.st.buckets_select, (conv, first_bucket), "listing buckets").await?;
        let mut out = Vec::new();
        for (b,) in buckets {
            let want = limit_to_cql(limit - out.len());
            let rows: Vec<MessageRow> = match inbox_user {
                None => {
                    fetch_all(&self.session, &self.st.timeline_select, (conv, b, after, want), "reading a timeline")
                        .await?
                }
                Some(user) => {
                    fetch_all(&self.session, &self.st.inbox_select, (user, conv, b, after, want), "reading an inbox")
                        .await?
                }
            };
            for row in rows {
                out.push(message_from_row(conv, row)?);
            }
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    }

    async fn require_group(&self, group: &str) -> Result<(), StoreError> {
        let row: Option<(String, Option<bool>)> =
            fetch_one(&self.session, &self.st.group_select, (group,), "reading a group").await?;
        row.map(|_| ()).ok_or_else(|| StoreError::NotFound(format!("group {group:?}")))
    }

    /// Writes membership in both directions, in logged batches.
    async fn write_members(&self, group: &str, members: &[String], add: bool) -> Result<(), StoreError> {
        let mut writes = Writes::default();
        let (forward, backward) = if add {
            (&self.st.member_insert, &self.st.user_group_insert)
        } else {
            (&self.st.member_delete, &self.st.user_group_delete)
        };
        for member in members {
            let (g, m) = (CqlValue::Text(group.to_owned()), CqlValue::Text(member.clone()));
            writes.push(forward, vec![g.clone(), m.clone()]);
            writes.push(backward, vec![m, g]);
        }
        if writes.is_empty() {
            return Ok(());
        }
        writes.run(&self.session, "writing group members").await
    }

    /// Marks `group` read-fan-out once it has more than `large_above`
    /// members. A separate write after the membership change: a crash in
    /// between leaves the mark to the next change that adds a member.
    async fn mark_if_large(&self, group: &str, large_above: usize) -> Result<(), StoreError> {
        let rows: Vec<(String,)> =
            fetch_all(&self.session, &self.st.members_select, (group,), "counting group members").await?;
        if rows.len() <= large_above {
            return Ok(());
        }
        self.session
            .execute_unpaged(&self.st.group_mark_read_fanout, (group,))
            .await
            .map_err(|e| execution("marking a group read-fan-out", e))?;
        Ok(())
    }
}

/// `seq, sender, client_msg_id, ts_ms, kind, payload`.
type MessageRow = (i64, String, i64, i64, i8, Vec<u8>);

fn message_from_row(
    conv: &str,
    (seq, sender, client_msg_id, ts_ms, kind, payload): MessageRow,
) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        conv: conv.to_owned(),
        seq: seq_from_cql(seq)?,
        sender,
        client_msg_id: bits_from_cql(client_msg_id),
        ts_ms: bits_from_cql(ts_ms),
        kind: kind as u8,
        payload,
    })
}

fn now_ms() -> i64 {
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

#[async_trait]
impl MessageStore for ScyllaStore {
    async fn next_epoch(&self, owner: &str) -> Result<u64, StoreError> {
        for _ in 0..EPOCH_CAS_ATTEMPTS {
            let current: Option<(Option<i64>,)> =
                fetch_one(&self.session, &self.st.epoch_select, (EPOCH_ROW,), "reading the epoch").await?;
            let applied_value = match current {
                None | Some((None,)) => {
                    let applied = conditional(
                        &self.session,
                        &self.st.epoch_insert,
                        (EPOCH_ROW, 1_i64, owner),
                        "creating the epoch counter",
                    )
                    .await?;
                    applied.then_some(1)
                }
                Some((Some(value),)) => {
                    let next =
                        value.checked_add(1).ok_or_else(|| StoreError::Internal("epoch counter exhausted".into()))?;
                    let applied = conditional(
                        &self.session,
                        &self.st.epoch_update,
                        (next, owner, EPOCH_ROW, value),
                        "advancing the epoch counter",
                    )
                    .await?;
                    applied.then_some(next)
                }
            };
            if let Some(epoch) = applied_value {
                return seq_from_cql(epoch);
            }
            // Another owner won this round: read the new value and try again.
        }
        Err(StoreError::Unavailable(format!("epoch counter still contended after {EPOCH_CAS_ATTEMPTS} attempts")))
    }

    async fn append(&self, message: &StoredMessage, fanout: &Fanout) -> Result<AppendOutcome, StoreError> {
        append::append(&self.session, &self.st, message, fanout).await
    }

    async fn fence(&self, conv: &str, below: u64) -> Result<(), StoreError> {
        let below = seq_to_cql(below)?;
        self.session
            .execute_unpaged(&self.st.fence_upsert, (conv, below, below))
            .await
            .map_err(|e| execution("fencing a conversation", e))?;
        Ok(())
    }

    async fn read_timeline(&self, conv: &str, after_seq: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        self.read_buckets(None, conv, after_seq, limit).await
    }

    async fn read_inbox(
        &self,
        user: &str,
        conv: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.read_buckets(Some(user), conv, after_seq, limit).await
    }

    async fn last_seq(&self, conv: &str) -> Result<u64, StoreError> {
        let row: Option<(Option<i64>,)> =
            fetch_one(&self.session, &self.st.conversation_select, (conv,), "reading last_seq").await?;
        match row {
            Some((Some(seq),)) => seq_from_cql(seq),
            _ => Ok(0),
        }
    }

    async fn user_conversations(&self, user: &str) -> Result<Vec<UserConversation>, StoreError> {
        let rows: Vec<(String, Option<i64>)> =
            fetch_all(&self.session, &self.st.user_conversations_select, (user,), "reading a user's conversations")
                .await?;
        rows.into_iter()
            .map(|(conv, last)| Ok(UserConversation { conv, last_seq: seq_from_cql(last.unwrap_or(0))? }))
            .collect()
    }

    async fn set_cursor(&self, user: &str, device: &str, conv: &str, seq: u64) -> Result<(), StoreError> {
        let seq = seq_to_cql(seq)?;
        // The cell's write timestamp is the seq itself: of all cursor writes
        // the highest seq wins, whatever order they arrive in.
        self.session
            .execute_unpaged(&self.st.cursor_upsert, (user, device, conv, seq, seq))
            .await
            .map_err(|e| execution("writing a cursor", e))?;
        Ok(())
    }

    async fn cursors(&self, user: &str, device: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, Option<i64>)> =
            fetch_all(&self.session, &self.st.cursors_select, (user, device), "reading cursors").await?;
        rows.into_iter().map(|(conv, seq)| Ok((conv, seq_from_cql(seq.unwrap_or(0))?))).collect()
    }

    async fn create_group(&self, group: &str, members: &[String], large_above: usize) -> Result<(), StoreError> {
        let created = conditional(&self.session, &self.st.group_insert, (group, now_ms()), "creating a group").await?;
        if !created {
            return Err(StoreError::AlreadyExists(format!("group {group:?}")));
        }
        self.write_members(group, members, true).await?;
        self.mark_if_large(group, large_above).await
    }

    async fn add_members(&self, group: &str, members: &[String], large_above: usize) -> Result<(), StoreError> {
        self.require_group(group).await?;
        self.write_members(group, members, true).await?;
        self.mark_if_large(group, large_above).await
    }

    async fn remove_members(&self, group: &str, members: &[String]) -> Result<(), StoreError> {
        self.require_group(group).await?;
        self.write_members(group, members, false).await
    }

    async fn group(&self, group: &str) -> Result<Option<GroupInfo>, StoreError> {
        let row: Option<(String, Option<bool>)> =
            fetch_one(&self.session, &self.st.group_select, (group,), "reading a group").await?;
        let Some((_, read_fanout)) = row else { return Ok(None) };
        let rows: Vec<(String,)> =
            fetch_all(&self.session, &self.st.members_select, (group,), "reading group members").await?;
        let members = rows.into_iter().map(|(m,)| m).collect();
        Ok(Some(GroupInfo { group: group.to_owned(), members, read_fanout: read_fanout.unwrap_or(false) }))
    }

    async fn list_groups(&self) -> Result<Vec<String>, StoreError> {
        // A full scan (token order): an admin operation, sorted here.
        let rows: Vec<(String,)> = fetch_all(&self.session, &self.st.groups_select, (), "listing groups").await?;
        let mut groups: Vec<String> = rows.into_iter().map(|(g,)| g).collect();
        groups.sort();
        Ok(groups)
    }

    async fn user_groups(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            fetch_all(&self.session, &self.st.user_groups_select, (user,), "reading a user's groups").await?;
        Ok(rows.into_iter().map(|(g,)| g).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connecting_without_a_node_fails_cleanly() {
        let none = ScyllaStore::connect(&[], "corecast", 1).await;
        assert!(matches!(none, Err(StoreError::Unavailable(_))), "{none:?}");
        let bad_keyspace = ScyllaStore::connect(&["127.0.0.1:9042".into()], "bad-name", 1).await;
        assert!(matches!(bad_keyspace, Err(StoreError::Internal(_))), "{bad_keyspace:?}");
        // Port 1 on loopback: the connection is refused at once.
        let refused = ScyllaStore::connect(&["127.0.0.1:1".into()], "corecast", 1).await;
        assert!(matches!(refused, Err(StoreError::Unavailable(_))), "{refused:?}");
    }
}
