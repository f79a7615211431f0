//! The parent's side of the worker processes: re-executes this binary
//! (`std::env::current_exe()`) once per worker with the hidden `worker`
//! subcommand, hands each its plan on stdin, turns their stdout lines into a
//! single channel of [`WorkerMsg`]s, broadcasts commands, and kills any
//! worker still alive when the fleet is dropped, so nothing outlives a run.
//! The workers' latest progress is shared ([`Fleet::progress_handle`]) with
//! the time-series sampler, which runs on its own thread.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::plan::{Command, Progress, Ready, WorkerMsg, WorkerPlan, WorkerResult};
use crate::progress::Bar;

/// What a worker's stdout produced.
enum Line {
    Msg(WorkerMsg),
    Garbage(String),
    Exited,
}

/// Running workers.
pub struct Fleet {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    rx: Receiver<(usize, Line)>,
    progress: Arc<Mutex<Vec<Progress>>>,
    results: Vec<Option<WorkerResult>>,
    exited: Vec<bool>,
}

impl Fleet {
    /// Starts one worker per plan.
    pub fn spawn(plans: &[WorkerPlan]) -> Result<Fleet> {
        let exe = std::env::current_exe().context("locating this executable")?;
        let (tx, rx) = channel();
        let mut fleet = Fleet {
            children: Vec::new(),
            stdins: Vec::new(),
            rx,
            progress: Arc::new(Mutex::new(vec![Progress::default(); plans.len()])),
            results: vec![None; plans.len()],
            exited: vec![false; plans.len()],
        };
        for (w, plan) in plans.iter().enumerate() {
            let mut child = Process::new(&exe)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("starting worker {w}"))?;
            let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("worker {w} has no stdin"))?;
            let stdout = child.stdout.take().ok_or_else(|| anyhow!("worker {w} has no stdout"))?;
            fleet.children.push(child);
            writeln!(stdin, "{}", serde_json::to_string(plan)?).with_context(|| format!("plan to worker {w}"))?;
            fleet.stdins.push(Some(stdin));
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let msg = serde_json::from_str(&line).map_or(Line::Garbage(line), Line::Msg);
                    if tx.send((w, msg)).is_err() {
                        return;
                    }
                }
                let _ = tx.send((w, Line::Exited));
            });
        }
        Ok(fleet)
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Sends a command to every worker.
    pub fn command(&mut self, cmd: &Command) -> Result<()> {
        let line = serde_json::to_string(cmd)?;
        for (w, stdin) in self.stdins.iter_mut().enumerate() {
            if let Some(s) = stdin {
                if writeln!(s, "{line}").and_then(|_| s.flush()).is_err() && !self.exited[w] {
                    bail!("worker {w} stopped listening");
                }
            }
        }
        Ok(())
    }

    /// Sum of the workers' latest progress.
    pub fn progress(&self) -> Progress {
        Progress::sum(self.progress.lock().unwrap_or_else(|e| e.into_inner()).iter())
    }

    /// The workers' latest progress, one entry per worker, as it is updated.
    pub fn progress_handle(&self) -> Arc<Mutex<Vec<Progress>>> {
        self.progress.clone()
    }

    fn set_progress(&self, w: usize, update: impl FnOnce(&mut Progress)) {
        if let Some(p) = self.progress.lock().unwrap_or_else(|e| e.into_inner()).get_mut(w) {
            update(p);
        }
    }

    /// Handles one message if one arrives within `wait`; returns a Ready if it was one.
    fn pump(&mut self, wait: Duration) -> Result<Option<(usize, Ready)>> {
        let (w, line) = match self.rx.recv_timeout(wait) {
            Ok(x) => x,
            Err(RecvTimeoutError::Timeout) => return Ok(None),
            Err(RecvTimeoutError::Disconnected) => bail!("every worker is gone"),
        };
        match line {
            Line::Msg(WorkerMsg::Progress(p)) => self.set_progress(w, |mine| *mine = p),
            Line::Msg(WorkerMsg::Ready(r)) => {
                self.set_progress(w, |p| {
                    p.ready = r.ready;
                    p.failed = r.failed.values().sum();
                });
                return Ok(Some((w, r)));
            }
            Line::Msg(WorkerMsg::Result(r)) => self.results[w] = Some(*r),
            Line::Msg(WorkerMsg::Fatal { error }) => bail!("worker {w}: {error}"),
            Line::Garbage(line) => tracing::warn!(worker = w, "unexpected output: {line}"),
            Line::Exited => {
                self.exited[w] = true;
                if self.results[w].is_none() {
                    bail!("worker {w} exited without a result");
                }
            }
        }
        Ok(None)
    }

    /// Waits until every worker has set up its connections, showing progress.
    pub fn wait_ready(&mut self, bar: &mut Bar, deadline: Instant) -> Result<Vec<Ready>> {
        let mut ready: Vec<Option<Ready>> = vec![None; self.len()];
        while ready.iter().any(Option::is_none) {
            if Instant::now() > deadline {
                let done = ready.iter().filter(|r| r.is_some()).count();
                bail!("connections not set up before the deadline ({done} of {} workers ready)", ready.len());
            }
            if let Some((w, r)) = self.pump(Duration::from_millis(100))? {
                ready[w] = Some(r);
            }
            let p = self.progress();
            bar.set(p.ready + p.failed, &format!("ready {} failed {} dropped {}", p.ready, p.failed, p.dropped));
        }
        Ok(ready.into_iter().flatten().collect())
    }

    /// Keeps handling progress until `until` returns true or `deadline` passes.
    pub fn wait_until(&mut self, deadline: Instant, mut until: impl FnMut(&Progress) -> bool) -> Result<()> {
        while Instant::now() < deadline && !until(&self.progress()) {
            self.pump(Duration::from_millis(20))?;
        }
        Ok(())
    }

    /// Sends `Stop` and collects every worker's result.
    pub fn stop_and_collect(mut self, deadline: Instant) -> Result<Vec<WorkerResult>> {
        self.command(&Command::Stop)?;
        while self.results.iter().any(Option::is_none) {
            if Instant::now() > deadline {
                bail!("workers did not report in time");
            }
            self.pump(Duration::from_millis(100))?;
        }
        Ok(std::mem::take(&mut self.results).into_iter().flatten().collect())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stdins.clear();
        let deadline = Instant::now() + Duration::from_secs(5);
        for child in &mut self.children {
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
