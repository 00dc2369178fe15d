//! The conductor's change feed: every node state change (and deletion) numbered in order,
//! so that one long poll (`GET /v1/changes?since=N`) tells a client about every node it
//! waits for, where a long poll per node would hold a connection per node.

use std::collections::VecDeque;
use std::sync::Mutex;

use bmc_core::sync::lock;
use std::time::Duration;

use provision_fsm::NodeState;
use serde::{Deserialize, Serialize};

/// One node's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeChange {
    /// The node.
    pub name: String,
    /// Its new state; `None` when it was deleted.
    pub state: Option<NodeState>,
}

/// An answer of the feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The feed's position: pass it as `since` next time.
    pub seq: u64,
    /// The changes after `since`, oldest first; with `complete`, every node's state
    /// instead (the changes asked for are no longer kept, or `since` was 0 or is from
    /// another run of the conductor).
    pub changes: Vec<NodeChange>,
    /// `changes` lists every node (and a node not in it does not exist).
    pub complete: bool,
}

/// Changes kept for clients that fall behind; older ones are answered with a full list.
const KEPT: usize = 200_000;

/// The numbered changes and a signal for waiters.
#[derive(Debug)]
pub struct Feed {
    log: Mutex<(u64, VecDeque<(u64, NodeChange)>)>,
    seq: tokio::sync::watch::Sender<u64>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            log: Mutex::new((0, VecDeque::new())),
            seq: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Feed {
    /// A feed whose first change is numbered `base + 1` (a run of the conductor starts its
    /// feed past every position of the runs before it).
    pub fn starting_after(base: u64) -> Feed {
        Feed {
            log: Mutex::new((base, VecDeque::new())),
            seq: tokio::sync::watch::Sender::new(base),
        }
    }

    /// Records a change and wakes the waiters.
    pub fn push(&self, name: &str, state: Option<NodeState>) {
        let seq = {
            let mut log = lock(&self.log);
            log.0 += 1;
            let seq = log.0;
            log.1.push_back((
                seq,
                NodeChange {
                    name: name.to_string(),
                    state,
                },
            ));
            if log.1.len() > KEPT {
                log.1.pop_front();
            }
            seq
        };
        self.seq.send_replace(seq);
    }

    /// The changes after `since`, once there is one or `timeout` passed (then possibly
    /// none). `None` when they cannot be told (not kept, or `since` is 0 or ahead of the
    /// feed): the caller answers with every node's state.
    pub async fn after(&self, since: u64, timeout: Duration) -> (u64, Option<Vec<NodeChange>>) {
        if since > 0 && since <= *self.seq.borrow() {
            let mut rx = self.seq.subscribe();
            let _ = tokio::time::timeout(timeout, rx.wait_for(|s| *s > since)).await;
        }
        let log = lock(&self.log);
        let (seq, entries) = (&log.0, &log.1);
        let oldest = entries.front().map_or(*seq + 1, |(s, _)| *s);
        if since == 0 || since > *seq || since + 1 < oldest {
            return (*seq, None);
        }
        let changes = entries
            .iter()
            .skip_while(|(s, _)| *s <= since)
            .map(|(_, c)| c.clone())
            .collect();
        (*seq, Some(changes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_after_a_position_in_order_and_a_full_list_when_unknown() {
        let feed = Feed::default();
        assert_eq!(feed.after(0, Duration::ZERO).await, (0, None));
        feed.push("a", Some(NodeState::Manageable));
        feed.push("b", Some(NodeState::Available));
        feed.push("a", None);
        let (seq, changes) = feed.after(1, Duration::ZERO).await;
        assert_eq!(seq, 3);
        let changes = changes.unwrap_or_default();
        assert_eq!(
            changes,
            vec![
                NodeChange {
                    name: "b".into(),
                    state: Some(NodeState::Available)
                },
                NodeChange {
                    name: "a".into(),
                    state: None
                }
            ]
        );
        // From another run of the conductor: a full list is needed.
        assert_eq!(feed.after(99, Duration::ZERO).await, (3, None));
    }

    #[tokio::test]
    async fn a_waiter_wakes_on_the_next_change_or_at_its_timeout() {
        let feed = std::sync::Arc::new(Feed::default());
        feed.push("a", Some(NodeState::Manageable));
        let started = tokio::time::Instant::now();
        let (seq, changes) = feed.after(1, Duration::from_millis(50)).await;
        assert_eq!((seq, changes), (1, Some(Vec::new())));
        assert!(started.elapsed() >= Duration::from_millis(50));
        let pusher = feed.clone();
        let push = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            pusher.push("a", Some(NodeState::Verifying));
        });
        let (seq, changes) = feed.after(1, Duration::from_secs(10)).await;
        assert_eq!(seq, 2);
        assert_eq!(changes.map(|c| c.len()), Some(1));
        let _ = push.await;
    }
}
