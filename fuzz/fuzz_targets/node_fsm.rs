//! The conductor's node machine fed arbitrary events and times: every accepted event
//! follows a row of Ironic's table, refused ones leave the node as it was, and waiting
//! states time out only after their deadline.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use provision_fsm::{NODE_TRANSITIONS, Node, NodeEvent, NodeTimeouts};

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

fuzz_target!(|steps: Vec<(u8, u16)>| {
    let timeouts = NodeTimeouts {
        inspect_wait: Duration::from_secs(300),
        deploy_callback: Duration::from_secs(600),
        clean_callback: Duration::from_secs(900),
    };
    let mut now = Duration::ZERO;
    let mut node = Node::enroll(now);
    for (e, dt) in steps.into_iter().take(500) {
        now += Duration::from_secs(u64::from(dt));
        if let Some(t) = node.on_timer(now) {
            assert!(node.deadline.is_some_and(|d| d <= now));
            assert_eq!(Some(t.node.state), node.state.timeout_target());
            node = t.node;
            continue;
        }
        let event = EVENTS[usize::from(e) % EVENTS.len()];
        match node.handle(event, Some("fuzz"), now, &timeouts) {
            Ok(step) => {
                assert!(NODE_TRANSITIONS.contains(&step.transition));
                assert_eq!(step.transition.from, node.state);
                assert_eq!(step.node.state, step.transition.to);
                assert_eq!(step.node.deadline.is_some(), step.node.state.timeout_target().is_some());
                node = step.node;
            }
            Err(err) => {
                assert_eq!(err.state, node.state);
                assert!(!NODE_TRANSITIONS.iter().any(|t| t.from == node.state && t.event == event));
            }
        }
    }
});
