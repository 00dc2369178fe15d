//! `conductor`: the example conductor as a service: the admin API and the agent API over
//! HTTP, nodes driven with every driver of the family (Redfish, iDRAC, iLO, IPMI).
//!
//! `conductor --help` tells every option. Prints the two addresses it listens on (port 0
//! picks free ones) and runs until Ctrl-C or SIGTERM. Logs go to standard error
//! (`--log`, `RUST_LOG`, `--log-format json`). Exit status: 0 after a clean stop, 1 when
//! the service fails, 2 for a wrong command line.

use std::num::NonZeroUsize;
use std::process::ExitCode;

use clap::Parser;
use metal3_cli::{EXIT_FAILED, LogArgs, Shell};
use metal3_conductor::conductor::AgentConfigImages;
use metal3_conductor::service::{Service, ServiceConfig, TlsFiles, drivers};

/// The example conductor (Ironic's role): nodes driven through their provision states
/// over every driver of the family, with an admin API for the operator and an agent API
/// for the agents.
#[derive(Debug, Parser)]
#[command(name = "conductor", version)]
struct Cli {
    /// The admin API's address (`GET /metrics` and node histories included). Without
    /// `--htpasswd` it listens on loopback only, whatever the address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6385")]
    listen: String,
    /// The admin API's users: an htpasswd file of bcrypt hashes (`htpasswd -B`); every
    /// admin request then needs HTTP basic auth.
    #[arg(long, value_name = "FILE")]
    htpasswd: Option<std::path::PathBuf>,
    /// The admin API's TLS certificate chain (PEM); with `--tls-key`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The admin API's TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// The agent API's TLS certificate chain (PEM); with `--agent-tls-key`.
    #[arg(long, value_name = "FILE", requires = "agent_tls_key")]
    agent_tls_cert: Option<std::path::PathBuf>,
    /// The agent API's TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "agent_tls_cert")]
    agent_tls_key: Option<std::path::PathBuf>,
    /// The agent API's address (look-up and heartbeats of the booted agents).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6386")]
    agent_listen: String,
    /// The agent ISO booted for in-band inspection, cleaning and disk-image deploys.
    #[arg(long, value_name = "URL", env = "CONDUCTOR_AGENT_IMAGE")]
    agent_image: Option<String>,
    /// The agent API's URL as hosts and their BMCs reach it (`https://10.0.0.1:6386`):
    /// each booted agent then gets a config image of its own in a second virtual-media
    /// slot (its network data from the node, this URL, `--agent-ca`), served from the
    /// agent API; without it agents boot the shared ISO alone.
    #[arg(long, value_name = "URL")]
    agent_api_url: Option<String>,
    /// The CA (PEM) agents trust for the agent API, put in their config images.
    #[arg(long, value_name = "FILE", requires = "agent_api_url")]
    agent_ca: Option<std::path::PathBuf>,
    /// The shared agent ISO (the file `--agent-image` serves): a host whose BMC has one
    /// virtual-media slot then boots its own ISO, this one streamed from the agent API
    /// with the host's config image inside, nothing stored per host.
    #[arg(long, value_name = "FILE", requires = "agent_api_url")]
    agent_iso_file: Option<std::path::PathBuf>,
    /// Heavy operations (inspect, deploy, clean) at once, fleet-wide.
    #[arg(long, value_name = "N")]
    max_heavy: Option<NonZeroUsize>,
    /// Operations at once against one BMC.
    #[arg(long, value_name = "N")]
    per_bmc: Option<NonZeroUsize>,
    /// Keeps the nodes in this file (created when missing) and resumes them on start;
    /// without it, nodes live in memory and are lost when the conductor stops.
    #[arg(long, value_name = "FILE")]
    state: Option<std::path::PathBuf>,
    /// The key file that seals the BMC passwords in the state file (32 random bytes,
    /// created with mode 0600 when missing; default: the state file's name plus `.key`).
    /// Keep it apart from the state file.
    #[arg(long, value_name = "FILE", requires = "state")]
    state_key: Option<std::path::PathBuf>,
    /// Prints shell completions for SHELL and exits.
    #[arg(long, value_name = "SHELL")]
    completions: Option<Shell>,
    #[command(flatten)]
    log: LogArgs,
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(shell) = cli.completions {
        metal3_cli::print_completions::<Cli>(shell);
        return ExitCode::SUCCESS;
    }
    if let Err(e) = cli.log.init("info") {
        eprintln!("conductor: {e}");
        return ExitCode::from(metal3_cli::EXIT_USAGE);
    }
    let mut config = ServiceConfig {
        admin_listen: cli.listen,
        agent_listen: cli.agent_listen,
        state: cli.state,
        state_key: cli.state_key,
        admin_htpasswd: cli.htpasswd,
        admin_tls: cli
            .tls_cert
            .zip(cli.tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
        agent_tls: cli
            .agent_tls_cert
            .zip(cli.agent_tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
        ..ServiceConfig::default()
    };
    if let Some(url) = cli.agent_image {
        config.conductor.agent_image_url = url;
    }
    if let Some(url) = cli.agent_api_url {
        let ca_pem = match &cli.agent_ca {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(pem) => Some(pem),
                Err(e) => {
                    eprintln!(
                        "conductor: cannot read the agent CA {}: {e}",
                        path.display()
                    );
                    return ExitCode::from(EXIT_FAILED);
                }
            },
            None => None,
        };
        config.conductor.agent_config_images = Some(AgentConfigImages {
            agent_api_url: url,
            ca_pem,
            agent_iso_file: cli.agent_iso_file.clone(),
        });
    }
    if let Some(n) = cli.max_heavy {
        config.conductor.max_heavy = n.get();
    }
    if let Some(n) = cli.per_bmc {
        config.conductor.per_bmc = n.get();
    }
    let service = match Service::start(config, drivers()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "the conductor did not start");
            eprintln!("conductor: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    println!("admin API {}", service.admin_url());
    println!("agent API {}", service.agent_url());
    tracing::info!(admin = %service.admin_url(), agent = %service.agent_url(), "conductor listening");
    match service.run_until(shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("conductor stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "the conductor failed");
            eprintln!("conductor: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
