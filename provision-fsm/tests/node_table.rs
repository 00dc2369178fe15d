//! The node machine against Ironic's own tables, as recorded in
//! `shared/reference/ironic-redfish.md` §a: every transition among our states, the stable
//! flags and target states, refusals of everything else, and the wait-state timeouts.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use provision_fsm::*;

const EVENTS: [NodeEvent; 12] = [
    NodeEvent::Manage,
    NodeEvent::Provide,
    NodeEvent::Inspect,
    NodeEvent::Deploy,
    NodeEvent::Delete,
    NodeEvent::Abort,
    NodeEvent::Rebuild,
    NodeEvent::Clean,
    NodeEvent::Done,
    NodeEvent::Fail,
    NodeEvent::Wait,
    NodeEvent::Resume,
];

fn reference() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/reference/ironic-redfish.md"
    );
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (tests expect shared/ beside the repository)"))
}

/// The rows of the markdown table that follows `heading`, split into cells.
fn table_after(text: &str, heading: &str) -> Vec<Vec<String>> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("no section {heading}"));
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect()
}

#[test]
fn transitions_are_ironics_among_our_states() {
    let text = reference();
    let mut expected = BTreeSet::new();
    for row in table_after(&text, "### All 93 transitions") {
        let (Some(from), Some(to)) = (NodeState::from_name(&row[0]), NodeState::from_name(&row[2]))
        else {
            continue;
        };
        let Some(event) = EVENTS.iter().find(|e| e.name() == row[1]) else {
            continue;
        };
        expected.insert((from, *event, to));
    }
    let ours: BTreeSet<_> = NODE_TRANSITIONS
        .iter()
        .map(|t| (t.from, t.event, t.to))
        .collect();
    assert_eq!(ours.len(), NODE_TRANSITIONS.len(), "duplicate rows");
    assert_eq!(
        ours.iter()
            .map(|(f, e, t)| (*f, e.name(), *t))
            .collect::<Vec<_>>(),
        expected
            .iter()
            .map(|(f, e, t)| (*f, e.name(), *t))
            .collect::<Vec<_>>()
    );
    assert_eq!(ours.len(), 41);
}

#[test]
fn stable_flags_and_targets_are_ironics() {
    let text = reference();
    let mut seen = 0;
    for row in table_after(&text, "### States") {
        let Some(state) = NodeState::from_name(&row[1]) else {
            continue;
        };
        seen += 1;
        assert_eq!(state.is_stable(), row[2] == "yes", "{state}");
        assert_eq!(
            state.target().map(|t| t.name().to_string()),
            NodeState::from_name(&row[3]).map(|t| t.name().to_string()),
            "{state}"
        );
    }
    assert_eq!(seen, NodeState::ALL.len());
}

#[test]
fn every_row_moves_the_node() {
    let timeouts = NodeTimeouts::default();
    let now = Duration::from_secs(100);
    for t in NODE_TRANSITIONS {
        let node = Node {
            state: t.from,
            ..Node::enroll(Duration::ZERO)
        };
        let step = node
            .handle(t.event, Some("because"), now, &timeouts)
            .unwrap_or_else(|e| panic!("{} --{}--> {}: {e}", t.from, t.event.name(), t.to));
        let name = format!("{} --{}--> {}", t.from, t.event.name(), t.to);
        assert_eq!(step.node.state, t.to, "{name}");
        assert_eq!(step.transition, *t, "{name}");
        assert_eq!(step.node.entered_at, now, "{name}");
        let waits = t.to.timeout_target().is_some();
        assert_eq!(step.node.deadline.is_some(), waits, "{name}");
        assert_eq!(step.wake_at, step.node.deadline, "{name}");
        if t.to.is_failure() {
            assert_eq!(step.node.last_error.as_deref(), Some("because"), "{name}");
            assert!(
                step.actions.contains(&NodeAction::RecordFailure {
                    reason: "because".into()
                }),
                "{name}"
            );
        }
    }
}

