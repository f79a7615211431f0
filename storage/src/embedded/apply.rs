//! What each write does to the tables, run on the writer thread inside a
//! [`GroupTxn`].
//!
//! Each function does every fallible read and check first and stages its
//! writes only once nothing can fail any more, so a command that returns an
//! error has staged nothing: "everything or nothing" holds per command, and
//! the group's batch makes it hold on disk.

use super::codec::{decode_message, decode_u64, encode_message, encode_u64};
use super::keys;
use super::tables::Table;
use super::txn::GroupTxn;
use crate::{AppendOutcome, Fanout, StoreError, StoredMessage};

/// Stores `message` with its dedup record, fan-out and index entries, or
/// returns the original if its (sender, client_msg_id) is already stored.
pub(crate) fn append(
    txn: &mut GroupTxn<'_>,
    message: &StoredMessage,
    fanout: &Fanout,
) -> Result<AppendOutcome, StoreError> {
    let dedup_key = keys::dedup(&message.sender, message.client_msg_id);
    if let Some(pointer) = txn.get(Table::Dedup, &dedup_key)? {
        return Ok(AppendOutcome::Duplicate(load_by_pointer(txn, &pointer)?));
    }
    let fence = stored_u64(txn, Table::Meta, &keys::fence(&message.conv))?;
    if message.seq < fence {
        return Err(StoreError::Fenced(format!("{} is fenced below seq {fence}", message.conv)));
    }

    let value = encode_message(message)?;
    let timeline_key = keys::timeline(&message.conv, message.seq);
    let conv_key = keys::conversation(&message.conv);
    let conv_last = max_seq(txn.get(Table::Conversations, &conv_key)?.as_deref(), message.seq)?;
    let (members, inboxes) = match fanout {
        Fanout::Timeline { members } => (members, false),
        Fanout::Inboxes { members } => (members, true),
    };
    let mut index = Vec::with_capacity(members.len());
    for member in members {
        let key = keys::user_conversation(member, &message.conv);
        let last = max_seq(txn.get(Table::UserConversations, &key)?.as_deref(), message.seq)?;
        index.push((key, last));
    }

    // Nothing below can fail: stage everything.
    if inboxes {
        for member in members {
            txn.put(Table::Inbox, keys::inbox(member, &message.conv, message.seq), value.clone());
        }
    }
    txn.put(Table::Timeline, timeline_key.clone(), value);
    txn.put(Table::Dedup, dedup_key, timeline_key);
    txn.put(Table::Conversations, conv_key, encode_u64(conv_last).to_vec());
    for (key, last) in index {
        txn.put(Table::UserConversations, key, encode_u64(last).to_vec());
    }
    Ok(AppendOutcome::Stored)
}

/// The message a dedup record points at (its timeline key).
pub(crate) fn load_by_pointer(txn: &GroupTxn<'_>, pointer: &[u8]) -> Result<StoredMessage, StoreError> {
    let bytes = txn
        .get(Table::Timeline, pointer)?
        .ok_or_else(|| StoreError::Internal("dedup record points at a missing message".into()))?;
    decode_message(&bytes)
}

/// Raises `conv`'s fence to `below` (never lowers it).
pub(crate) fn fence(txn: &mut GroupTxn<'_>, conv: &str, below: u64) -> Result<(), StoreError> {
    let key = keys::fence(conv);
    if stored_u64(txn, Table::Meta, &key)? < below {
        txn.put(Table::Meta, key, encode_u64(below).to_vec());
    }
    Ok(())
}

/// A stored counter, 0 when absent.
fn stored_u64(txn: &GroupTxn<'_>, table: Table, key: &[u8]) -> Result<u64, StoreError> {
    txn.get(table, key)?.map_or(Ok(0), |bytes| decode_u64(&bytes))
}

/// The larger of a stored counter (absent = 0) and `seq`.
fn max_seq(stored: Option<&[u8]>, seq: u64) -> Result<u64, StoreError> {
    Ok(match stored {
        Some(bytes) => decode_u64(bytes)?.max(seq),
        None => seq,
    })
}

