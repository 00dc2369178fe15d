//! Runs a simulated Redfish BMC on 127.0.0.1 until interrupted.
//!
//! `bmc-sim --help` tells every option; exit status 0 after a clean stop, 1 when it cannot
//! start, 2 for a wrong command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bmc_sim::{RedfishSim, SimConfig};
use clap::Parser;
use metal3_cli::{LogArgs, Shell};

/// A share of requests from 0 to 1.
fn share(v: &str) -> Result<f64, String> {
    let p: f64 = v.parse().map_err(|_| format!("not a number: {v:?}"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("a share from 0 to 1, not {v}"))
    }
}

/// Runs a simulated Redfish BMC on 127.0.0.1 until Ctrl-C or SIGTERM: a recorded vendor
/// tree or the built-in one, with power, boot override, virtual media and sessions.
#[derive(Debug, Parser)]
#[command(name = "bmc-sim", version)]
struct Cli {
    /// A recorded Redfish tree to serve (`../shared/fixtures/redfish/<tree>`).
    #[arg(long, value_name = "DIR")]
    tree: Option<PathBuf>,
    /// Systems to serve (built-in tree only).
    #[arg(long, value_name = "N", default_value_t = 1)]
    systems: usize,
    /// The port on 127.0.0.1 (0 picks a free one).
    #[arg(long, value_name = "P", default_value_t = 8000)]
    port: u16,
    /// How long a power change takes.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    power_delay: u64,
    /// Share of requests answered 503 (0.1 = 10%).
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = share)]
    fault_rate: f64,
    /// Turns authentication on with this user (needs `--password-env`).
    #[arg(long, value_name = "U", requires = "password_env")]
    user: Option<String>,
    /// The environment variable holding the user's password.
    #[arg(long, value_name = "VAR", requires = "user")]
    password_env: Option<String>,
    /// Prints shell completions for SHELL and exits.
    #[arg(long, value_name = "SHELL")]
    completions: Option<Shell>,
    #[command(flatten)]
    log: LogArgs,
}

fn config(cli: Cli) -> Result<SimConfig, String> {
    let credentials = match (cli.user, cli.password_env) {
        (Some(user), Some(var)) => {
            let password = std::env::var(&var)
                .map_err(|_| format!("environment variable {var} is not set"))?;
            Some((user, password))
        }
        _ => None,
    };
    Ok(SimConfig {
        port: cli.port,
        tree: cli.tree,
        systems: cli.systems,
        power_delay: Duration::from_millis(cli.power_delay),
        fault_rate: cli.fault_rate,
        credentials,
        ..SimConfig::default()
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(shell) = cli.completions {
        metal3_cli::print_completions::<Cli>(shell);
        return ExitCode::SUCCESS;
    }
    if let Err(e) = cli.log.init("warn") {
        eprintln!("bmc-sim: {e}");
        return ExitCode::from(2);
    }
    let config = match config(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bmc-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let systems = config.systems;
    let sim = match RedfishSim::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bmc-sim: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "bmc-sim: Redfish at {} with {systems} system(s); Ctrl-C or SIGTERM stops it",
        sim.url()
    );
    wait_for_stop().await;
    println!("bmc-sim: {} requests served", sim.requests());
    sim.stop().await;
    ExitCode::SUCCESS
}

/// Ctrl-C, or SIGTERM where there are Unix signals (what `kill` and service managers send).
async fn wait_for_stop() {
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
