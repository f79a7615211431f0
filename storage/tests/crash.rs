//! Crash safety of the embedded store in strict mode: every append whose
//! future resolved survives a SIGKILL of the process, exactly once.
//!
//! The test re-runs its own binary as a child (selected by an environment
//! variable) that appends from several tasks at once — so group commits
//! hold many appends — and prints `ACKED <seq>` after each append resolves.
//! The parent kills the child with SIGKILL mid-stream, reopens the store and
//! checks every acknowledged seq, then resends some of them.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corecast_storage::embedded::{Durability, EmbeddedStore};
use corecast_storage::{AppendOutcome, Fanout, MessageStore, StoredMessage};

/// Set in the child: the store directory.
const CHILD_ENV: &str = "CORECAST_STORAGE_CRASH_CHILD";
/// Name of the test (the child runs exactly this one).
const TEST_NAME: &str = "strict_appends_survive_sigkill";
/// Acknowledged appends the parent waits for before killing the child.
const KILL_AFTER: usize = 300;
/// The child stops by itself after this many appends or this long.
const CHILD_MAX_APPENDS: u64 = 200_000;
const CHILD_MAX_TIME: Duration = Duration::from_secs(60);
/// Concurrent appenders in the child.
const WRITERS: usize = 8;
const CONV: &str = "d:crash:test";
/// SIGKILL's number on every Unix.
const SIGKILL: i32 = 9;
const SENDER: &str = "crash";

#[test]
fn strict_appends_survive_sigkill() {
    match std::env::var(CHILD_ENV) {
        Ok(dir) => child(Path::new(&dir)),
        Err(_) => parent(),
    }
}

fn message(seq: u64) -> StoredMessage {
    StoredMessage {
        conv: CONV.into(),
        seq,
        sender: SENDER.into(),
        client_msg_id: seq,
        ts_ms: 1_700_000_000_000 + seq,
        kind: 2,
        payload: format!("crash payload {seq}").into_bytes(),
    }
}

fn fanout() -> Fanout {
    Fanout::Timeline { members: vec![SENDER.into(), "other".into()] }
}

/// Appends until killed (or bounded), acknowledging each on stdout.
fn child(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().expect("runtime");
    runtime.block_on(async {
        let store = Arc::new(EmbeddedStore::open(dir, Durability::Strict).expect("open in child"));
        let next = Arc::new(AtomicU64::new(1));
        let deadline = Instant::now() + CHILD_MAX_TIME;
        let mut writers = tokio::task::JoinSet::new();
        for _ in 0..WRITERS {
            let (store, next) = (Arc::clone(&store), Arc::clone(&next));
            writers.spawn(async move {
                loop {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq > CHILD_MAX_APPENDS || Instant::now() > deadline {
                        return;
                    }
                    let outcome = store.append(&message(seq), &fanout()).await.expect("append in child");
                    assert_eq!(outcome, AppendOutcome::Stored);
                    // One write(2) per line: the parent never sees half a line.
                    println!("ACKED {seq}");
                }
            });
        }
        while writers.join_next().await.is_some() {}
    });
}

fn parent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let mut stdout = BufReader::new(child.stdout.take().expect("child stdout"));

    // Every complete ACKED line, including those still in the pipe after the kill.
    let mut acked = Vec::new();
    let mut killed = false;
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).expect("read child stdout") == 0 {
            break;
        }
        let Some(seq) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ACKED ")) else { continue };
        acked.push(seq.parse::<u64>().expect("seq"));
        if !killed && acked.len() >= KILL_AFTER {
            child.kill().expect("SIGKILL the child");
            killed = true;
        }
    }
    let status = child.wait().expect("wait for child");
    assert!(killed, "the child ended before {KILL_AFTER} acknowledgements: {status}");
    assert_eq!(status.signal(), Some(SIGKILL), "the child died of SIGKILL, mid-stream: {status}");

    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    runtime.block_on(async {
        let store = EmbeddedStore::open(dir.path(), Durability::Strict).expect("reopen after SIGKILL");
        let stored = store.read_timeline(CONV, 0, usize::MAX).await.expect("read back");
        let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs strictly increase, each stored once");
        for m in &stored {
            assert_eq!(*m, message(m.seq), "message {} intact", m.seq);
        }
        for seq in &acked {
            assert!(seqs.binary_search(seq).is_ok(), "acknowledged seq {seq} lost");
        }
        assert_eq!(store.last_seq(CONV).await.expect("last_seq"), *seqs.last().expect("something stored"));

        // The sender's resends after the restart create nothing new.
        for &seq in acked.iter().take(20) {
            let resend = StoredMessage { seq: seq + 1_000_000, ..message(seq) };
            assert_eq!(store.append(&resend, &fanout()).await.expect("resend"), AppendOutcome::Duplicate(message(seq)));
        }
        assert_eq!(store.read_timeline(CONV, 0, usize::MAX).await.expect("read again").len(), stored.len());
        eprintln!(
            "crash test: {} appends acknowledged before SIGKILL, {} stored, all acknowledged ones present once",
            acked.len(),
            stored.len()
        );
    });
}
