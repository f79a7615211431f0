//! The writer's view of one group commit: reads see the writes staged by
//! earlier commands of the same group, and the group is applied as one
//! atomic engine batch.

use std::collections::BTreeMap;

use super::tables::{engine, Table, Tables};
use crate::StoreError;

/// Writes staged for one group commit, over the committed state in
/// [`Tables`].
///
/// Later writes to a key replace earlier ones, so the batch holds each key
/// once: a group that adds and then removes a member stores the removal.
pub(crate) struct GroupTxn<'a> {
    tables: &'a Tables,
    writes: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
    needs_sync: bool,
}

impl<'a> GroupTxn<'a> {
    /// An empty group over `tables`.
    pub(crate) fn new(tables: &'a Tables) -> Self {
        Self { tables, writes: BTreeMap::new(), needs_sync: false }
    }

    /// The value of `key`: staged in this group if it was, else committed.
    pub(crate) fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        // A borrowed (Table, &[u8]) lookup would need a custom key type; the
        // copy is one small allocation per read on the writer thread.
        match self.writes.get(&(table, key.to_vec())) {
            Some(staged) => Ok(staged.clone()),
            None => Ok(self.tables.get(table, key)?.map(|v| v.to_vec())),
        }
    }

    /// How many keys of `table` start with `prefix`, counting this
    /// group's staged writes over the committed state.
    pub(crate) fn count_prefix(&self, table: Table, prefix: &[u8]) -> Result<usize, StoreError> {
        let committed = self.tables.scan_prefix(table, prefix, usize::MAX)?;
        let mut count = committed.len();
        let staged = self
            .writes
            .range((table, prefix.to_vec())..)
            .take_while(|((t, key), _)| *t == table && key.starts_with(prefix));
        for ((_, key), value) in staged {
            let was_committed = committed.binary_search_by(|(k, _)| k.as_ref().cmp(key.as_slice())).is_ok();
            match (value.is_some(), was_committed) {
                (true, false) => count += 1,
                (false, true) => count -= 1,
                _ => {}
            }
        }
        Ok(count)
    }

    /// Stages an insert or overwrite.
    pub(crate) fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert((table, key), Some(value));
    }

    /// Stages a removal.
    pub(crate) fn delete(&mut self, table: Table, key: Vec<u8>) {
        self.writes.insert((table, key), None);
    }

    /// Asks for an fsync after this group whatever the durability mode
    /// (sequence epochs).
    pub(crate) fn require_sync(&mut self) {
        self.needs_sync = true;
    }

    /// Whether some command of the group asked for an fsync.
    pub(crate) fn needs_sync(&self) -> bool {
        self.needs_sync
    }

    /// Whether nothing was staged.
    pub(crate) fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Applies every staged write as one atomic batch (written to the
    /// journal and handed to the OS, not yet fsynced).
    pub(crate) fn commit(self) -> Result<(), StoreError> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let mut batch = self.tables.batch();
        for ((table, key), value) in self.writes {
            let keyspace = self.tables.keyspace(table);
            match value {
                Some(value) => batch.insert(keyspace, key, value),
                None => batch.remove(keyspace, key),
            }
        }
        batch.commit().map_err(engine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_staged_write_of_a_key_wins_and_reads_see_staged_writes() {
        let dir = tempfile::tempdir().unwrap();
        let tables = Tables::open(dir.path()).unwrap();
        let mut txn = GroupTxn::new(&tables);
        txn.put(Table::Groups, b"added-then-removed".to_vec(), vec![]);
        txn.put(Table::Groups, b"kept".to_vec(), b"1".to_vec());
        assert_eq!(txn.get(Table::Groups, b"kept").unwrap(), Some(b"1".to_vec()));
        txn.delete(Table::Groups, b"added-then-removed".to_vec());
        assert_eq!(txn.get(Table::Groups, b"added-then-removed").unwrap(), None);
        assert_eq!(txn.get(Table::GroupMembers, b"kept").unwrap(), None, "tables are separate");
        txn.commit().unwrap();
        assert!(tables.get(Table::Groups, b"added-then-removed").unwrap().is_none());
        assert_eq!(tables.get(Table::Groups, b"kept").unwrap().as_deref(), Some(&b"1"[..]));
    }
}
