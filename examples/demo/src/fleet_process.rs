//! The simulated fleet in a process of its own, so that the operator and conductor can be
//! measured apart from the hardware they drive: the demo re-runs its own executable with
//! [`CHILD_FLAG`], which serves every host's BMC, the image server and the hosts' agents,
//! and talks to its parent over stdin and stdout (one JSON line each way per step):
//!
//! 1. child → parent: `{"images": "http://…"}` (the image server, so that the parent can
//!    configure its conductor with the agent image);
//! 2. parent → child: a [`FleetRequest`] (the hosts, and the parent's agent API);
//! 3. child → parent: `{"hosts": [{"address": …, "macs": […]}, …], "control": "http://…"}`.
//!
//! `GET <control>/fleet/report` then answers what the BMCs served and booted and the
//! child's peak memory. The child exits when its stdin closes.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use bmc_sim::vendor::BootSource;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::fleet::{self, HostSimConfig, Images, SimHost};

/// The argument that makes the demo's executable serve a fleet.
pub const CHILD_FLAG: &str = "--serve-simulated-fleet";

/// One host to simulate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetHost {
    /// Vendor name ([`fleet::VENDORS`]).
    pub vendor: String,
    /// BMC user name.
    pub username: String,
    /// BMC password.
    pub password: String,
    /// The host's agent never calls back.
    #[serde(default)]
    pub silent_agent: bool,
}

/// What the parent asks the child to simulate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetRequest {
    /// `shared/fixtures/redfish`.
    pub fixtures: std::path::PathBuf,
    /// Power transition time, milliseconds.
    pub power_delay_ms: u64,
    /// Share of BMC requests answered 503.
    pub fault_rate: f64,
    /// The conductor's agent API, for the simulated agents.
    pub agent_api: String,
    /// The agent image's URL: a host that boots it starts a simulated agent.
    pub agent_image_url: String,
    /// The number of the first host (host `first + i` gets MACs and fault seed from it),
    /// so that hosts of several fleet processes differ.
    pub first: u32,
    /// The hosts, in order.
    pub hosts: Vec<FleetHost>,
}

/// Hosts per fleet process: each BMC is a listening socket and a connection, and a
/// process may open 20,000 files here, so larger fleets are split.
pub const HOSTS_PER_PROCESS: usize = 2_500;

/// A simulated host as the parent sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteHost {
    /// The BMC address.
    pub address: String,
    /// MACs, boot NIC first.
    pub macs: Vec<String>,
}

/// What the fleet served, as `GET /fleet/report` answers it.
#[derive(Debug, Clone, Default)]
pub struct FleetReport {
    /// HTTP requests all BMCs served.
    pub requests: u64,
    /// What each host booted, in host order.
    pub boots: Vec<Vec<BootSource>>,
    /// The fleet process's peak resident memory, KiB.
    pub peak_rss_kib: u64,
}

/// Peak resident memory of this process in KiB (`VmHWM`), 0 where `/proc` has none.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn boot_json(b: &BootSource) -> Value {
    match b {
        BootSource::VirtualCd { slot, image } => json!({"slot": slot, "image": image}),
        BootSource::Device(d) => json!({"device": d}),
        BootSource::BootOrder => json!("boot order"),
    }
}

fn boot_from_json(v: &Value) -> BootSource {
    match (
        v["slot"].as_str(),
        v["image"].as_str(),
        v["device"].as_str(),
    ) {
        (Some(slot), Some(image), _) => BootSource::VirtualCd {
            slot: slot.to_string(),
            image: image.to_string(),
        },
        (_, _, Some(d)) => BootSource::Device(d.to_string()),
        _ => BootSource::BootOrder,
    }
}

async fn report(State(hosts): State<Arc<Vec<SimHost>>>) -> axum::Json<Value> {
    let boots: Vec<Value> = hosts
        .iter()
        .map(|h| Value::Array(h.sim.boots(h.vendor.system).iter().map(boot_json).collect()))
        .collect();
    axum::Json(json!({
        "requests": hosts.iter().map(|h| h.sim.requests()).sum::<u64>(),
        "boots": boots,
        "peak_rss_kib": peak_rss_kib(),
    }))
}

async fn write_line(out: &mut tokio::io::Stdout, v: &Value) -> std::io::Result<()> {
    out.write_all(format!("{v}\n").as_bytes()).await?;
    out.flush().await
}

