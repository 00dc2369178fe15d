//! `metal3-demo`: the whole Metal3 workflow on a simulated fleet, with no hardware.
//!
//! ```text
//! metal3-demo [--hosts N] [--fault-rate P] [--power-delay-ms MS] [--timeout SECS]
//!             [--manifests DIR] [--fixtures DIR] [--state FILE] [--external-bmcs]
//!             [--kube-mode] [--separate-simulator] [--quiet]
//! ```
//! `--separate-simulator` runs the simulated fleet (BMCs, image server, agents) in a child
//! process and reports the peak memory of each process: this one then holds only the
//! operator and the conductor.
//! `--external-bmcs` keeps the manifests' BMC addresses (sushy-emulator, real BMCs)
//! instead of simulating one BMC per host. `--kube-mode` hands the hosts to the operator
//! the way the `kube` feature's controller does: objects in an emulated API server, each
//! reconciled with finalizers, status writes and requeues.
//! Starts a simulated BMC for every BareMetalHost in the manifests (or `--hosts N`
//! clones of them), an image server and the conductor's agent API, runs the conductor and
//! the operator, takes every host to provisioned, deprovisions and deletes it, prints a
//! table and exits 0 only when every host ended where it should.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use metal3_demo::demo::{DemoConfig, run};

const USAGE: &str = "usage: metal3-demo [--hosts N] [--fault-rate P] [--power-delay-ms MS] \
[--timeout SECS] [--manifests DIR] [--fixtures DIR] [--state FILE] [--external-bmcs] [--kube-mode] \
[--separate-simulator] [--quiet]";

fn parse(args: &[String]) -> Result<DemoConfig, String> {
    let mut config = DemoConfig {
        progress: true,
        ..DemoConfig::default()
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let number = |v: String| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| format!("{flag} needs a number, not {v:?}"))
        };
        match flag.as_str() {
            "--hosts" => {
                let n = number(value()?)?;
                if n < 1.0 {
                    return Err("--hosts needs at least 1".into());
                }
                config.hosts = Some(n as usize);
            }
            "--fault-rate" => {
                let p = number(value()?)?;
                if p >= 1.0 {
                    return Err("--fault-rate is a share below 1 (0.1 = 10%)".into());
                }
                config.fault_rate = p;
            }
            "--power-delay-ms" => {
                config.power_delay = Duration::from_millis(number(value()?)? as u64)
            }
            "--timeout" => config.timeout = Duration::from_secs_f64(number(value()?)?),
            "--manifests" => config.manifests = PathBuf::from(value()?),
            "--fixtures" => config.fixtures = PathBuf::from(value()?),
            "--state" => config.state = Some(PathBuf::from(value()?)),
            "--quiet" => config.progress = false,
            "--external-bmcs" => config.external_bmcs = true,
            "--kube-mode" => config.kube_mode = true,
            "--separate-simulator" => config.separate_simulator = true,
            "--help" | "-h" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(metal3_demo::fleet_process::CHILD_FLAG) {
        return match metal3_demo::fleet_process::serve_child().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("metal3-demo fleet: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let progress = config.progress;
    match run(config).await {
        Ok(report) => {
            println!();
            print!("{}", report.table());
            println!(
                "{} hosts: fleet up after {:.1} s; provisioned {:.1} s after the manifests were applied; whole run {:.1} s; {} BMC requests ({:.0} per host)",
                report.hosts.len(),
                report.setup.as_secs_f64(),
                report.provisioned_after.as_secs_f64(),
                report.total.as_secs_f64(),
                report.bmc_requests,
                report.bmc_requests as f64 / report.hosts.len().max(1) as f64
            );
            let hosts = report.hosts.len().max(1) as f64;
            match report.simulator_peak_rss_kib {
                Some(sim) => println!(
                    "peak memory: operator+conductor {:.1} MiB ({:.1} KiB per host), simulated fleet {:.1} MiB",
                    report.peak_rss_kib as f64 / 1024.0,
                    report.peak_rss_kib as f64 / hosts,
                    sim as f64 / 1024.0
                ),
                None => println!(
                    "peak memory: {:.1} MiB (operator, conductor and simulated fleet in one process)",
                    report.peak_rss_kib as f64 / 1024.0
                ),
            }
            if report.ok() {
                if progress {
                    println!("every host ended where it should");
                }
                ExitCode::SUCCESS
            } else {
                let failed = report
                    .hosts
                    .iter()
                    .filter(|h| !h.problems.is_empty())
                    .count();
                eprintln!(
                    "{failed} of {} hosts did not end where they should",
                    report.hosts.len()
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("metal3-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
