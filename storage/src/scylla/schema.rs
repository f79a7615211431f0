//! The ScyllaDB schema (the same CQL is in `docs/STORAGE.md`), created on
//! connect if absent.
//!
//! Timelines and inboxes are partitioned by (conversation, bucket) with
//! `bucket = seq >> BUCKET_BITS`, so no partition holds more than 2^20
//! messages of one conversation however long it lives; `conv_buckets` lists
//! the buckets a conversation has, so a read walks only the buckets that
//! exist (with `seq = epoch << 40 | counter`, buckets of different epochs
//! are far apart). The keyspace disables tablets: ScyllaDB does not support
//! lightweight transactions (used for dedup, groups and epochs) on tablets
//! keyspaces in the versions we target; servers that predate tablets get
//! the same keyspace without that option.

use scylla::client::session::Session;

use super::convert::execution;
use crate::StoreError;

/// Bits of a seq below the bucket number: 2^20 seqs per partition.
pub(crate) const BUCKET_BITS: u32 = 20;

/// The bucket (partition) of a seq.
pub(crate) fn bucket(seq: u64) -> i64 {
    // seq < 2^63 is enforced before anything is written, so this fits.
    (seq >> BUCKET_BITS) as i64
}

/// `CREATE TABLE` statements, with `{ks}` for the keyspace.
const TABLES: &[&str] = &[
    // One row per (sender, client_msg_id), written first with IF NOT EXISTS.
    // Holds everything needed to rewrite the message's other rows.
    "CREATE TABLE IF NOT EXISTS {ks}.dedup (
        sender text, client_msg_id bigint,
        conv text, seq bigint, ts_ms bigint, kind tinyint, payload blob,
        fanout tinyint, members list<text>,
        PRIMARY KEY ((sender, client_msg_id)))",
    "CREATE TABLE IF NOT EXISTS {ks}.timeline (
        conv text, bucket bigint, seq bigint,
        sender text, client_msg_id bigint, ts_ms bigint, kind tinyint, payload blob,
        PRIMARY KEY ((conv, bucket), seq)) WITH CLUSTERING ORDER BY (seq ASC)",
    "CREATE TABLE IF NOT EXISTS {ks}.inbox (
        user_id text, conv text, bucket bigint, seq bigint,
        sender text, client_msg_id bigint, ts_ms bigint, kind tinyint, payload blob,
        PRIMARY KEY ((user_id, conv, bucket), seq)) WITH CLUSTERING ORDER BY (seq ASC)",
    "CREATE TABLE IF NOT EXISTS {ks}.conv_buckets (
        conv text, bucket bigint,
        PRIMARY KEY (conv, bucket)) WITH CLUSTERING ORDER BY (bucket ASC)",
    // last_seq cells are written USING TIMESTAMP seq: the highest seq wins.
    "CREATE TABLE IF NOT EXISTS {ks}.conversations (
        conv text PRIMARY KEY, last_seq bigint)",
    "CREATE TABLE IF NOT EXISTS {ks}.user_conversations (
        user_id text, conv text, last_seq bigint,
        PRIMARY KEY (user_id, conv))",
    // seq cells are written USING TIMESTAMP seq: a cursor never moves back.
    "CREATE TABLE IF NOT EXISTS {ks}.cursors (
        user_id text, device_id text, conv text, seq bigint,
        PRIMARY KEY ((user_id, device_id), conv))",
    // read_fanout: the group once had more members than write fan-out
    // allows, and is read from its timeline for good.
    "CREATE TABLE IF NOT EXISTS {ks}.groups (
        group_id text PRIMARY KEY, created_ms bigint, read_fanout boolean)",
    // below cells are written USING TIMESTAMP below: a fence never moves down.
    "CREATE TABLE IF NOT EXISTS {ks}.fences (
        conv text PRIMARY KEY, below bigint)",
    "CREATE TABLE IF NOT EXISTS {ks}.group_members (
        group_id text, member text,
        PRIMARY KEY (group_id, member))",
    "CREATE TABLE IF NOT EXISTS {ks}.user_groups (
        member text, group_id text,
        PRIMARY KEY (member, group_id))",
    // One row, 'sequence', advanced by compare-and-set.
    "CREATE TABLE IF NOT EXISTS {ks}.epochs (
        name text PRIMARY KEY, value bigint, owner text)",
];

/// Checks that `keyspace` is a plain CQL identifier (it is spliced into
/// statements, so nothing else may get through).
pub(crate) fn validate_keyspace(keyspace: &str) -> Result<(), StoreError> {
    let ok = !keyspace.is_empty()
        && keyspace.len() <= 48
        && keyspace.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !keyspace.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Internal(format!(
            "invalid keyspace name {keyspace:?}: use 1-48 letters, digits or _, not starting with a digit"
        )))
    }
}

/// Creates the keyspace and every table if absent.
pub(crate) async fn create(session: &Session, keyspace: &str, replication_factor: u32) -> Result<(), StoreError> {
    let replication = format!("{{'class': 'NetworkTopologyStrategy', 'replication_factor': {replication_factor}}}");
    let with_tablets_off = format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication} AND tablets = {{'enabled': false}}"
    );
    if let Err(first) = session.query_unpaged(with_tablets_off, ()).await {
        // Servers without tablets reject the option; anything else fails again below.
        let plain = format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}");
        session
            .query_unpaged(plain, ())
            .await
            .map_err(|e| execution(&format!("creating keyspace {keyspace} (with tablets disabled: {first})"), e))?;
    }
    for table in TABLES {
        let cql = table.replace("{ks}", keyspace);
        session.query_unpaged(cql, ()).await.map_err(|e| execution("creating a table", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_two_to_the_twenty_seqs() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket((1 << 20) - 1), 0);
        assert_eq!(bucket(1 << 20), 1);
        assert_eq!(bucket((5 << 40) | 3), 5 << 20);
    }

    #[test]
    fn keyspace_names_are_checked() {
        assert!(validate_keyspace("corecast").is_ok());
        assert!(validate_keyspace("corecast_test_1").is_ok());
        for bad in ["", "1abc", "a-b", "a;DROP", "a b", &"x".repeat(49)] {
            assert!(validate_keyspace(bad).is_err(), "{bad:?}");
        }
    }
}
