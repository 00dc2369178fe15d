//! A bounded history per node: what happened to it, when, and each exchange with its BMC
//! and its agent, so that "stuck in inspecting" comes with the hop that failed.
//!
//! Served as `GET /v1/nodes/{name}/history` (the entries as JSON, oldest first); part of
//! the admin contract.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use provision_fsm::NodeState;

/// How many entries a node keeps by default: the whole of a provisioning on a Redfish BMC
/// (about 60 BMC requests) with room for retries.
pub const DEFAULT_CAPACITY: usize = 200;

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HistoryEvent {
    /// The node's state changed.
    Transition {
        /// Before.
        from: NodeState,
        /// After.
        to: NodeState,
        /// The event that moved it (`manage`, `done`, `fail`, `timeout`...).
        event: String,
    },
    /// The conductor started one of the node machine's actions.
    Action {
        /// The action (`verify BMC`, `start deployment`...).
        action: String,
        /// The correlation id of the request that caused it, when one was given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        correlation_id: Option<String>,
    },
    /// One exchange with the BMC.
    BmcCall {
        /// `redfish` or `ipmi` (kept without a copy of its own: most of a history is BMC
        /// calls).
        protocol: Cow<'static, str>,
        /// The HTTP method or IPMI command.
        method: Cow<'static, str>,
        /// The path or IPMI command code.
        target: String,
        /// HTTP status or IPMI completion code; none when no answer came.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// Milliseconds from sending to the whole answer.
        latency_ms: f64,
        /// Why no answer came.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<String>,
    },
    /// The agent called (look-up, heartbeat, command given, result).
    Agent {
        /// What it said or was told.
        message: String,
    },
    /// Something failed.
    Error {
        /// What, naming the step.
        message: String,
    },
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What.
    #[serde(flatten)]
    pub event: HistoryEvent,
}

/// A node's history as served: the entries kept, oldest first, and how many older ones
/// were dropped to keep it bounded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeHistory {
    /// The entries, oldest first.
    pub entries: Vec<HistoryEntry>,
    /// Entries dropped from the front.
    pub dropped: u64,
}

/// The bounded history of one node.
#[derive(Debug, Clone)]
pub struct History {
    entries: VecDeque<HistoryEntry>,
    capacity: usize,
    dropped: u64,
}

impl Default for History {
    fn default() -> Self {
        History::with_capacity(DEFAULT_CAPACITY)
    }
}

impl History {
    /// A history keeping at most `capacity` entries (at least 1).
    pub fn with_capacity(capacity: usize) -> History {
        History {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    /// Records an event now.
    pub fn push(&mut self, event: HistoryEvent) {
        self.push_at(unix_ms(SystemTime::now()), event);
    }

    /// Records an event at a given time.
    pub fn push_at(&mut self, at_ms: u64, event: HistoryEvent) {
        if self.entries.len() == self.capacity {
            self.entries.pop_front();
            self.dropped += 1;
        }
        self.entries.push_back(HistoryEntry { at_ms, event });
    }

    /// The entries kept, oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &HistoryEntry> {
        self.entries.iter()
    }

    /// The history as served.
    pub fn snapshot(&self) -> NodeHistory {
        NodeHistory {
            entries: self.entries.iter().cloned().collect(),
            dropped: self.dropped,
        }
    }
}

/// Milliseconds since the Unix epoch (0 for a clock before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_entries_and_counts_the_dropped() {
        let mut h = History::with_capacity(2);
        for i in 0..5 {
            h.push_at(
                i,
                HistoryEvent::Agent {
                    message: format!("m{i}"),
                },
            );
        }
        let s = h.snapshot();
        assert_eq!(s.dropped, 3);
        assert_eq!(
            s.entries.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            vec![3, 4]
        );
    }

    #[test]
    fn entries_serialise_flat_with_their_kind() {
        let e = HistoryEntry {
            at_ms: 7,
            event: HistoryEvent::BmcCall {
                protocol: "redfish".into(),
                method: "GET".into(),
                target: "/redfish/v1".into(),
                status: Some(200),
                latency_ms: 1.5,
                failure: None,
            },
        };
        let v = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(v["kind"], "bmc_call");
        assert_eq!(v["status"], 200);
        assert!(v.get("failure").is_none());
        let back: HistoryEntry = serde_json::from_value(v).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(back, e);
    }
}
