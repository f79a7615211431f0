//! Every statement the ScyllaDB backend runs, prepared once on connect.
//!
//! Prepared statements carry their partition key's position, which is what
//! lets the driver's default load-balancing policy (token-aware, preferring
//! a replica of the partition) route each request straight to a replica.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;

use crate::StoreError;

/// The prepared statements of one keyspace.
pub(crate) struct Statements {
    pub(crate) dedup_insert: PreparedStatement,
    pub(crate) dedup_select_serial: PreparedStatement,
    pub(crate) timeline_insert: PreparedStatement,
    pub(crate) timeline_select: PreparedStatement,
    pub(crate) inbox_insert: PreparedStatement,
    pub(crate) inbox_select: PreparedStatement,
    pub(crate) bucket_insert: PreparedStatement,
    pub(crate) buckets_select: PreparedStatement,
    pub(crate) conversation_upsert: PreparedStatement,
    pub(crate) conversation_select: PreparedStatement,
    pub(crate) user_conversation_upsert: PreparedStatement,
    pub(crate) user_conversations_select: PreparedStatement,
    pub(crate) cursor_upsert: PreparedStatement,
    pub(crate) cursors_select: PreparedStatement,
    pub(crate) group_insert: PreparedStatement,
    pub(crate) group_select: PreparedStatement,
    pub(crate) group_mark_read_fanout: PreparedStatement,
    pub(crate) fence_upsert: PreparedStatement,
    pub(crate) fence_select: PreparedStatement,
    pub(crate) groups_select: PreparedStatement,
    pub(crate) member_insert: PreparedStatement,
    pub(crate) member_delete: PreparedStatement,
    pub(crate) members_select: PreparedStatement,
    pub(crate) user_group_insert: PreparedStatement,
    pub(crate) user_group_delete: PreparedStatement,
    pub(crate) user_groups_select: PreparedStatement,
    pub(crate) epoch_select: PreparedStatement,
    pub(crate) epoch_insert: PreparedStatement,
    pub(crate) epoch_update: PreparedStatement,
}

const MESSAGE_COLUMNS: &str = "seq, sender, client_msg_id, ts_ms, kind, payload";

