//! The demo's conductor in a child process of its own (this executable started with
//! [`CHILD_FLAG`]), so that it can be killed with SIGKILL at any moment and started
//! again on the same node store and the same ports, as an operator and agents in the
//! field see a conductor crash.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use bmc_core::verified::PollPolicy;
use metal3_conductor::ConductorConfig;
use metal3_conductor::service::{Service, ServiceConfig, drivers};
use provision_fsm::NodeTimeouts;

/// The first argument that makes this executable serve a conductor.
pub const CHILD_FLAG: &str = "--serve-conductor";

/// How the child conductor runs (its one argument after [`CHILD_FLAG`], as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConductorChild {
    /// The admin API's address.
    pub admin_listen: String,
    /// The agent API's address.
    pub agent_listen: String,
    /// The node store.
    pub state: PathBuf,
    /// The agent ISO.
    pub agent_image_url: String,
    /// Heavy operations at once.
    pub max_heavy: usize,
    /// Waiting-state timeouts.
    pub timeouts: NodeTimeouts,
}

/// Serves the conductor a parent asked for; prints its two URLs as one JSON line, then
/// serves until killed or its standard input closes.
pub async fn serve_child(config_json: &str) -> Result<(), String> {
    let child: ConductorChild =
        serde_json::from_str(config_json).map_err(|e| format!("conductor child config: {e}"))?;
    let service = Service::start(
        ServiceConfig {
            admin_listen: child.admin_listen,
            agent_listen: child.agent_listen,
            state: Some(child.state),
            conductor: ConductorConfig {
                max_heavy: child.max_heavy,
                per_bmc: 2,
                agent_image_url: child.agent_image_url,
                poll: PollPolicy {
                    initial: Duration::from_millis(10),
                    max: Duration::from_millis(200),
                },
                operation_timeout: Duration::from_secs(120),
                timeouts: child.timeouts,
                ..ConductorConfig::default()
            },
            ..ServiceConfig::default()
        },
        drivers(),
    )
    .await?;
    println!(
        "{}",
        serde_json::json!({"admin": service.admin_url(), "agent": service.agent_url()})
    );
    let stdin = async {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(_)) = lines.next_line().await {}
    };
    service.run_until(stdin).await
}

/// The parent's handle on the child conductor.
#[derive(Debug)]
pub struct ConductorProcess {
    child: tokio::process::Child,
    config: ConductorChild,
    /// The admin API's base URL (the same after every restart).
    pub admin_url: String,
    /// The agent API's base URL (the same after every restart).
    pub agent_url: String,
    /// SIGKILLs so far.
    pub kills: u32,
}

async fn start(config: &ConductorChild) -> Result<(tokio::process::Child, String, String), String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let json = serde_json::to_string(config).map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(exe)
        .arg(CHILD_FLAG)
        .arg(json)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting the conductor process: {e}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or("the conductor process has no stdout")?;
    let line = BufReader::new(stdout)
        .lines()
        .next_line()
        .await
        .map_err(|e| format!("reading the conductor process: {e}"))?
        .ok_or("the conductor process exited before it listened")?;
    let v: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| format!("conductor process said {line:?}: {e}"))?;
    let url = |k: &str| {
        v[k].as_str()
            .map(str::to_string)
            .ok_or(format!("the conductor process named no {k} URL"))
    };
    Ok((child, url("admin")?, url("agent")?))
}

impl ConductorProcess {
    /// Starts the child and waits until it listens; the ports it picked are kept for
    /// its restarts.
    pub async fn spawn(mut config: ConductorChild) -> Result<ConductorProcess, String> {
        let (child, admin_url, agent_url) = start(&config).await?;
        let port = |url: &str| url.rsplit(':').next().unwrap_or("0").to_string();
        config.admin_listen = format!("127.0.0.1:{}", port(&admin_url));
        config.agent_listen = format!("127.0.0.1:{}", port(&agent_url));
        Ok(ConductorProcess {
            child,
            config,
            admin_url,
            agent_url,
            kills: 0,
        })
    }

    /// SIGKILLs the conductor (no shutdown of any kind) and starts it again on the same
    /// store and ports.
    pub async fn kill_and_restart(&mut self) -> Result<(), String> {
        self.child
            .start_kill()
            .map_err(|e| format!("killing the conductor: {e}"))?;
        let _ = self.child.wait().await;
        self.kills += 1;
        // The ports are free again once the process is gone; a start that races the
        // kernel's release of them is tried again.
        let mut last = String::new();
        for _ in 0..50 {
            match start(&self.config).await {
                Ok((child, _, _)) => {
                    self.child = child;
                    return Ok(());
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("the conductor did not start again: {last}"))
    }

    /// Stops the child: its standard input closed, then killed if it lingers.
    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
