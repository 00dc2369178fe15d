//! `metal3-lab`: the main job on the real virtual machines of a lab
//! (`../shared/peers/vm-lab.sh up DIR --nodes N`): every guest registered, inspected by
//! the real agent, cleaned, provisioned with a real OS image that boots from its disk and
//! calls back from its static address, deprovisioned and deleted, at a site without DHCP.
//! Run as root (it enters the lab's network namespaces). See [`metal3_demo::lab`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use metal3_cli::{EXIT_USAGE, LogArgs};
use metal3_demo::lab::{Lab, LabConfig, LabImages, run_lab};

/// The whole Metal3 workflow on the guests of a running vm-lab.sh lab.
#[derive(Debug, Parser)]
#[command(name = "metal3-lab", version)]
struct Cli {
    /// The lab's directory (the DIR of `vm-lab.sh up DIR`).
    lab: PathBuf,
    /// Where the agent ISO (`DIR/agent`) and the test OS (`DIR/os`) are built; reused when
    /// there (remove them to rebuild).
    #[arg(long, value_name = "DIR", default_value = "target/lab-images")]
    images: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, value_name = "S", default_value_t = 900)]
    timeout: u64,
    /// No progress lines, only the table.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    log: LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cli.log.init("warn") {
        eprintln!("metal3-lab: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let run = || -> Result<bool, String> {
        let lab = Lab::load(&cli.lab)?;
        let repo = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let images = LabImages::build(&repo, &cli.images.join("agent"), &cli.images.join("os"))?;
        let report = run_lab(LabConfig {
            timeout: Duration::from_secs(cli.timeout),
            progress: !cli.quiet,
            ..LabConfig::new(lab, images)
        })?;
        print!("{}", report.table());
        for h in &report.hosts {
            println!("{}: {}", h.key, h.inventory);
        }
        println!(
            "agent images on the management side: one shared ISO of {:.1} MiB (config images are built per request); the emulator's pool holds {:.1} MiB of copies",
            report.agent_iso_bytes as f64 / 1048576.0,
            report.emulator_pool_bytes as f64 / 1048576.0
        );
        match report.dhcp_requests.is_empty() {
            true => println!("DHCP requests heard on the site network: none"),
            false => println!(
                "DHCP requests heard on the site network: {}",
                report.dhcp_requests.join("; ")
            ),
        }
        println!("whole run {:.1} s", report.total.as_secs_f64());
        Ok(report.ok())
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("metal3-lab: not every guest went through (see the table)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("metal3-lab: {e}");
            ExitCode::FAILURE
        }
    }
}
