//! What a worker counts while it runs, and the per-message bookkeeping of
//! members: latency of stamped messages in the measurement window, sequence
//! gaps and duplicates per publisher, and in a recovery storm how long each
//! rejoin and catch-up took. Turned into a [`WorkerResult`] at the end.

use std::collections::BTreeMap;

use crate::latency::Latency;
use crate::payload::Stamp;
use crate::plan::WorkerResult;

/// Distinct failure reasons kept; the rest are counted as "other".
const MAX_REASONS: usize = 32;
/// Longest reason kept (servers can explain themselves at length).
const MAX_REASON_LEN: usize = 120;

/// The measurement window, monotonic ns; empty until the parent sends `Go`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    /// Start (inclusive).
    pub from: u64,
    /// End (exclusive).
    pub until: u64,
}

impl Window {
    /// Whether a message stamped at `ns` is measured.
    pub fn contains(&self, ns: u64) -> bool {
        ns >= self.from && ns < self.until
    }
}

/// Counters of one worker.
#[derive(Default)]
pub struct Stats {
    /// The result being filled in.
    pub result: WorkerResult,
    /// Connect + handshake latency.
    pub connect_latency: Latency,
    /// Delivery latency of room messages.
    pub latency: Latency,
    /// Latency of the watched broadcast, one sample per connection.
    pub broadcast_latency: Latency,
    /// Recovery storm: drop to JOINED, one sample per rejoined member.
    pub rejoin_latency: Latency,
    /// Recovery storm: drop to caught up, one sample per member.
    pub catch_up_latency: Latency,
}

fn count(map: &mut BTreeMap<String, u64>, mut reason: String) {
    if reason.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push_str("...");
    }
    let key = if map.len() < MAX_REASONS || map.contains_key(&reason) { reason } else { "other".to_string() };
    *map.entry(key).or_default() += 1;
}

impl Stats {
    /// A connection failed before it was ready.
    pub fn failed(&mut self, reason: String) {
        count(&mut self.result.failed, reason);
    }

    /// A ready connection was lost.
    pub fn disconnected(&mut self, reason: String) {
        count(&mut self.result.disconnected, reason);
    }

    /// The server reported an error on a ready connection.
    pub fn server_error(&mut self, message: String) {
        count(&mut self.result.server_errors, message);
    }

    /// A member received a stamped message at `now`; `seqs` are its
    /// per-publisher sequence numbers and `slot` this publisher's index there.
    pub fn member_received(&mut self, stamp: Stamp, slot: usize, seqs: &mut [u64], window: Window, now: u64) {
        let r = &mut self.result;
        r.received_total += 1;
        if let Some(last) = seqs.get_mut(slot) {
            if stamp.seq > *last {
                r.seq_gaps += stamp.seq - *last - 1;
                *last = stamp.seq;
            } else {
                r.duplicates += 1;
            }
        }
        if window.contains(stamp.sent_ns) {
            r.received_in_window += 1;
            self.latency.record(now.saturating_sub(stamp.sent_ns));
        }
    }

    /// A storm member's rejoin was answered JOINED at `now`, `since_drop_ns` after the drop.
    pub fn rejoined(&mut self, since_drop_ns: u64, recovered: bool, now: u64) {
        let s = &mut self.result.stream;
        s.rejoined += 1;
        s.recovered += u64::from(recovered);
        s.last_rejoined_ns = s.last_rejoined_ns.max(now);
        self.rejoin_latency.record(since_drop_ns);
    }

    /// A storm member caught up at `now`, `since_drop_ns` after the drop.
    pub fn caught_up(&mut self, since_drop_ns: u64, now: u64) {
        let s = &mut self.result.stream;
        s.caught_up += 1;
        s.last_caught_up_ns = s.last_caught_up_ns.max(now);
        self.catch_up_latency.record(since_drop_ns);
    }

    /// The final result with histograms attached.
    pub fn finish(mut self) -> WorkerResult {
        self.result.connect_latency = self.connect_latency.to_pairs();
        self.result.latency = self.latency.to_pairs();
        self.result.broadcast_latency = self.broadcast_latency.to_pairs();
        self.result.rejoin_latency = self.rejoin_latency.to_pairs();
        self.result.catch_up_latency = self.catch_up_latency.to_pairs();
        self.result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_duplicates_and_window() {
        let mut stats = Stats::default();
        let mut seqs = [0u64; 2];
        let window = Window { from: 100, until: 200 };
        for (seq, sent) in [(1, 50), (2, 150), (5, 160), (4, 170), (6, 250)] {
            stats.member_received(Stamp { sent_ns: sent, publisher: 0, seq }, 1, &mut seqs, window, 300);
        }
        let r = stats.finish();
        assert_eq!(r.received_total, 5);
        assert_eq!(r.seq_gaps, 2);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.received_in_window, 3);
        assert_eq!(seqs, [0, 6]);
    }

    #[test]
    fn rejoins_and_catch_ups_are_counted_and_timed() {
        let mut stats = Stats::default();
        stats.rejoined(5_000, true, 100);
        stats.rejoined(7_000, false, 90);
        stats.caught_up(9_000, 120);
        let r = stats.finish();
        assert_eq!((r.stream.rejoined, r.stream.recovered, r.stream.caught_up), (2, 1, 1));
        assert_eq!((r.stream.last_rejoined_ns, r.stream.last_caught_up_ns), (100, 120));
        assert_eq!((r.rejoin_latency.len(), r.catch_up_latency.len()), (2, 1));
    }

    #[test]
    fn reasons_are_bounded() {
        let mut stats = Stats::default();
        for i in 0..100 {
            stats.failed(format!("r{i}"));
        }
        assert_eq!(stats.result.failed.len(), MAX_REASONS + 1);
        assert_eq!(stats.result.failed["other"], 100 - MAX_REASONS as u64);
        stats.server_error("é".repeat(200));
        assert!(stats.result.server_errors.keys().all(|k| k.len() <= MAX_REASON_LEN + 3));
    }
}
