//! Mermaid state diagrams generated from the transition tables.

use crate::host::HOST_TRANSITIONS;
use crate::host_types::HostStateKind;
use crate::node::{NODE_TRANSITIONS, NodeState};

fn host_id(kind: HostStateKind) -> String {
    match kind {
        HostStateKind::None => "none".to_string(),
        k => k.name().replace(' ', "_"),
    }
}

fn node_id(state: NodeState) -> String {
    state.name().replace([' ', '-'], "_")
}

/// The host machine as a Mermaid `stateDiagram-v2`.
pub fn host_mermaid() -> String {
    let mut out = String::from("stateDiagram-v2\n");
    for kind in HostStateKind::ALL {
        let label = if kind == HostStateKind::None {
            "(none)"
        } else {
            kind.name()
        };
        out.push_str(&format!("    {}: {label}\n", host_id(kind)));
    }
    out.push_str("    any: any state but deleting\n");
    out.push_str("    [*] --> none\n");
    for t in HOST_TRANSITIONS {
        let from = t.from.map_or_else(|| "any".to_string(), host_id);
        out.push_str(&format!(
            "    {from} --> {}: {} [{}]\n",
            host_id(t.to),
            t.when.replace(':', " -"),
            t.id
        ));
    }
    out.push_str("    deleted --> [*]\n");
    out
}

/// The node machine as a Mermaid `stateDiagram-v2`.
pub fn node_mermaid() -> String {
    let mut out = String::from("stateDiagram-v2\n");
    for state in NodeState::ALL {
        out.push_str(&format!("    {}: {}\n", node_id(state), state.name()));
    }
    out.push_str("    [*] --> enroll\n");
    for t in NODE_TRANSITIONS {
        out.push_str(&format!(
            "    {} --> {}: {}\n",
            node_id(t.from),
            node_id(t.to),
            t.event.name()
        ));
    }
    for state in NodeState::ALL {
        if let Some(to) = state.timeout_target() {
            out.push_str(&format!(
                "    {} --> {}: timeout\n",
                node_id(state),
                node_id(to)
            ));
        }
    }
    out
}
