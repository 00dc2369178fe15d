//! `conductor`: the example conductor as a service: the admin API and the agent API over
//! HTTP, nodes driven with every driver of the family (Redfish, iDRAC, iLO, IPMI).
//!
//! ```text
//! conductor [--listen ADDR] [--agent-listen ADDR] [--agent-image URL]
//!           [--max-heavy N] [--per-bmc N]
//! ```
//! Defaults: admin API on 127.0.0.1:6385, agent API on 127.0.0.1:6386. Prints the two
//! addresses it listens on (port 0 picks free ones) and runs until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use metal3_conductor::service::{Service, ServiceConfig, drivers};

const USAGE: &str = "usage: conductor [--listen ADDR] [--agent-listen ADDR] [--agent-image URL] \
[--max-heavy N] [--per-bmc N]";

fn parse(args: &[String]) -> Result<ServiceConfig, String> {
    let mut config = ServiceConfig::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let count = |v: String| -> Result<usize, String> {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag} needs a positive number, not {v:?}"))
        };
        match flag.as_str() {
            "--listen" => config.admin_listen = value()?,
            "--agent-listen" => config.agent_listen = value()?,
            "--agent-image" => config.conductor.agent_image_url = value()?,
            "--max-heavy" => config.conductor.max_heavy = count(value()?)?,
            "--per-bmc" => config.conductor.per_bmc = count(value()?)?,
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    Ok(config)
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let service = match Service::start(config, drivers()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conductor: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("admin API {}", service.admin_url());
    println!("agent API {}", service.agent_url());
    match service.run_until(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conductor: {e}");
            ExitCode::FAILURE
        }
    }
}