/// Moves a device's cursor forward (never back).
pub(crate) fn set_cursor(
    txn: &mut GroupTxn<'_>,
    user: &str,
    device: &str,
    conv: &str,
    seq: u64,
) -> Result<(), StoreError> {
    let key = keys::cursor(user, device, conv);
    if let Some(stored) = txn.get(Table::Cursors, &key)? {
        if decode_u64(&stored)? >= seq {
            return Ok(());
        }
    }
    txn.put(Table::Cursors, key, encode_u64(seq).to_vec());
    Ok(())
}

/// The `groups` value of a group that is read-fan-out for good.
pub(crate) const READ_FANOUT: &[u8] = &[1];

/// Creates a group with its first members, read-fan-out if they are more
/// than `large_above`.
pub(crate) fn create_group(
    txn: &mut GroupTxn<'_>,
    group: &str,
    members: &[String],
    large_above: usize,
) -> Result<(), StoreError> {
    let key = keys::group(group);
    if txn.get(Table::Groups, &key)?.is_some() {
        return Err(StoreError::AlreadyExists(format!("group {group:?}")));
    }
    txn.put(Table::Groups, key, Vec::new());
    stage_members(txn, group, members, true);
    mark_if_large(txn, group, large_above)
}

/// Adds members to an existing group; it becomes read-fan-out for good if
/// it then has more than `large_above`.
pub(crate) fn add_members(
    txn: &mut GroupTxn<'_>,
    group: &str,
    members: &[String],
    large_above: usize,
) -> Result<(), StoreError> {
    require_group(txn, group)?;
    stage_members(txn, group, members, true);
    mark_if_large(txn, group, large_above)
}

/// Marks `group` read-fan-out when its staged membership is above
/// `large_above`. Counting scans the committed members and the staged
/// changes of this group commit.
fn mark_if_large(txn: &mut GroupTxn<'_>, group: &str, large_above: usize) -> Result<(), StoreError> {
    let key = keys::group(group);
    if txn.get(Table::Groups, &key)?.as_deref() == Some(READ_FANOUT) {
        return Ok(());
    }
    if txn.count_prefix(Table::GroupMembers, &keys::str_prefix(group))? > large_above {
        txn.put(Table::Groups, key, READ_FANOUT.to_vec());
    }
    Ok(())
}

/// Removes members from an existing group (absent members are ignored).
pub(crate) fn remove_members(txn: &mut GroupTxn<'_>, group: &str, members: &[String]) -> Result<(), StoreError> {
    require_group(txn, group)?;
    stage_members(txn, group, members, false);
    Ok(())
}

fn require_group(txn: &GroupTxn<'_>, group: &str) -> Result<(), StoreError> {
    match txn.get(Table::Groups, &keys::group(group))? {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("group {group:?}"))),
    }
}

/// Stages membership in both directions (group → user, user → group).
fn stage_members(txn: &mut GroupTxn<'_>, group: &str, members: &[String], add: bool) {
    for member in members {
        let forward = keys::group_member(group, member);
        let backward = keys::user_group(member, group);
        if add {
            txn.put(Table::GroupMembers, forward, Vec::new());
            txn.put(Table::UserGroups, backward, Vec::new());
        } else {
            txn.delete(Table::GroupMembers, forward);
            txn.delete(Table::UserGroups, backward);
        }
    }
}

/// Takes the next epoch and asks for an fsync before anyone learns it.
pub(crate) fn next_epoch(txn: &mut GroupTxn<'_>) -> Result<u64, StoreError> {
    let last = match txn.get(Table::Meta, keys::EPOCH_KEY)? {
        Some(bytes) => decode_u64(&bytes)?,
        None => 0,
    };
    let next = last.checked_add(1).ok_or_else(|| StoreError::Internal("epoch counter exhausted".into()))?;
    txn.put(Table::Meta, keys::EPOCH_KEY.to_vec(), encode_u64(next).to_vec());
    txn.require_sync();
    Ok(next)
}
