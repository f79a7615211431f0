//! Token revocations: for each revoked user, the second up to which every
//! token issued (`iat`) is refused. Read on every AUTH, changed by the admin
//! API and, in a cluster, by what the routers recorded in Redis.
//!
//! The list survives restarts: every change is written to
//! `revocations.json` in the node's data directory (a new file, synced,
//! then renamed over the old one, so a crash leaves one whole version).
//! Entries older than [`RETENTION_SECS`] are dropped: every token issued
//! before then has expired if tokens live less than that.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use anyhow::Context;
use rustc_hash::FxHashMap;

/// How long a revocation is kept: tokens must not be issued for longer.
pub use corecast_cluster::registry::REVOCATION_RETENTION_SECS as RETENTION_SECS;

/// The revocations in force on this node.
#[derive(Default)]
pub struct Revocations {
    by_user: RwLock<FxHashMap<String, u64>>,
    /// Where the list is kept; none in unit tests.
    file: Option<PathBuf>,
    /// Held while the list is written to `file`.
    save_turn: Mutex<()>,
}

impl Revocations {
    /// The list kept in `dir/revocations.json`, loaded if the file exists.
    pub fn open(dir: &Path) -> anyhow::Result<Revocations> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
        let file = dir.join("revocations.json");
        let by_user = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice::<FxHashMap<String, u64>>(&bytes)
                .with_context(|| format!("{} is not a revocation list; fix or remove it", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FxHashMap::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        Ok(Revocations { by_user: RwLock::new(by_user), file: Some(file), save_turn: Mutex::default() })
    }

    /// Whether a token of `user` issued at `issued_at` is revoked (a token
    /// without `iat` counts as issued at the epoch).
    pub fn is_revoked(&self, user: &str, issued_at: Option<u64>) -> bool {
        let by_user = corecast_proto::sync::read(&self.by_user);
        by_user.get(user).is_some_and(|&before| issued_at.unwrap_or(0) <= before)
    }

    /// Revokes the tokens of each `(user, before)` issued up to `before`
    /// (a later revocation already in force stays), drops expired entries,
    /// and saves the list if anything changed. Returns how many changed.
    pub fn apply(&self, entries: impl IntoIterator<Item = (String, u64)>, now: u64) -> anyhow::Result<usize> {
        let (changed, pruned) = {
            let mut by_user = corecast_proto::sync::write(&self.by_user);
            let mut changed = 0;
            for (user, before) in entries {
                let in_force = by_user.entry(user).or_insert(0);
                if before > *in_force {
                    *in_force = before;
                    changed += 1;
                }
            }
            let oldest = now.saturating_sub(RETENTION_SECS);
            let len = by_user.len();
            by_user.retain(|_, before| *before >= oldest);
            (changed, by_user.len() != len)
        };
        if changed > 0 || pruned {
            self.save()?;
        }
        Ok(changed)
    }

    /// How many users have a revocation in force.
    pub fn len(&self) -> usize {
        corecast_proto::sync::read(&self.by_user).len()
    }

    /// Whether no revocation is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every revocation in force, by user.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let by_user = corecast_proto::sync::read(&self.by_user);
        by_user.iter().map(|(user, before)| (user.clone(), *before)).collect()
    }

    /// Writes the list as it is now. Outside the list's lock, so AUTH on
    /// the shards never waits for the disk; one save at a time, each taking
    /// its copy once it holds the turn, so the last save writes the newest.
    fn save(&self) -> anyhow::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        let _turn = corecast_proto::sync::lock(&self.save_turn);
        let bytes = serde_json::to_vec(&self.snapshot())?;
        let fresh = file.with_extension("json.new");
        let write = || -> std::io::Result<()> {
            let mut out = std::fs::File::create(&fresh)?;
            out.write_all(&bytes)?;
            out.sync_all()?;
            std::fs::rename(&fresh, file)
        };
        write().with_context(|| format!("saving the revocation list to {}", file.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn a_revocation_refuses_tokens_issued_up_to_it_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let list = Revocations::open(dir.path()).unwrap();
        assert_eq!(list.apply([("alice".to_string(), NOW)], NOW).unwrap(), 1);
        assert!(list.is_revoked("alice", Some(NOW)));
        assert!(list.is_revoked("alice", None));
        assert!(!list.is_revoked("alice", Some(NOW + 1)));
        assert!(!list.is_revoked("bob", Some(0)));

        let reopened = Revocations::open(dir.path()).unwrap();
        assert!(reopened.is_revoked("alice", Some(NOW - 10)));
        assert_eq!(reopened.snapshot(), BTreeMap::from([("alice".to_string(), NOW)]));
    }

    #[test]
    fn an_older_revocation_does_not_undo_a_newer_one_and_expired_ones_go() {
        let list = Revocations::default();
        list.apply([("alice".to_string(), NOW)], NOW).unwrap();
        assert_eq!(list.apply([("alice".to_string(), NOW - 100)], NOW).unwrap(), 0);
        assert!(list.is_revoked("alice", Some(NOW - 1)));

        list.apply([("bob".to_string(), NOW)], NOW).unwrap();
        let later = NOW + RETENTION_SECS + 1;
        list.apply([("carol".to_string(), later)], later).unwrap();
        assert_eq!(list.snapshot().into_keys().collect::<Vec<_>>(), vec!["carol"]);
    }

    #[test]
    fn a_file_that_is_not_a_list_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("revocations.json"), b"{not json").unwrap();
        let error = Revocations::open(dir.path()).err().expect("a broken file is refused");
        assert!(format!("{error:#}").contains("revocations.json"), "{error:#}");
    }
}
