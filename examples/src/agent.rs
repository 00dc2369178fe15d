//! The agent side: the conductor's agent API over HTTP (modelled on Ironic's: look-up
//! by MAC addresses, heartbeats that carry the next command and its result), a
//! simulated agent that a simulated host "boots" from the agent ISO, and the image
//! checksums Metal3 allows.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use crate::conductor::{AgentCommand, AgentResult, ApiError, Conductor};

/// `GET /v1/lookup?addresses=mac,mac` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lookup {
    /// The node.
    pub node: String,
    /// The token for the node's heartbeats.
    pub agent_token: String,
}

/// `POST /v1/heartbeat/{node}` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The token from the look-up.
    pub agent_token: String,
    /// The result of the last command, once it finished.
    pub command_result: Option<AgentResult>,
}

/// `POST /v1/heartbeat/{node}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The next command, if any.
    pub command: Option<AgentCommand>,
}

fn error(e: ApiError) -> Response {
    let status = match e {
        ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        ApiError::InvalidState(_) => StatusCode::CONFLICT,
        ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
    };
    (status, Json(serde_json::json!({"error": e.to_string()}))).into_response()
}

#[derive(Deserialize)]
struct LookupQuery {
    addresses: String,
}

async fn lookup(State(c): State<Arc<Conductor>>, Query(q): Query<LookupQuery>) -> Response {
    let macs: Vec<String> = q.addresses.split(',').map(str::to_string).collect();
    match c.agent_lookup(&macs) {
        Ok((node, agent_token)) => Json(Lookup { node, agent_token }).into_response(),
        Err(e) => error(e),
    }
}

async fn heartbeat(
    State(c): State<Arc<Conductor>>,
    Path(node): Path<String>,
    Json(beat): Json<Heartbeat>,
) -> Response {
    if let Some(result) = beat.command_result {
        return match c.agent_report(&node, &beat.agent_token, result) {
            Ok(()) => Json(HeartbeatReply { command: None }).into_response(),
            Err(e) => error(e),
        };
    }
    match c.agent_heartbeat(&node, &beat.agent_token) {
        Ok(command) => Json(HeartbeatReply { command }).into_response(),
        Err(e) => error(e),
    }
}

/// The agent API's routes (`/v1/lookup`, `/v1/heartbeat/{node}`).
pub fn routes(conductor: Arc<Conductor>) -> Router {
    Router::new()
        .route("/v1/lookup", get(lookup))
        .route("/v1/heartbeat/{node}", post(heartbeat))
        .with_state(conductor)
}

/// The hex digest of `data` with a Metal3 checksum type (`sha256`, `sha512`, `md5`, or
/// `auto`/none: guessed from the expected checksum's length).
pub fn checksum(
    data: &[u8],
    checksum_type: Option<&str>,
    expected: &str,
) -> Result<String, String> {
    let kind = match checksum_type.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("auto") => match expected.len() {
            32 => "md5",
            64 => "sha256",
            128 => "sha512",
            n => {
                return Err(format!(
                    "cannot tell the checksum type of a {n}-character checksum"
                ));
            }
        }
        .to_string(),
        Some(k) => k.to_string(),
    };
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    Ok(match kind.as_str() {
        "md5" => hex(&Md5::digest(data)),
        "sha256" => hex(&Sha256::digest(data)),
        "sha512" => hex(&Sha512::digest(data)),
        other => return Err(format!("checksum type {other} is not one Metal3 allows")),
    })
}

/// A simulated ironic-python-agent: looks its node up by the host's MACs, heartbeats,
/// carries out `install_image` (download, checksum, write) and reports.
pub async fn run_simulated_agent(
    api: String,
    macs: Vec<String>,
    hardware: serde_json::Value,
    http: reqwest::Client,
) {
    let lookup = async {
        for _ in 0..100 {
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
    let Some(Lookup { node, agent_token }) = lookup.await else {
        tracing::debug!(?macs, "simulated agent found no node");
        return;
    };
    // Node names are `namespace/name`: the slash is escaped in the path.
    let beat_url = format!(
        "{api}/v1/heartbeat/{}",
        node.replace('%', "%25").replace('/', "%2F")
    );
    for _ in 0..2000 {
        let reply = http
            .post(&beat_url)
            .json(&Heartbeat {
                agent_token: agent_token.clone(),
                command_result: None,
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
        let result = match command {
            Some(AgentCommand::InstallImage {
                url,
                checksum: expected,
                checksum_type,
                config_drive,
            }) => {
                let mut result =
                    install(&http, &url, expected.as_deref(), checksum_type.as_deref()).await;
                if result.error.is_none() {
                    // The config drive goes on the disk after the image: what was written
                    // is reported back.
                    result.config_drive = Some(config_drive);
                }
                Some(result)
            }
            Some(AgentCommand::EraseMetadata) => Some(AgentResult {
                error: None,
                bytes: 0,
                inventory: None,
                config_drive: None,
            }),
            Some(AgentCommand::Inspect) => Some(AgentResult {
                error: None,
                bytes: 0,
                inventory: Some(hardware.clone()),
                config_drive: None,
            }),
            None => None,
        };
        if let Some(result) = result {
            let _ = http
                .post(&beat_url)
                .json(&Heartbeat {
                    agent_token,
                    command_result: Some(result),
                })
                .send()
                .await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn install(
    http: &reqwest::Client,
    url: &str,
    expected: Option<&str>,
    checksum_type: Option<&str>,
) -> AgentResult {
    let failed = |error: String| AgentResult {
        error: Some(error),
        bytes: 0,
        inventory: None,
        config_drive: None,
    };
    let response = match http.get(url).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return failed(format!("downloading {url}: HTTP {}", r.status())),
        Err(e) => return failed(format!("downloading {url}: {e}")),
    };
    let data = match response.bytes().await {
        Ok(d) => d,
        Err(e) => return failed(format!("downloading {url}: {e}")),
    };
    if let Some(expected) = expected {
        match checksum(&data, checksum_type, expected) {
            Ok(actual) if actual.eq_ignore_ascii_case(expected.trim()) => {}
            Ok(actual) => {
                return failed(format!(
                    "checksum mismatch for {url}: expected {expected}, got {actual}"
                ));
            }
            Err(e) => return failed(e),
        }
    }
    AgentResult {
        error: None,
        bytes: data.len() as u64,
        inventory: None,
        config_drive: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_of_every_allowed_type_and_auto() {
        let md5 = "5d41402abc4b2a76b9719d911017c592";
        assert_eq!(checksum(b"hello", Some("md5"), md5).as_deref(), Ok(md5));
        let sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(checksum(b"hello", None, sha256).as_deref(), Ok(sha256));
        assert_eq!(
            checksum(b"hello", Some("sha512"), "").map(|s| s.len()),
            Ok(128)
        );
        assert!(checksum(b"hello", Some("crc32"), "x").is_err());
        assert!(checksum(b"hello", Some("auto"), "abc").is_err());
    }
}
