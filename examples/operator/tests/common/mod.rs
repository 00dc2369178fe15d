//! What the operator's process tests share: simulated BMCs, a conductor, and a simulated
//! agent for each host.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bmc_sim::{RedfishSim, SimConfig};
use metal3_conductor::ConductorConfig;
use metal3_conductor::agent_protocol::{
    AgentCommand, AgentInventory, AgentResult, Heartbeat, HeartbeatReply, Lookup,
};
use metal3_conductor::http::escape;
use metal3_conductor::service::{Service, ServiceConfig, drivers};

/// `hosts` simulated BMCs serving the recorded DMTF rack server, user `admin`, password
/// `s3cret`.
pub async fn sims(hosts: usize) -> Vec<RedfishSim> {
    faulty_sims(hosts, 0.0).await
}

/// As [`sims`], each BMC answering `fault_rate` of its requests with 503 (after the first
/// login), each with a fault sequence of its own.
pub async fn faulty_sims(hosts: usize, fault_rate: f64) -> Vec<RedfishSim> {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/redfish/dmtf-public-rackmount1");
    let mut sims = Vec::new();
    for i in 0..hosts {
        sims.push(
            RedfishSim::start(SimConfig {
                tree: Some(fixture.clone()),
                credentials: Some(("admin".into(), "s3cret".into())),
                fault_rate,
                seed: i as u64 + 1,
                ..SimConfig::default()
            })
            .await
            .unwrap(),
        );
    }
    sims
}

/// A conductor on loopback (admin and agent APIs on free ports) whose agent ISO is never
/// fetched: the simulated agents stand for the booted ones.
pub async fn conductor() -> Service {
    Service::start(
        ServiceConfig {
            admin_listen: "127.0.0.1:0".into(),
            agent_listen: "127.0.0.1:0".into(),
            conductor: ConductorConfig {
                agent_image_url: "http://127.0.0.1:9/agent.iso".into(),
                ..ConductorConfig::default()
            },
            ..ServiceConfig::default()
        },
        drivers(),
    )
    .await
    .unwrap()
}

/// What the agents did: images written per node.
pub type Written = Arc<Mutex<BTreeMap<String, u32>>>;

/// One host's agent, always up: looks its node up by the host's MAC whenever the node
/// waits for an agent, heartbeats, carries out the command and reports until the
/// conductor takes the result.
pub async fn agent(api: String, mac: String, written: Written) {
    let http = reqwest::Client::new();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(reply) = http
            .get(format!("{api}/v1/lookup?addresses={mac}"))
            .send()
            .await
        else {
            continue;
        };
        if !reply.status().is_success() {
            continue;
        }
        let Ok(Lookup {
            node, agent_token, ..
        }) = reply.json::<Lookup>().await
        else {
            continue;
        };
        let url = format!("{api}/v1/heartbeat/{}", escape(&node));
        let beat = |result: Option<AgentResult>| Heartbeat {
            agent_token: agent_token.clone(),
            command_result: result,
            log: Vec::new(),
        };
        let command = loop {
            match http.post(&url).json(&beat(None)).send().await {
                Ok(r) if r.status().is_success() => {
                    if let Some(c) = r
                        .json::<HeartbeatReply>()
                        .await
                        .ok()
                        .and_then(|h| h.command)
                    {
                        break Some(c);
                    }
                }
                Ok(r) if r.status().is_client_error() => break None,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let result = match command {
            // The host is powered by its BMC here.
            None | Some(AgentCommand::PowerOff | AgentCommand::Reboot) => continue,
            Some(AgentCommand::Inspect) => AgentResult {
                inventory: Some(
                    serde_json::from_value::<AgentInventory>(serde_json::json!({
                        "interfaces": [{"name": "eth0", "mac_address": mac}],
                        "memory": {"physical_mb": 65536},
                        "cpu": {"count": 8, "architecture": "x86_64"}
                    }))
                    .unwrap(),
                ),
                ..AgentResult::default()
            },
            Some(AgentCommand::EraseMetadata) => AgentResult::default(),
            Some(AgentCommand::InstallImage { config_drive, .. }) => {
                *written.lock().unwrap().entry(node.clone()).or_default() += 1;
                AgentResult {
                    bytes: 1 << 20,
                    config_drive: Some(config_drive),
                    ..AgentResult::default()
                }
            }
        };
        let result = Some(result);
        for _ in 0..400 {
            match http.post(&url).json(&beat(result.clone())).send().await {
                Ok(r) if r.status().is_success() || r.status().is_client_error() => break,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}
