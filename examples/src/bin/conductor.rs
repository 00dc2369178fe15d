//! `conductor`: the example conductor as a service: the admin API and the agent API over
//! HTTP, nodes driven with the registered BMC drivers (Redfish, iDRAC, iLO, IPMI).
//!
//! ```text
//! conductor [--listen ADDR] [--agent-listen ADDR] [--agent-image URL]
//!           [--max-heavy N] [--per-bmc N]
//! ```
//! Defaults: admin API on 127.0.0.1:6385, agent API on 127.0.0.1:6386. Prints the two
//! addresses it listens on (port 0 picks free ones) and runs until Ctrl-C or SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bmc_core::Registry;
use bmc_examples::conductor::{Conductor, ConductorConfig};

const USAGE: &str = "usage: conductor [--listen ADDR] [--agent-listen ADDR] [--agent-image URL] \
[--max-heavy N] [--per-bmc N]";

struct Cli {
    listen: String,
    agent_listen: String,
    config: ConductorConfig,
}

fn parse(args: &[String]) -> Result<Cli, String> {
    let mut cli = Cli {
        listen: "127.0.0.1:6385".into(),
        agent_listen: "127.0.0.1:6386".into(),
        config: ConductorConfig::default(),
    };
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
            "--listen" => cli.listen = value()?,
            "--agent-listen" => cli.agent_listen = value()?,
            "--agent-image" => cli.config.agent_image_url = value()?,
            "--max-heavy" => cli.config.max_heavy = count(value()?)?,
            "--per-bmc" => cli.config.per_bmc = count(value()?)?,
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    Ok(cli)
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
    let cli = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut registry = Registry::new();
    bmc_redfish::register(&mut registry);
    bmc_idrac::register(&mut registry);
    bmc_ilo::register(&mut registry);
    bmc_ipmi::register(&mut registry);
    let conductor = Conductor::new(cli.config, registry);
    let bind = |addr: String| async move {
        tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))
    };
    let (admin, agent) = match (bind(cli.listen).await, bind(cli.agent_listen).await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("conductor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (Ok(admin_addr), Ok(agent_addr)) = (admin.local_addr(), agent.local_addr()) else {
        eprintln!("conductor: no local address");
        return ExitCode::FAILURE;
    };
    println!("admin API http://{admin_addr}");
    println!("agent API http://{agent_addr}");
    let admin_routes = bmc_examples::api::routes(conductor.clone());
    let agent_routes = bmc_examples::agent::routes(conductor.clone());
    let timeouts = {
        let c = Arc::clone(&conductor);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                c.check_timeouts();
            }
        })
    };
    let served = tokio::select! {
        r = axum::serve(admin, admin_routes) => r,
        r = axum::serve(agent, agent_routes) => r,
        _ = shutdown_signal() => Ok(()),
    };
    timeouts.abort();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conductor: {e}");
            ExitCode::FAILURE
        }
    }
}
