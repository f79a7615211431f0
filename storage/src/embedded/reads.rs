//! Reads of the embedded store: point reads and short range scans of an
//! LSM tree with a block cache, no writer round trip. Each runs at one
//! snapshot ([`View`]), so it sees every write whose future has resolved
//! and never part of a group commit. The store runs them on a blocking
//! thread pool, never on an async runtime's thread.

use super::apply::READ_FANOUT;
use super::codec::{decode_message, decode_u64};
use super::keys::{self, KeyReader};
use super::tables::{Table, View};
use crate::{GroupInfo, StoreError, StoredMessage, UserConversation};

/// `conv`'s timeline after `after_seq`.
pub(crate) fn timeline(
    view: &View<'_>,
    conv: &str,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let Some(first) = after_seq.checked_add(1) else { return Ok(Vec::new()) };
    let from = keys::timeline(conv, first);
    let to = keys::timeline(conv, u64::MAX);
    messages(view.scan_range(Table::Timeline, &from, &to, limit)?)
}

/// `user`'s inbox copy of `conv` after `after_seq`.
pub(crate) fn inbox(
    view: &View<'_>,
    user: &str,
    conv: &str,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let Some(first) = after_seq.checked_add(1) else { return Ok(Vec::new()) };
    let from = keys::inbox(user, conv, first);
    let to = keys::inbox(user, conv, u64::MAX);
    messages(view.scan_range(Table::Inbox, &from, &to, limit)?)
}

fn messages(rows: Vec<(fjall::Slice, fjall::Slice)>) -> Result<Vec<StoredMessage>, StoreError> {
    rows.iter().map(|(_, value)| decode_message(value)).collect()
}

/// The highest seq stored in `conv`.
pub(crate) fn last_seq(view: &View<'_>, conv: &str) -> Result<u64, StoreError> {
    match view.get(Table::Conversations, &keys::conversation(conv))? {
        Some(bytes) => decode_u64(&bytes),
        None => Ok(0),
    }
}

/// `user`'s conversation index, sorted by conversation id.
pub(crate) fn user_conversations(view: &View<'_>, user: &str) -> Result<Vec<UserConversation>, StoreError> {
    let prefix = keys::str_prefix(user);
    view.scan_prefix(Table::UserConversations, &prefix, usize::MAX)?
        .iter()
        .map(|(key, value)| {
            let conv = single_str_after(key, prefix.len())?;
            Ok(UserConversation { conv, last_seq: decode_u64(value)? })
        })
        .collect()
}

/// Every cursor of one device, sorted by conversation id.
pub(crate) fn cursors(view: &View<'_>, user: &str, device: &str) -> Result<Vec<(String, u64)>, StoreError> {
    let prefix = keys::cursors_prefix(user, device);
    view.scan_prefix(Table::Cursors, &prefix, usize::MAX)?
        .iter()
        .map(|(key, value)| Ok((single_str_after(key, prefix.len())?, decode_u64(value)?)))
        .collect()
}

/// A group and its sorted members.
pub(crate) fn group(view: &View<'_>, group: &str) -> Result<Option<GroupInfo>, StoreError> {
    let Some(marker) = view.get(Table::Groups, &keys::group(group))? else {
        return Ok(None);
    };
    let members = strs_after_prefix(view, Table::GroupMembers, group)?;
    Ok(Some(GroupInfo { group: group.to_owned(), members, read_fanout: &*marker == READ_FANOUT }))
}

/// Every group id, sorted.
pub(crate) fn list_groups(view: &View<'_>) -> Result<Vec<String>, StoreError> {
    view.scan_prefix(Table::Groups, &[], usize::MAX)?.iter().map(|(key, _)| single_str_after(key, 0)).collect()
}

/// Groups `user` is a member of, sorted.
pub(crate) fn user_groups(view: &View<'_>, user: &str) -> Result<Vec<String>, StoreError> {
    strs_after_prefix(view, Table::UserGroups, user)
}

/// The second string field of every key of `table` whose first is `first`.
/// Keys are order-preserving, so the result is sorted.
fn strs_after_prefix(view: &View<'_>, table: Table, first: &str) -> Result<Vec<String>, StoreError> {
    let prefix = keys::str_prefix(first);
    view.scan_prefix(table, &prefix, usize::MAX)?.iter().map(|(key, _)| single_str_after(key, prefix.len())).collect()
}

/// Decodes a key that is `skip` known bytes followed by exactly one string.
fn single_str_after(key: &[u8], skip: usize) -> Result<String, StoreError> {
    let mut reader = KeyReader::new(key).skip(skip)?;
    let s = reader.str()?;
    reader.finish()?;
    Ok(s)
}
