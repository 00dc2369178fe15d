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

/// Writes `text` at `root/path`, making its folders (a fake `/proc` or `/sys` entry).
pub fn put(root: &std::path::Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A conductor service on loopback ports for a test: agents boot `agent_image_url`,
/// with `config_images` when given; power and boot waits poll every 50–200 ms.
pub async fn conductor_service(
    agent_image_url: String,
    config_images: Option<metal3_conductor::conductor::AgentConfigImages>,
) -> metal3_conductor::service::Service {
    use metal3_conductor::service::{Service, ServiceConfig, drivers};
    Service::start(
        ServiceConfig {
            admin_listen: "127.0.0.1:0".into(),
            agent_listen: "127.0.0.1:0".into(),
            conductor: metal3_conductor::ConductorConfig {
                agent_image_url,
                agent_config_images: config_images,
                poll: bmc_core::verified::PollPolicy {
                    initial: Duration::from_millis(50),
                    max: Duration::from_millis(200),
                },
                ..metal3_conductor::ConductorConfig::default()
            },
            ..ServiceConfig::default()
        },
        drivers(),
    )
    .await
    .unwrap()
}

/// Creates node `name` for the system of a bmc-sim BMC at `sim` (credentials admin and
/// password) booting from `mac`, with `network` as its pre-provisioning network data.
pub async fn create_sim_node(
    c: &std::sync::Arc<Conductor>,
    name: &str,
    sim: std::net::SocketAddr,
    mac: &str,
    automated_clean: bool,
    network: Option<serde_json::Value>,
) {
    c.create_node(metal3_conductor::NodeSpec {
        name: name.into(),
        address: format!("redfish-virtualmedia+http://{sim}")
            .parse()
            .unwrap(),
        credentials: bmc_core::Credentials::new("admin", "password").unwrap(),
        disable_certificate_verification: false,
        boot_mac: Some(mac.into()),
        automated_clean,
        preprovisioning_network_data: network,
        legacy_boot: false,
    })
    .await
    .unwrap();
}
