//! A simulated ironic-python-agent, started when a simulated host boots the agent ISO:
//! looks its node up by the host's MACs, heartbeats, and carries out the conductor's
//! commands (inspect: the recorded tree's hardware; erase metadata; install an image:
//! download, checksum, and report the config drive written).

use std::time::Duration;

use metal3_conductor::agent_protocol::{
    AgentCommand, AgentInventory, AgentResult, Heartbeat, HeartbeatReply, Lookup, verify_image,
};
use metal3_conductor::contract::CORRELATION_HEADER;
use metal3_conductor::http::escape;
use provision_fsm::Image;

/// Runs one agent's life: look-up, heartbeats until one command is done, its result
/// (sent again until the conductor takes it: a conductor that restarts meanwhile must
/// not lose it). Each disk image written counts in `images_written`.
pub async fn run_simulated_agent(
    api: String,
    macs: Vec<String>,
    hardware: serde_json::Value,
    http: reqwest::Client,
    images_written: std::sync::Arc<std::sync::atomic::AtomicU32>,
) {
    let lookup = async {
        // Long enough to outlast a conductor's restart.
        for _ in 0..600 {
            let url = format!("{api}/v1/lookup?addresses={}", macs.join(","));
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    if let Ok(l) = r.json::<Lookup>().await {
                        return Some(l);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    };
    let Some(Lookup {
        node,
        agent_token,
        correlation_id,
    }) = lookup.await
    else {
        tracing::debug!(?macs, "simulated agent found no node");
        return;
    };
    // The agent's work is logged under the id of the work that booted it, and the id
    // goes back with every heartbeat.
    let correlation = correlation_id.unwrap_or_default();
    let _span = tracing::debug_span!("agent", node = %node, correlation_id = %correlation);
    let beat_url = format!("{api}/v1/heartbeat/{}", escape(&node));
    for _ in 0..2000 {
        let reply = http
            .post(&beat_url)
            .header(CORRELATION_HEADER, &correlation)
            .json(&Heartbeat {
                agent_token: agent_token.clone(),
                command_result: None,
                log: Vec::new(),
            })
            .send()
            .await;
        let command = match reply {
            Ok(r) if r.status().is_success() => r
                .json::<HeartbeatReply>()
                .await
                .ok()
                .and_then(|h| h.command),
            // The token is gone: the node moved on without this agent.
            Ok(r) if r.status().is_client_error() => return,
            _ => None,
        };
        let mut log = Vec::new();
        let result = match command {
            Some(AgentCommand::InstallImage {
                image,
                config_drive,
                ..
            }) => {
                let mut result = install(&http, &image).await;
                if result.error.is_none() {
                    images_written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                log.push(match &result.error {
                    None => format!(
                        "wrote {} bytes of {} (checksum verified)",
                        result.bytes, image.url
                    ),
                    Some(e) => format!("installing {} failed: {e}", image.url),
                });
                if result.error.is_none() {
                    // The config drive goes on the disk after the image: what was written
                    // is reported back.
                    result.config_drive = Some(config_drive);
                }
                Some(result)
            }
            Some(AgentCommand::EraseMetadata) => {
                log.push("erased the disks' metadata".to_string());
                Some(AgentResult::default())
            }
            Some(AgentCommand::Inspect) => Some(
                match serde_json::from_value::<AgentInventory>(hardware.clone()) {
                    Ok(inventory) => AgentResult {
                        inventory: Some(inventory),
                        ..AgentResult::default()
                    },
                    Err(e) => AgentResult::failed(format!("reading the hardware: {e}")),
                },
            ),
            // The simulated host is powered by its BMC only.
            Some(AgentCommand::PowerOff | AgentCommand::Reboot) | None => None,
        };
        if let Some(result) = result {
            let beat = Heartbeat {
                agent_token,
                command_result: Some(result),
                log,
            };
            for _ in 0..600 {
                let sent = http
                    .post(&beat_url)
                    .header(CORRELATION_HEADER, &correlation)
                    .json(&beat)
                    .send()
                    .await;
                match sent {
                    // Taken, or refused for good (the node moved on).
                    Ok(r) if r.status().is_success() || r.status().is_client_error() => return,
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn install(http: &reqwest::Client, image: &Image) -> AgentResult {
    let url = &image.url;
    let response = match http.get(url).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return AgentResult::failed(format!("downloading {url}: HTTP {}", r.status())),
        Err(e) => return AgentResult::failed(format!("downloading {url}: {e}")),
    };
    let data = match response.bytes().await {
        Ok(d) => d,
        Err(e) => return AgentResult::failed(format!("downloading {url}: {e}")),
    };
    if let Err(e) = verify_image(image, &data) {
        return AgentResult::failed(e);
    }
    AgentResult {
        bytes: data.len() as u64,
        ..AgentResult::default()
    }
}
