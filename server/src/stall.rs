//! Stall detection: finding the shard whose thread is held by one task for
//! longer than it should be, and saying what kind of task it was.
//!
//! Each shard beats a [`Pulse`] on every timer tick and records the kind of
//! task it last entered (accept, inbox, timer, flush, connection read or
//! write) with a relaxed atomic store. A [`Watchdog`] thread outside the
//! shards looks at every pulse; a shard whose last beat is older than the
//! threshold is stalled, and the report names the task kind it entered last
//! (nothing else can have run since). Written by hand: monoio has no stall
//! detector, and the glommio one is tied to its own runtime.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The kinds of task a shard runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Activity {
    /// Accepting connections.
    Accept = 1,
    /// Handling a command from another shard or the control plane.
    Inbox = 2,
    /// Advancing the timing wheel.
    Timer = 3,
    /// Waking writers of hot rooms.
    Flush = 4,
    /// Handling a frame a client sent.
    Read = 5,
    /// Writing to a client.
    Write = 6,
}

impl Activity {
    fn from_u8(v: u8) -> Option<Activity> {
        [Activity::Accept, Activity::Inbox, Activity::Timer, Activity::Flush, Activity::Read, Activity::Write]
            .into_iter()
            .find(|a| *a as u8 == v)
    }

    /// The name used in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Activity::Accept => "accept",
            Activity::Inbox => "inbox",
            Activity::Timer => "timer",
            Activity::Flush => "flush",
            Activity::Read => "connection read",
            Activity::Write => "connection write",
        }
    }
}

/// One shard's heartbeat, written by the shard, read by the watchdog.
pub struct Pulse {
    epoch: Instant,
    last_beat_ms: AtomicU64,
    activity: AtomicU8,
}

impl Pulse {
    /// A pulse that beats now.
    pub fn new() -> Pulse {
        Pulse { epoch: Instant::now(), last_beat_ms: AtomicU64::new(0), activity: AtomicU8::new(0) }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The shard is alive.
    pub fn beat(&self) {
        self.last_beat_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The shard starts a task of this kind.
    pub fn enter(&self, activity: Activity) {
        self.activity.store(activity as u8, Ordering::Relaxed);
    }
}

impl Default for Pulse {
    fn default() -> Self {
        Pulse::new()
    }
}

/// A stalled shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// Shard id.
    pub shard: u16,
    /// How long since its last beat.
    pub stalled_for: Duration,
    /// The kind of task it entered last, if any.
    pub activity: Option<Activity>,
}

/// Watches every shard's pulse.
pub struct Watchdog {
    pulses: Vec<Arc<Pulse>>,
    threshold: Duration,
}

impl Watchdog {
    /// A watchdog over `pulses` (index = shard id).
    pub fn new(pulses: Vec<Arc<Pulse>>, threshold: Duration) -> Watchdog {
        Watchdog { pulses, threshold }
    }

    /// The shards stalled right now.
    pub fn check(&self) -> Vec<Stall> {
        self.pulses
            .iter()
            .enumerate()
            .filter_map(|(shard, pulse)| {
                let since = pulse.now_ms().saturating_sub(pulse.last_beat_ms.load(Ordering::Relaxed));
                (since > self.threshold.as_millis() as u64).then(|| Stall {
                    shard: shard as u16,
                    stalled_for: Duration::from_millis(since),
                    activity: Activity::from_u8(pulse.activity.load(Ordering::Relaxed)),
                })
            })
            .collect()
    }

    /// Checks every `interval` on a thread of its own and reports each stall
    /// once, when it is first seen (a stall that goes on is not reported
    /// again until the shard has beaten in between).
    pub fn spawn(self, interval: Duration, report: impl Fn(Stall) + Send + 'static) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name("corecast-watchdog".into()).spawn(move || {
            let mut stalled = vec![false; self.pulses.len()];
            loop {
                std::thread::sleep(interval);
                let now: Vec<Stall> = self.check();
                for (shard, was) in stalled.iter_mut().enumerate() {
                    let stall = now.iter().find(|s| s.shard as usize == shard);
                    if let (Some(stall), false) = (stall, *was) {
                        report(*stall);
                    }
                    *was = stall.is_some();
                }
            }
        })
    }
}

/// Logs and counts a stall.
pub fn log_stall(stall: Stall) {
    let task = stall.activity.map_or("unknown", Activity::name);
    tracing::warn!(
        shard = stall.shard,
        stalled_ms = stall.stalled_for.as_millis() as u64,
        task,
        "shard stalled: a {task} task has held the shard's thread"
    );
    metrics::counter!("corecast_shard_stalls_total", "shard" => stall.shard.to_string(), "task" => task).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_blocked_shard_is_reported_once_with_its_task_and_a_beating_one_is_not() {
        let healthy = Arc::new(Pulse::new());
        let blocked = Arc::new(Pulse::new());
        healthy.beat();
        blocked.beat();
        let (tx, rx) = mpsc::channel();
        let watchdog = Watchdog::new(vec![healthy.clone(), blocked.clone()], Duration::from_millis(300));
        watchdog.spawn(Duration::from_millis(20), move |stall| tx.send(stall).unwrap()).unwrap();

        // Shard 1 enters an inbox task and holds its thread for 1.5 s;
        // shard 0 keeps beating meanwhile.
        let worker = std::thread::spawn(move || {
            blocked.enter(Activity::Inbox);
            std::thread::sleep(Duration::from_millis(1500));
            blocked.beat();
        });
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(1700) {
            healthy.enter(Activity::Timer);
            healthy.beat();
            std::thread::sleep(Duration::from_millis(10));
        }
        worker.join().unwrap();
        let reports: Vec<Stall> = rx.try_iter().collect();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!((reports[0].shard, reports[0].activity), (1, Some(Activity::Inbox)));
        assert!(reports[0].stalled_for > Duration::from_millis(300));
    }
}