#[test]
fn entering_work_states_starts_the_work() {
    let t = NodeTimeouts::default();
    let now = Duration::ZERO;
    let at = |s| Node {
        state: s,
        ..Node::enroll(now)
    };
    let acts = |s, e| at(s).handle(e, None, now, &t).unwrap().actions;
    assert_eq!(
        acts(NodeState::Enroll, NodeEvent::Manage),
        [NodeAction::VerifyBmc]
    );
    assert_eq!(
        acts(NodeState::Manageable, NodeEvent::Inspect),
        [NodeAction::StartInspection]
    );
    assert_eq!(
        acts(NodeState::Manageable, NodeEvent::Provide),
        [NodeAction::StartCleaning]
    );
    assert_eq!(
        acts(NodeState::Available, NodeEvent::Deploy),
        [NodeAction::StartDeployment]
    );
    assert_eq!(
        acts(NodeState::Active, NodeEvent::Delete),
        [NodeAction::TearDown]
    );
    // Resuming after a call-back continues; it does not start over.
    assert!(acts(NodeState::WaitCallBack, NodeEvent::Resume).is_empty());
    assert_eq!(
        acts(NodeState::CleanWait, NodeEvent::Abort),
        [
            NodeAction::RecordFailure {
                reason: "clean wait failed".into()
            },
            NodeAction::AbortOperation
        ]
    );
}

#[test]
fn everything_else_is_refused_like_ironic() {
    let mut refused = 0;
    for state in NodeState::ALL {
        for event in EVENTS {
            let node = Node {
                state,
                ..Node::enroll(Duration::ZERO)
            };
            let result = node.handle(event, None, Duration::ZERO, &NodeTimeouts::default());
            if NODE_TRANSITIONS
                .iter()
                .any(|t| t.from == state && t.event == event)
            {
                assert!(result.is_ok());
            } else {
                let err = result.unwrap_err();
                assert_eq!(err, InvalidNodeEvent { state, event });
                assert_eq!(
                    err.to_string(),
                    format!("cannot {} a node in state {state}", event.name())
                );
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 16 * 12 - 41);
}

#[test]
fn waiting_states_time_out_into_their_failure() {
    let timeouts = NodeTimeouts {
        deploy_callback: Duration::from_secs(600),
        ..NodeTimeouts::default()
    };
    let start = Duration::from_secs(1000);
    let deploying = Node {
        state: NodeState::Deploying,
        ..Node::enroll(Duration::ZERO)
    };
    let waiting = deploying
        .handle(NodeEvent::Wait, None, start, &timeouts)
        .unwrap();
    assert_eq!(waiting.wake_at, Some(Duration::from_secs(1600)));
    assert!(waiting.node.on_timer(Duration::from_secs(1599)).is_none());
    let failed = waiting.node.on_timer(Duration::from_secs(1600)).unwrap();
    assert_eq!(failed.node.state, NodeState::DeployFailed);
    assert_eq!(
        failed.node.last_error.as_deref(),
        Some("timeout reached while in wait call-back after 600s")
    );
    assert!(failed.actions.contains(&NodeAction::AbortOperation));
    // The agent calling back in time cancels the timeout.
    let resumed = waiting
        .node
        .handle(
            NodeEvent::Resume,
            None,
            Duration::from_secs(1200),
            &timeouts,
        )
        .unwrap();
    assert!(resumed.node.on_timer(Duration::from_secs(9999)).is_none());
    for (state, to) in [
        (NodeState::InspectWait, NodeState::InspectFailed),
        (NodeState::CleanWait, NodeState::CleanFailed),
    ] {
        assert_eq!(state.timeout_target(), Some(to));
    }
    // Stable states never time out.
    assert!(
        Node::enroll(Duration::ZERO)
            .on_timer(Duration::MAX)
            .is_none()
    );
}

#[test]
fn names_round_trip_and_serialize_as_ironic_strings() {
    for s in NodeState::ALL {
        assert_eq!(NodeState::from_name(s.name()), Some(s));
        assert_eq!(serde_json::to_value(s).unwrap(), s.name());
    }
    assert_eq!(serde_json::to_value(NodeEvent::Rebuild).unwrap(), "rebuild");
}
