//! The engine's keyspaces (one per table of `keys`) and how engine errors
//! map to [`StoreError`].

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable, Snapshot};

use crate::StoreError;

/// One table of the embedded store, an engine keyspace of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Table {
    Timeline,
    Inbox,
    Dedup,
    Conversations,
    UserConversations,
    Cursors,
    Groups,
    GroupMembers,
    UserGroups,
    Meta,
}

impl Table {
    const ALL: [Table; 10] = [
        Table::Timeline,
        Table::Inbox,
        Table::Dedup,
        Table::Conversations,
        Table::UserConversations,
        Table::Cursors,
        Table::Groups,
        Table::GroupMembers,
        Table::UserGroups,
        Table::Meta,
    ];

    /// The keyspace's name on disk.
    fn name(self) -> &'static str {
        match self {
            Table::Timeline => "timeline",
            Table::Inbox => "inbox",
            Table::Dedup => "dedup",
            Table::Conversations => "conversations",
            Table::UserConversations => "user_conversations",
            Table::Cursors => "cursors",
            Table::Groups => "groups",
            Table::GroupMembers => "group_members",
            Table::UserGroups => "user_groups",
            Table::Meta => "meta",
        }
    }
}

/// The open database and a handle to every table's keyspace. Cheap to
/// share: reads run on the caller's thread straight from these handles.
pub(crate) struct Tables {
    db: Database,
    keyspaces: [Keyspace; Table::ALL.len()],
}

impl Tables {
    /// Opens (or creates) the database under `dir` and every table in it.
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("creating data directory {}: {e}", dir.display())))?;
        let db = Database::builder(dir).open().map_err(|e| match e {
            fjall::Error::Locked => {
                StoreError::Unavailable(format!("{} is already open in another process or store", dir.display()))
            }
            e => engine(e),
        })?;
        let keyspaces = Table::ALL
            .iter()
            .map(|t| db.keyspace(t.name(), KeyspaceCreateOptions::default).map_err(engine))
            .collect::<Result<Vec<_>, _>>()?
            .try_into()
            .map_err(|_| StoreError::Internal("keyspace count mismatch".into()))?;
        Ok(Self { db, keyspaces })
    }

    /// The keyspace of `table`.
    pub(crate) fn keyspace(&self, table: Table) -> &Keyspace {
        // `keyspaces` holds one entry per `Table::ALL`, in that order (the
        // discriminants are 0..ALL.len(), checked by a test below).
        &self.keyspaces[table as usize]
    }

    /// A consistent view of every table as of now, for readers: it shows
    /// each group commit whole or not at all, however far the writer has
    /// got with applying the next one.
    pub(crate) fn view(&self) -> View<'_> {
        View { tables: self, snapshot: self.db.snapshot() }
    }

    /// Reads one value, at the latest state (the writer's own reads).
    pub(crate) fn get(&self, table: Table, key: &[u8]) -> Result<Option<fjall::Slice>, StoreError> {
        self.keyspace(table).get(key).map_err(engine)
    }

    /// Every (key, value) of `table` whose key starts with `prefix`, in key
    /// order, at most `limit`.
    pub(crate) fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(fjall::Slice, fjall::Slice)>, StoreError> {
        rows(self.keyspace(table).prefix(prefix), limit)
    }

    /// A new atomic batch across tables.
    pub(crate) fn batch(&self) -> fjall::OwnedWriteBatch {
        self.db.batch()
    }

    /// fsyncs the engine's journal: everything committed so far survives a
    /// machine crash once this returns.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        self.db.persist(PersistMode::SyncAll).map_err(engine)
    }
}

/// Reads at one snapshot of the database (see [`Tables::view`]).
pub(crate) struct View<'a> {
    tables: &'a Tables,
    snapshot: Snapshot,
}

impl View<'_> {
    /// Reads one value.
    pub(crate) fn get(&self, table: Table, key: &[u8]) -> Result<Option<fjall::Slice>, StoreError> {
        self.snapshot.get(self.tables.keyspace(table), key).map_err(engine)
    }

    /// As [`Tables::scan_prefix`], at this view's snapshot.
    pub(crate) fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(fjall::Slice, fjall::Slice)>, StoreError> {
        rows(self.snapshot.prefix(self.tables.keyspace(table), prefix), limit)
    }

    /// Every (key, value) of `table` with `from <= key <= to`, in key
    /// order, at most `limit`, at this view's snapshot.
    pub(crate) fn scan_range(
        &self,
        table: Table,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(fjall::Slice, fjall::Slice)>, StoreError> {
        rows(self.snapshot.range(self.tables.keyspace(table), from..=to), limit)
    }
}

/// The first `limit` (key, value) pairs of a scan.
fn rows(scan: fjall::Iter, limit: usize) -> Result<Vec<(fjall::Slice, fjall::Slice)>, StoreError> {
    scan.take(limit).map(|g| g.into_inner().map_err(engine)).collect()
}

/// Maps an engine error: I/O trouble may pass (a full disk gets space), the
/// rest (corruption, a poisoned journal after a failed fsync) needs an
/// operator.
pub(crate) fn engine(e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Io(e) => StoreError::Unavailable(format!("storage I/O: {e}")),
        fjall::Error::Locked => StoreError::Unavailable("database is locked by another user".into()),
        e => StoreError::Internal(format!("storage engine: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_sees_each_batch_whole_or_not_at_all() {
        const BATCHES: usize = 300;
        const KEYS_PER_BATCH: usize = 40;
        let dir = tempfile::tempdir().unwrap();
        let tables = std::sync::Arc::new(Tables::open(dir.path()).unwrap());
        let writer = {
            let tables = tables.clone();
            std::thread::spawn(move || {
                for batch_no in 0..BATCHES {
                    let mut batch = tables.batch();
                    for key_no in 0..KEYS_PER_BATCH {
                        let key = format!("{batch_no:05}-{key_no:03}");
                        batch.insert(tables.keyspace(Table::Inbox), key.as_bytes(), b"x");
                    }
                    batch.commit().unwrap();
                }
            })
        };
        let mut partial_views = 0;
        let mut seen = 0;
        while seen < BATCHES * KEYS_PER_BATCH {
            seen = tables.view().scan_prefix(Table::Inbox, &[], usize::MAX).unwrap().len();
            partial_views += usize::from(seen % KEYS_PER_BATCH != 0);
        }
        writer.join().unwrap();
        assert_eq!(partial_views, 0, "views saw part of a batch");
    }

    #[test]
    fn table_index_matches_all_order() {
        for (i, t) in Table::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i);
        }
    }
}
