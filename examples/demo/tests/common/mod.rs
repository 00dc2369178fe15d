//! What the demo crate's conductor tests share.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::time::{Duration, Instant};

use metal3_conductor::Conductor;
use provision_fsm::NodeState;

/// Waits until node `name` is in `state`; fails if it takes longer than `limit` or the
/// node fails, with the node's last error and whatever `context` adds (a console log).
pub async fn wait_for_node(
    c: &Conductor,
    name: &str,
    state: NodeState,
    limit: Duration,
    context: &dyn Fn() -> String,
) {
    let start = Instant::now();
    loop {
        let node = c.node(name).unwrap();
        if node.state == state {
            return;
        }
        assert!(
            start.elapsed() < limit && !node.state.is_failure(),
            "waiting for {state}, node is {} ({:?}){}",
            node.state,
            node.last_error,
            context()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
