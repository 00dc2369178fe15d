//! `metal3-agent`: the agent as the main job of a booted ramdisk. It applies the config
//! image's `network_data.json` (static addresses, routes, DNS; else DHCP on every NIC
//! with busybox's `udhcpc`, unless `--no-dhcp`) and finds its conductor
//! in the config image (`--config-image`, else a device labelled `config-2`), else on the
//! kernel command line (`metal3.conductor=URL`), else in `--conductor`; then looks its
//! node up and works until the conductor is done with it. Logs go to standard error.
//! Exit status: 0 when the conductor ended its part, 1 on failure, 2 for a wrong command
//! line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use metal3_agent::agent::{Agent, AgentConfig, PowerControl};
use metal3_agent::config::{AgentSection, ConfigSource, discover};
use metal3_agent::network::{DhcpClient, configure, dhcp};
use metal3_cli::{EXIT_FAILED, LogArgs};

/// The example agent (the Ironic-Python-Agent's role): inspects the host, erases disk
/// metadata, writes images and config drives, as its conductor asks.
#[derive(Debug, Parser)]
#[command(name = "metal3-agent", version)]
struct Cli {
    /// The conductor's agent API, when neither a config image nor the kernel command
    /// line names one.
    #[arg(long, value_name = "URL", env = "METAL3_AGENT_CONDUCTOR")]
    conductor: Option<String>,
    /// A CA (PEM file) to trust for the conductor and image servers.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The config image (a device or file); by default the first device labelled
    /// config-2.
    #[arg(long, value_name = "PATH")]
    config_image: Option<PathBuf>,
    /// Where /proc and /sys are.
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Where the disks' device files are.
    #[arg(long, value_name = "DIR", default_value = "/dev")]
    dev: PathBuf,
    /// Count loop devices as disks (for tests on loop devices).
    #[arg(long)]
    loop_devices: bool,
    /// Runs no DHCP client, even without a static network configuration.
    #[arg(long)]
    no_dhcp: bool,
    /// Power the host off or restart it when the conductor says so (the agent ISO's
    /// init passes it); without it the agent syncs the disks and exits instead.
    #[arg(long)]
    power_host: bool,
    #[command(flatten)]
    log: LogArgs,
}

fn section(cli: &Cli) -> Result<AgentSection, String> {
    let found = discover(
        cli.config_image.as_deref(),
        &cli.root,
        &cli.dev,
        cli.conductor.as_deref(),
    )?;
    let dhcp_on = match &found.network_data {
        // Static networking from the config image: no DHCP server needed.
        Some(network) => {
            let plan = configure(network, &cli.root)?;
            tracing::info!(
                commands = plan.commands.len(),
                "network configured from network_data.json"
            );
            plan.dhcp
        }
        // No static configuration: DHCP on every NIC.
        None => metal3_agent::inspect::inspect(&cli.root, &Default::default())
            .interfaces
            .into_iter()
            .map(|i| i.name)
            .collect(),
    };
    if !dhcp_on.is_empty() && !cli.no_dhcp {
        let bound = dhcp(&dhcp_on, &DhcpClient::for_host(&cli.root))?;
        tracing::info!(asked = ?dhcp_on, bound = ?bound, "DHCP");
    }
    match &found.source {
        ConfigSource::ConfigImage(path) => {
            tracing::info!(config_image = %path.display(), "configuration from the config image")
        }
        ConfigSource::IsoSlot(path) => tracing::info!(
            device = %path.display(),
            "configuration from the config image inside the booted ISO"
        ),
        ConfigSource::KernelCommandLine => {
            tracing::info!("configuration from the kernel command line")
        }
        ConfigSource::CommandLine => tracing::info!("configuration from --conductor"),
    }
    Ok(found.section)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cli.log.init("info") {
        eprintln!("metal3-agent: {e}");
        return ExitCode::from(2);
    }
    let section = match section(&cli) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let mut config = AgentConfig::new(section.conductor_url);
    config.ca_pem = section.ca_pem;
    if let Some(ca) = &cli.ca {
        match std::fs::read_to_string(ca) {
            Ok(pem) => config.ca_pem = Some(pem),
            Err(e) => {
                tracing::error!("reading {}: {e}", ca.display());
                return ExitCode::from(EXIT_FAILED);
            }
        }
    }
    config.root = cli.root;
    config.dev = cli.dev;
    config.loop_devices = cli.loop_devices;
    if cli.power_host {
        config.power = PowerControl::Host;
    }
    let agent = match Agent::new(config) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match agent.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
