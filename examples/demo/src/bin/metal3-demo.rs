//! `metal3-demo`: the whole Metal3 workflow on a simulated fleet, with no hardware.
//!
//! `metal3-demo --help` tells every option; logs go to standard error (`--log`,
//! `RUST_LOG`, `--log-format json`).
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

use clap::Parser;
use metal3_cli::{EXIT_USAGE, LogArgs, Shell};
use metal3_demo::demo::{DemoConfig, run};

/// A share below 1 (0.1 = 10%).
fn share(v: &str) -> Result<f64, String> {
    let p: f64 = v.parse().map_err(|_| format!("not a number: {v:?}"))?;
    if (0.0..1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("a share from 0 to below 1 (0.1 = 10%), not {v}"))
    }
}

/// The whole Metal3 workflow on a simulated fleet, with no hardware: a simulated BMC for
/// every BareMetalHost in the manifests (or `--hosts N` clones of them), an image server,
/// the conductor and the operator; every host goes to provisioned, is deprovisioned and
/// deleted. Prints a table; exits 0 only when every host ended where it should.
#[derive(Debug, Parser)]
#[command(name = "metal3-demo", version)]
struct Cli {
    /// Clones of the manifests' hosts to run (default: the manifests' hosts as they are).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    hosts: Option<u64>,
    /// Share of BMC requests that fail (0.1 = 10%), to watch the retries.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = share)]
    fault_rate: f64,
    /// How long a simulated power change takes.
    #[arg(long, value_name = "MS")]
    power_delay_ms: Option<u64>,
    /// Gives up after this many seconds.
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// The Metal3 manifests.
    #[arg(long, value_name = "DIR")]
    manifests: Option<PathBuf>,
    /// The recorded Redfish trees the simulated BMCs serve.
    #[arg(long, value_name = "DIR")]
    fixtures: Option<PathBuf>,
    /// The operator's store (default: a new file in the temporary folder).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Keeps the manifests' BMC addresses (sushy-emulator, real BMCs) instead of
    /// simulating one BMC per host.
    #[arg(long)]
    external_bmcs: bool,
    /// Hands the hosts to the operator as the `kube` feature's controller does: objects
    /// in an emulated API server with finalizers, status writes and requeues.
    #[arg(long)]
    kube_mode: bool,
    /// Runs the simulated fleet in processes of its own and reports each one's peak
    /// memory: this one then holds only the operator and the conductor.
    #[arg(long)]
    separate_simulator: bool,
    /// Runs the conductor in a process of its own, killed with SIGKILL N times at
    /// random moments and started again on its node store each time.
    #[arg(long, value_name = "N", default_value_t = 0)]
    kill_conductor: u32,
    /// Kills the operator N times at random moments (its tasks stopped where they
    /// are) and starts it again on its store each time.
    #[arg(long, value_name = "N", default_value_t = 0)]
    kill_operator: u32,
    /// Runs the cluster flow instead (Cluster API's, as CAPM3 serves it): the hosts of
    /// `examples/demo/cluster/` (or --manifests) go to available, a control plane and
    /// three workers choose hosts by label and get addresses from the IPPools, then the
    /// workers scale down by one and up again. With --kill-operator, the operator and the
    /// provider are stopped once while hosts provision and started again on their store.
    #[arg(long)]
    cluster: bool,
    /// Prints only the final table and figures.
    #[arg(long, short)]
    quiet: bool,
    /// Prints shell completions for SHELL and exits.
    #[arg(long, value_name = "SHELL")]
    completions: Option<Shell>,
    #[command(flatten)]
    log: LogArgs,
}

impl Cli {
    fn config(self) -> Result<DemoConfig, String> {
        let mut config = DemoConfig {
            progress: !self.quiet,
            fault_rate: self.fault_rate,
            external_bmcs: self.external_bmcs,
            kube_mode: self.kube_mode,
            separate_simulator: self.separate_simulator,
            state: self.state,
            conductor_kills: self.kill_conductor,
            operator_kills: self.kill_operator,
            ..DemoConfig::default()
        };
        config.hosts = self.hosts.map(|n| n as usize);
        if let Some(ms) = self.power_delay_ms {
            config.power_delay = Duration::from_millis(ms);
        }
        if let Some(secs) = self.timeout {
            config.timeout = Duration::try_from_secs_f64(secs)
                .map_err(|_| format!("--timeout: not a number of seconds: {secs}"))?;
        }
        if let Some(m) = self.manifests {
            config.manifests = m;
        }
        if let Some(f) = self.fixtures {
            config.fixtures = f;
        }
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(metal3_demo::fleet_process::CHILD_FLAG) {
        // A fleet process logs to the standard error it shares with the demo, filtered
        // by the RUST_LOG it inherits.
        let log = LogArgs {
            log: std::env::var("RUST_LOG").ok(),
            log_format: metal3_cli::LogFormat::Text,
        };
        let _ = log.init("warn");
        return match metal3_demo::fleet_process::serve_child().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("metal3-demo fleet: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.first().map(String::as_str) == Some(metal3_demo::conductor_process::CHILD_FLAG) {
        let log = LogArgs {
            log: std::env::var("RUST_LOG").ok(),
            log_format: metal3_cli::LogFormat::Text,
        };
        let _ = log.init("warn");
        let config = args.get(1).map(String::as_str).unwrap_or("{}");
        return match metal3_demo::conductor_process::serve_child(config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("metal3-demo conductor: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    if let Some(shell) = cli.completions {
        metal3_cli::print_completions::<Cli>(shell);
        return ExitCode::SUCCESS;
    }
    if let Err(e) = cli.log.init("warn") {
        eprintln!("metal3-demo: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    if cli.cluster {
        return run_cluster(cli).await;
    }
    let config = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("metal3-demo: {e}");
            return ExitCode::from(EXIT_USAGE);
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
            if report.conductor_kills > 0 || report.operator_restarts > 0 {
                println!(
                    "conductor killed with SIGKILL {} times, operator killed {} times; each started again on its store",
                    report.conductor_kills, report.operator_restarts
                );
            }
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

/// `--cluster`: the cluster flow.
async fn run_cluster(cli: Cli) -> ExitCode {
    let mut config = metal3_demo::cluster::ClusterDemoConfig {
        progress: !cli.quiet,
        fault_rate: cli.fault_rate,
        restart: cli.kill_operator > 0,
        ..Default::default()
    };
    if let Some(m) = cli.manifests {
        config.manifests = m;
    }
    if let Some(f) = cli.fixtures {
        config.fixtures = f;
    }
    if let Some(secs) = cli.timeout {
        match Duration::try_from_secs_f64(secs) {
            Ok(t) => config.timeout = t,
            Err(_) => {
                eprintln!("metal3-demo: --timeout: not a number of seconds: {secs}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    }
    match metal3_demo::cluster::run(config).await {
        Ok(report) => {
            println!();
            print!("{}", report.table());
            if report.ok() {
                println!("cluster flow: every check held");
                ExitCode::SUCCESS
            } else {
                for f in &report.failures {
                    println!("FAILED: {f}");
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("metal3-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
