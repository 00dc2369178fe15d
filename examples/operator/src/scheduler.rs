//! Embedded mode's scheduler of [`Operator::reconcile`]: what kube-runtime's controller
//! does for the `kube` mode, for an operator without an API server. One step per host at
//! a time (a host woken while its step runs gets one more step after it), a delay queue
//! for each step's `requeue_after`, a bound on steps at once, and the conductor's change
//! feed followed with one long poll so a host is stepped as soon as its node moves.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use bmc_core::sync::lock;

use crate::operator::{Operator, Reconciled};

#[derive(Debug, Default)]
struct Queue {
    /// Keys by when they are due.
    due: BTreeSet<(Instant, String)>,
    /// When each queued key is due.
    at: HashMap<String, Instant>,
    /// Keys whose step is running.
    running: HashSet<String>,
    /// Running keys woken meanwhile: stepped again as soon as they finish.
    again: HashSet<String>,
}

/// The scheduler; [`Operator::run_embedded`] starts it.
#[derive(Debug)]
pub struct Scheduler {
    queue: Mutex<Queue>,
    changed: Notify,
    max_running: usize,
    /// The steps running (aborted and awaited by [`Scheduler::stop`]).
    steps: Mutex<JoinSet<()>>,
}

impl Scheduler {
    /// A scheduler running at most `max_running` steps at once.
    pub fn new(max_running: usize) -> Scheduler {
        Scheduler {
            queue: Mutex::new(Queue::default()),
            changed: Notify::new(),
            max_running: max_running.max(1),
            steps: Mutex::new(JoinSet::new()),
        }
    }

    /// Asks for a step of `key` now.
    pub fn wake(&self, key: &str) {
        self.at(key, Instant::now());
    }

    /// Asks for a step of `key` at `when` (an earlier request wins).
    pub fn at(&self, key: &str, when: Instant) {
        let mut q = lock(&self.queue);
        if q.running.contains(key) && when <= Instant::now() {
            q.again.insert(key.to_string());
            return;
        }
        match q.at.get(key).copied() {
            Some(t) if t <= when => return,
            Some(t) => {
                q.due.remove(&(t, key.to_string()));
            }
            None => {}
        }
        q.due.insert((when, key.to_string()));
        q.at.insert(key.to_string(), when);
        drop(q);
        self.changed.notify_one();
    }

    /// The earliest key due now that is not running (marked running), or when the next
    /// key is due. A due key whose step runs is stepped again after it instead.
    fn take_due(&self) -> Result<String, Option<Instant>> {
        let now = Instant::now();
        let mut q = lock(&self.queue);
        while let Some((t, key)) = q.due.first().cloned() {
            if t > now {
                break;
            }
            q.due.pop_first();
            q.at.remove(&key);
            if q.running.contains(&key) {
                q.again.insert(key);
                continue;
            }
            q.running.insert(key.clone());
            return Ok(key);
        }
        Err(q.due.first().map(|(t, _)| *t))
    }

    fn finished(&self, key: &str, result: &Reconciled) {
        let again = {
            let mut q = lock(&self.queue);
            q.running.remove(key);
            q.again.remove(key)
        };
        if result.record.is_none() {
            return;
        }
        if again {
            self.wake(key);
        } else if let Some(d) = result.requeue_after {
            self.at(key, Instant::now() + d);
        }
    }

    /// Starts the dispatcher and the change-feed follower; the operator aborts them when
    /// it stops (and with the dispatcher, the steps it runs).
    pub fn start(self: Arc<Self>, operator: Arc<Operator>) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(self.clone().dispatch(operator.clone())),
            tokio::spawn(self.follow_changes(operator)),
        ]
    }

    async fn dispatch(self: Arc<Self>, operator: Arc<Operator>) {
        let permits = Arc::new(Semaphore::new(self.max_running));
        loop {
            // The permit comes first, the key second: a key is taken from the queue only
            // when it can run, so keys woken while all permits are in use are served in
            // the order they fall due, not behind a batch taken earlier.
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            {
                let mut steps = lock(&self.steps);
                while steps.try_join_next().is_some() {}
            }
            match self.take_due() {
                Ok(key) => {
                    let (me, op) = (self.clone(), operator.clone());
                    lock(&self.steps).spawn(async move {
                        let result = op.reconcile(&key).await;
                        drop(permit);
                        me.finished(&key, &result);
                    });
                }
                Err(next) => {
                    drop(permit);
                    let wait = next.map_or(Duration::from_secs(3600), |t| {
                        t.saturating_duration_since(Instant::now())
                    });
                    tokio::select! {
                        _ = self.changed.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Aborts the steps running and waits until they are gone (after the dispatcher was
    /// aborted: nothing starts new ones).
    pub async fn stop(&self) {
        let mut steps = std::mem::take(&mut *lock(&self.steps));
        steps.abort_all();
        while steps.join_next().await.is_some() {}
        let mut q = lock(&self.queue);
        q.running.clear();
        q.again.clear();
    }

    /// Steps a host whenever the conductor's change feed says its node changed.
    async fn follow_changes(self: Arc<Self>, operator: Arc<Operator>) {
        let mut since = 0;
        loop {
            match operator
                .conductor()
                .changes(since, Duration::from_secs(20))
                .await
            {
                Ok(changes) => {
                    for change in &changes.changes {
                        if operator.knows(&change.name) {
                            self.wake(&change.name);
                        }
                    }
                    since = changes.seq;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "conductor change feed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
