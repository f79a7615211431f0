//! The idempotent append protocol of the ScyllaDB backend.
//!
//! 1. The whole message, with its fan-out, goes into `dedup` with
//!    `INSERT ... IF NOT EXISTS` (a lightweight transaction keyed by
//!    (sender, client_msg_id)). Exactly one append of a pair wins.
//! 2. The winner writes the timeline row, the conversation's bucket, its
//!    `last_seq`, the inbox copies and the members' conversation index
//!    (idempotent upserts in logged batches) and returns `Stored`.
//! 3. A loser reads the dedup row at SERIAL consistency, rewrites step 2's
//!    rows from it — the same rows, so a no-op if they exist — and returns
//!    `Duplicate(original)`.
//!
//! Before step 1 the conversation's fence is read: an append below it fails
//! with [`StoreError::Fenced`]. The check and the dedup insert are two
//! requests to different partitions, so a fence raised between them does
//! not stop that append (ScyllaDB has no transaction across partitions);
//! the embedded and Redis backends check atomically.
//!
//! A crash (or a timeout) between 1 and 2 leaves a dedup row whose message
//! is not readable yet. Its sender was not told SENT (the append returned an
//! error or never returned), so it resends, and the resend's step 3 writes
//! the missing rows: a message that was acknowledged is never lost, and a
//! resend never stores a second copy. `last_seq`, the conversation index and
//! cursors are written `USING TIMESTAMP seq`, so a late repair of an older
//! message never moves them backwards.

use scylla::client::session::Session;
use scylla::value::CqlValue;

use super::convert::{bits_from_cql, bits_to_cql, seq_from_cql, seq_to_cql};
use super::query::{conditional, fetch_one, Writes};
use super::schema::bucket;
use super::statements::Statements;
use crate::{AppendOutcome, Fanout, StoreError, StoredMessage};

/// `dedup.fanout` of [`Fanout::Timeline`].
const FANOUT_TIMELINE: i8 = 0;
/// `dedup.fanout` of [`Fanout::Inboxes`].
const FANOUT_INBOXES: i8 = 1;

/// Stores `message` once per (sender, client_msg_id), see the module docs.
pub(crate) async fn append(
    session: &Session,
    st: &Statements,
    message: &StoredMessage,
    fanout: &Fanout,
) -> Result<AppendOutcome, StoreError> {
    let seq = seq_to_cql(message.seq)?;
    let fence: Option<(Option<i64>,)> =
        fetch_one(session, &st.fence_select, (&message.conv,), "reading a conversation's fence").await?;
    if let Some((Some(below),)) = fence {
        if seq < below {
            return Err(StoreError::Fenced(format!("{} is fenced below seq {below}", message.conv)));
        }
    }
    let (fanout_code, members) = encode_fanout(fanout);
    let values = (
        &message.sender,
        bits_to_cql(message.client_msg_id),
        &message.conv,
        seq,
        bits_to_cql(message.ts_ms),
        message.kind as i8,
        &message.payload,
        fanout_code,
        members,
    );
    if conditional(session, &st.dedup_insert, values, "recording a message's client id").await? {
        write_rows(session, st, message, fanout).await?;
        return Ok(AppendOutcome::Stored);
    }
    let (original, original_fanout) = read_dedup(session, st, &message.sender, message.client_msg_id)
        .await?
        .ok_or_else(|| StoreError::Unavailable("a dedup record reported as existing could not be read yet".into()))?;
    write_rows(session, st, &original, &original_fanout).await?;
    Ok(AppendOutcome::Duplicate(original))
}

/// The message and fan-out a (sender, client_msg_id) pair recorded, read
/// at LOCAL_SERIAL (it sees a transaction still in flight).
async fn read_dedup(
    session: &Session,
    st: &Statements,
    sender: &str,
    client_msg_id: u64,
) -> Result<Option<(StoredMessage, Fanout)>, StoreError> {
    type DedupRow = (String, i64, i64, i8, Vec<u8>, i8, Option<Vec<String>>);
    let row: Option<DedupRow> =
        fetch_one(session, &st.dedup_select_serial, (sender, bits_to_cql(client_msg_id)), "reading a dedup record")
            .await?;
    let Some((conv, seq, ts_ms, kind, payload, fanout_code, members)) = row else {
        return Ok(None);
    };
    let members = members.unwrap_or_default();
    let fanout = match fanout_code {
        FANOUT_TIMELINE => Fanout::Timeline { members },
        FANOUT_INBOXES => Fanout::Inboxes { members },
        other => return Err(StoreError::Internal(format!("corrupt dedup record: fan-out code {other}"))),
    };
    let message = StoredMessage {
        conv,
        seq: seq_from_cql(seq)?,
        sender: sender.to_owned(),
        client_msg_id,
        ts_ms: bits_from_cql(ts_ms),
        kind: kind as u8,
        payload,
    };
    Ok(Some((message, fanout)))
}

fn encode_fanout(fanout: &Fanout) -> (i8, &[String]) {
    match fanout {
        Fanout::Timeline { members } => (FANOUT_TIMELINE, members),
        Fanout::Inboxes { members } => (FANOUT_INBOXES, members),
    }
}

/// Step 2: every row of the message besides its dedup record.
async fn write_rows(session: &Session, st: &Statements, m: &StoredMessage, fanout: &Fanout) -> Result<(), StoreError> {
    let seq = seq_to_cql(m.seq)?;
    let bucket = CqlValue::BigInt(bucket(m.seq));
    let conv = CqlValue::Text(m.conv.clone());
    let message_columns = || {
        vec![
            CqlValue::BigInt(seq),
            CqlValue::Text(m.sender.clone()),
            CqlValue::BigInt(bits_to_cql(m.client_msg_id)),
            CqlValue::BigInt(bits_to_cql(m.ts_ms)),
            CqlValue::TinyInt(m.kind as i8),
            CqlValue::Blob(m.payload.clone()),
        ]
    };
    let (members, inboxes) = match fanout {
        Fanout::Timeline { members } => (members, false),
        Fanout::Inboxes { members } => (members, true),
    };

    let mut writes = Writes::default();
    writes.push(&st.bucket_insert, vec![conv.clone(), bucket.clone()]);
    writes.push(&st.timeline_insert, [vec![conv.clone(), bucket.clone()], message_columns()].concat());
    if inboxes {
        for member in members {
            let key = vec![CqlValue::Text(member.clone()), conv.clone(), bucket.clone()];
            writes.push(&st.inbox_insert, [key, message_columns()].concat());
        }
    }
    // Indexes last: whoever sees last_seq move can read the message.
    writes.push(&st.conversation_upsert, vec![conv.clone(), CqlValue::BigInt(seq), CqlValue::BigInt(seq)]);
    for member in members {
        writes.push(
            &st.user_conversation_upsert,
            vec![CqlValue::Text(member.clone()), conv.clone(), CqlValue::BigInt(seq), CqlValue::BigInt(seq)],
        );
    }
    writes.run(session, "writing a message's rows").await
}
