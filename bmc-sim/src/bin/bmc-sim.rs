//! Runs a simulated Redfish BMC on 127.0.0.1 until interrupted.
//!
//! `bmc-sim [--tree DIR] [--systems N] [--port P] [--power-delay MS] [--fault-rate P]
//!          [--user U --password-env VAR]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bmc_sim::{RedfishSim, SimConfig};

const USAGE: &str = "usage: bmc-sim [--tree DIR] [--systems N] [--port P] [--power-delay MS] \
[--fault-rate P] [--user U --password-env VAR]";

fn parse(args: &[String]) -> Result<SimConfig, String> {
    let mut config = SimConfig {
        port: 8000,
        ..SimConfig::default()
    };
    let mut user = None;
    let mut password = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--tree" => config.tree = Some(PathBuf::from(value()?)),
            "--systems" => {
                config.systems = value()?
                    .parse()
                    .map_err(|_| "--systems needs a number".to_string())?;
            }
            "--port" => {
                config.port = value()?
                    .parse()
                    .map_err(|_| "--port needs a port number".to_string())?;
            }
            "--power-delay" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|_| "--power-delay needs milliseconds".to_string())?;
                config.power_delay = Duration::from_millis(ms);
            }
            "--fault-rate" => {
                let p: f64 = value()?
                    .parse()
                    .map_err(|_| "--fault-rate needs a probability".to_string())?;
                if !(0.0..=1.0).contains(&p) {
                    return Err("--fault-rate must be between 0 and 1".to_string());
                }
                config.fault_rate = p;
            }
            "--user" => user = Some(value()?),
            "--password-env" => {
                let var = value()?;
                password = Some(
                    std::env::var(&var)
                        .map_err(|_| format!("environment variable {var} is not set"))?,
                );
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    config.credentials = match (user, password) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => return Err("--user and --password-env go together".to_string()),
    };
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
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