impl Statements {
    /// Prepares every statement against `keyspace`.
    pub(crate) async fn prepare(session: &Session, keyspace: &str) -> Result<Self, StoreError> {
        let p = Preparer { session, keyspace };
        Ok(Self {
            dedup_insert: p
                .conditional(
                    "INSERT INTO {ks}.dedup (sender, client_msg_id, conv, seq, ts_ms, kind, payload, fanout, members) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
                )
                .await?,
            dedup_select_serial: p.serial_read(DEDUP_SELECT).await?,
            timeline_insert: p
                .statement(&format!(
                    "INSERT INTO {{ks}}.timeline (conv, bucket, {MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                ))
                .await?,
            timeline_select: p
                .statement(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM {{ks}}.timeline WHERE conv = ? AND bucket = ? AND seq > ? LIMIT ?"
                ))
                .await?,
            inbox_insert: p
                .statement(&format!(
                    "INSERT INTO {{ks}}.inbox (user_id, conv, bucket, {MESSAGE_COLUMNS}) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ))
                .await?,
            inbox_select: p
                .statement(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM {{ks}}.inbox \
                     WHERE user_id = ? AND conv = ? AND bucket = ? AND seq > ? LIMIT ?"
                ))
                .await?,
            bucket_insert: p.statement("INSERT INTO {ks}.conv_buckets (conv, bucket) VALUES (?, ?)").await?,
            buckets_select: p.statement("SELECT bucket FROM {ks}.conv_buckets WHERE conv = ? AND bucket >= ?").await?,
            conversation_upsert: p
                .statement("INSERT INTO {ks}.conversations (conv, last_seq) VALUES (?, ?) USING TIMESTAMP ?")
                .await?,
            conversation_select: p.statement("SELECT last_seq FROM {ks}.conversations WHERE conv = ?").await?,
            user_conversation_upsert: p
                .statement(
                    "INSERT INTO {ks}.user_conversations (user_id, conv, last_seq) VALUES (?, ?, ?) USING TIMESTAMP ?",
                )
                .await?,
            user_conversations_select: p
                .statement("SELECT conv, last_seq FROM {ks}.user_conversations WHERE user_id = ?")
                .await?,
            cursor_upsert: p
                .statement(
                    "INSERT INTO {ks}.cursors (user_id, device_id, conv, seq) VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
                )
                .await?,
            cursors_select: p
                .statement("SELECT conv, seq FROM {ks}.cursors WHERE user_id = ? AND device_id = ?")
                .await?,
            group_insert: p
                .conditional("INSERT INTO {ks}.groups (group_id, created_ms) VALUES (?, ?) IF NOT EXISTS")
                .await?,
            group_select: p.statement("SELECT group_id, read_fanout FROM {ks}.groups WHERE group_id = ?").await?,
            group_mark_read_fanout: p.statement("UPDATE {ks}.groups SET read_fanout = true WHERE group_id = ?").await?,
            fence_upsert: p.statement("INSERT INTO {ks}.fences (conv, below) VALUES (?, ?) USING TIMESTAMP ?").await?,
            fence_select: p.statement("SELECT below FROM {ks}.fences WHERE conv = ?").await?,
            groups_select: p.statement("SELECT group_id FROM {ks}.groups").await?,
            member_insert: p.statement("INSERT INTO {ks}.group_members (group_id, member) VALUES (?, ?)").await?,
            member_delete: p.statement("DELETE FROM {ks}.group_members WHERE group_id = ? AND member = ?").await?,
            members_select: p.statement("SELECT member FROM {ks}.group_members WHERE group_id = ?").await?,
            user_group_insert: p.statement("INSERT INTO {ks}.user_groups (member, group_id) VALUES (?, ?)").await?,
            user_group_delete: p.statement("DELETE FROM {ks}.user_groups WHERE member = ? AND group_id = ?").await?,
            user_groups_select: p.statement("SELECT group_id FROM {ks}.user_groups WHERE member = ?").await?,
            epoch_select: p.serial_read("SELECT value FROM {ks}.epochs WHERE name = ?").await?,
            epoch_insert: p
                .conditional("INSERT INTO {ks}.epochs (name, value, owner) VALUES (?, ?, ?) IF NOT EXISTS")
                .await?,
            epoch_update: p
                .conditional("UPDATE {ks}.epochs SET value = ?, owner = ? WHERE name = ? IF value = ?")
                .await?,
        })
    }
}

const DEDUP_SELECT: &str =
    "SELECT conv, seq, ts_ms, kind, payload, fanout, members FROM {ks}.dedup WHERE sender = ? AND client_msg_id = ?";

struct Preparer<'a> {
    session: &'a Session,
    keyspace: &'a str,
}

impl Preparer<'_> {
    /// Prepares `cql` (with `{ks}` for the keyspace) at the session's
    /// default consistency (LOCAL_QUORUM).
    async fn prepare(&self, cql: &str) -> Result<PreparedStatement, StoreError> {
        let cql = cql.replace("{ks}", self.keyspace);
        self.session.prepare(cql.as_str()).await.map_err(|e| StoreError::Unavailable(format!("preparing `{cql}`: {e}")))
    }

    /// A read or an upsert: running it twice has the effect of once, so the
    /// driver may retry it after a timeout.
    async fn statement(&self, cql: &str) -> Result<PreparedStatement, StoreError> {
        let mut statement = self.prepare(cql).await?;
        statement.set_is_idempotent(true);
        Ok(statement)
    }

    /// A lightweight transaction (`IF ...`): not retried by the driver, as a
    /// second attempt would answer "not applied" to the first one's write;
    /// its serial phase runs at the session's LOCAL_SERIAL.
    async fn conditional(&self, cql: &str) -> Result<PreparedStatement, StoreError> {
        self.prepare(cql).await
    }

    /// A read at LOCAL_SERIAL: it sees every lightweight transaction that
    /// completed and finishes one left in flight.
    async fn serial_read(&self, cql: &str) -> Result<PreparedStatement, StoreError> {
        let mut statement = self.statement(cql).await?;
        statement.set_consistency(Consistency::LocalSerial);
        Ok(statement)
    }
}