/// The child's side: serves the fleet until stdin closes.
pub async fn serve_child() -> Result<(), String> {
    let images = Images::demo();
    let image_server = fleet::serve_images(images)
        .await
        .map_err(|e| format!("image server: {e}"))?;
    let images_base = format!("http://{}", image_server.addr);
    let mut out = tokio::io::stdout();
    write_line(&mut out, &json!({"images": images_base}))
        .await
        .map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let request: FleetRequest = match lines.next_line().await {
        Ok(Some(line)) => serde_json::from_str(&line).map_err(|e| format!("request: {e}"))?,
        _ => return Err("no request on stdin".into()),
    };
    let config = HostSimConfig {
        fixtures: request.fixtures.clone(),
        credentials: (String::new(), String::new()),
        power_delay: Duration::from_millis(request.power_delay_ms),
        fault_rate: request.fault_rate,
        seed: 1,
        agent_image_url: request.agent_image_url.clone(),
        agent_api: request.agent_api.clone(),
        agent_http: reqwest::Client::new(),
        silent_agent: false,
    };
    let mut hosts = Vec::with_capacity(request.hosts.len());
    for (i, h) in request.hosts.iter().enumerate() {
        let vendor =
            fleet::vendor(&h.vendor).ok_or_else(|| format!("unknown vendor {}", h.vendor))?;
        let number = request.first + i as u32;
        let config = HostSimConfig {
            credentials: (h.username.clone(), h.password.clone()),
            seed: u64::from(number),
            silent_agent: h.silent_agent,
            ..config.clone()
        };
        let host = fleet::start_host(vendor, number, &config)
            .await
            .map_err(|e| format!("simulated BMC {i}: {e}"))?;
        hosts.push(host);
    }
    let view: Vec<RemoteHost> = hosts
        .iter()
        .map(|h| RemoteHost {
            address: h.address.clone(),
            macs: h.macs.clone(),
        })
        .collect();
    let hosts = Arc::new(hosts);
    let control = fleet::serve(
        Router::new()
            .route("/fleet/report", get(report))
            .with_state(hosts.clone()),
    )
    .await
    .map_err(|e| format!("control server: {e}"))?;
    write_line(
        &mut out,
        &json!({"hosts": view, "control": format!("http://{}", control.addr)}),
    )
    .await
    .map_err(|e| e.to_string())?;
    // Serve until the parent closes our stdin (or goes away).
    while let Ok(Some(_)) = lines.next_line().await {}
    Ok(())
}

/// The parent's handle on a fleet child.
#[derive(Debug)]
pub struct FleetProcess {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    /// The image server's base URL (`http://…`).
    pub images: String,
    control: String,
    http: reqwest::Client,
}

impl FleetProcess {
    /// Starts this executable as a fleet child and waits for its image server.
    pub async fn spawn() -> Result<FleetProcess, String> {
        let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        let mut child = tokio::process::Command::new(exe)
            .arg(CHILD_FLAG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting the fleet process: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or("the fleet process has no stdout")?;
        let mut fleet = FleetProcess {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            images: String::new(),
            control: String::new(),
            http: reqwest::Client::new(),
        };
        let first = fleet.read_line().await?;
        fleet.images = first["images"]
            .as_str()
            .ok_or("the fleet process named no image server")?
            .to_string();
        Ok(fleet)
    }

    async fn read_line(&mut self) -> Result<Value, String> {
        match self.stdout.next_line().await {
            Ok(Some(line)) => {
                serde_json::from_str(&line).map_err(|e| format!("fleet process said {line:?}: {e}"))
            }
            Ok(None) => Err("the fleet process exited".into()),
            Err(e) => Err(format!("reading the fleet process: {e}")),
        }
    }

    /// Asks for the hosts and waits until every BMC is serving.
    pub async fn start_hosts(&mut self, request: &FleetRequest) -> Result<Vec<RemoteHost>, String> {
        let line = serde_json::to_string(request).map_err(|e| e.to_string())?;
        let stdin = self
            .stdin
            .as_mut()
            .ok_or("the fleet process's stdin is closed")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| format!("writing to the fleet process: {e}"))?;
        stdin.flush().await.map_err(|e| e.to_string())?;
        let answer = self.read_line().await?;
        self.control = answer["control"]
            .as_str()
            .ok_or("the fleet process named no control server")?
            .to_string();
        serde_json::from_value(answer["hosts"].clone()).map_err(|e| format!("hosts: {e}"))
    }

    /// What the fleet served and booted so far, and its peak memory.
    pub async fn report(&self) -> Result<FleetReport, String> {
        let v: Value = self
            .http
            .get(format!("{}/fleet/report", self.control))
            .send()
            .await
            .map_err(|e| format!("fleet report: {e}"))?
            .json()
            .await
            .map_err(|e| format!("fleet report: {e}"))?;
        Ok(FleetReport {
            requests: v["requests"].as_u64().unwrap_or(0),
            boots: v["boots"]
                .as_array()
                .map(|hosts| {
                    hosts
                        .iter()
                        .map(|b| {
                            b.as_array()
                                .into_iter()
                                .flatten()
                                .map(boot_from_json)
                                .collect()
                        })
                        .collect()
                })
                .unwrap_or_default(),
            peak_rss_kib: v["peak_rss_kib"].as_u64().unwrap_or(0),
        })
    }

    /// Closes the child's stdin and waits for it to exit.
    pub async fn stop(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boots_survive_the_trip_between_processes() {
        let boots = [
            BootSource::VirtualCd {
                slot: "/redfish/v1/Managers/1/VirtualMedia/2".into(),
                image: "http://127.0.0.1:1/images/agent.iso".into(),
            },
            BootSource::Device("Hdd".into()),
            BootSource::BootOrder,
        ];
        for b in boots {
            assert_eq!(boot_from_json(&boot_json(&b)), b);
        }
    }

    #[test]
    fn peak_memory_is_read_from_proc() {
        assert!(peak_rss_kib() > 0);
    }
}
