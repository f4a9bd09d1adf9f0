//! The manager's part of the watchdog health check: its status table can be
//! locked, its stats ticker answers, and every running identity's runner
//! answers a ping from its own loop (see [`crate::health`]).

use std::sync::TryLockError;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::mpsc;

use super::{lock, Manager};
use crate::health::{self, Ping, PingError};

/// What the manager's health check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerHealth {
    /// Runners that answered.
    pub runners_alive: usize,
    /// Everything that did not answer in time, for the log.
    pub problems: Vec<String>,
}

impl ManagerHealth {
    /// Nothing is wrong.
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Manager {
    /// Check that the manager's loops are alive, waiting at most `deadline`
    /// for each answer (the runners are asked at once).
    ///
    /// A runner that is connecting, backing off after a failure or waiting
    /// for room in a full send queue still answers: only a loop that stopped
    /// being polled (a deadlock, a panic) does not.
    pub async fn health_check(&self, deadline: Duration) -> ManagerHealth {
        let mut problems = Vec::new();
        let begun = Instant::now();
        let runners = loop {
            if let Some(r) = self.try_collect_runners() {
                break r;
            }
            if begun.elapsed() >= deadline {
                problems.push(format!("the identity table stayed locked for {deadline:?}"));
                return ManagerHealth {
                    runners_alive: 0,
                    problems,
                };
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if let Err(e) = health::ping(&self.inner.ticker_pings, deadline).await {
            problems.push(format!("the manager's stats loop: {e}"));
        }
        let answers = join_all(runners.iter().map(|(_, tx)| health::ping(tx, deadline))).await;
        let mut runners_alive = 0;
        for ((id, tx), answer) in runners.iter().zip(answers) {
            match answer {
                Ok(()) => runners_alive += 1,
                Err(PingError::Gone) if !self.still_running(id, tx) => {
                    // Stopped while we asked: not a problem.
                }
                Err(e) => problems.push(format!("identity '{id}': {e}")),
            }
        }
        ManagerHealth {
            runners_alive,
            problems,
        }
    }

    /// The ping channels of every running identity, unless the table is
    /// locked right now.
    fn try_collect_runners(&self) -> Option<Vec<(String, mpsc::Sender<Ping>)>> {
        let collect = |slots: &std::collections::HashMap<String, super::Slot>| {
            slots
                .iter()
                .filter_map(|(id, s)| s.running.as_ref().map(|r| (id.clone(), r.pings.clone())))
                .collect()
        };
        match self.inner.slots.try_lock() {
            Ok(slots) => Some(collect(&slots)),
            Err(TryLockError::Poisoned(p)) => Some(collect(&p.into_inner())),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Whether the slot of `id` still holds the runner behind `tx`.
    fn still_running(&self, id: &str, tx: &mpsc::Sender<Ping>) -> bool {
        lock(&self.inner.slots)
            .get(id)
            .and_then(|s| s.running.as_ref())
            .is_some_and(|r| r.pings.same_channel(tx))
    }
}
