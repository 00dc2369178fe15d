//! Redfish throughput: power-status polls by `RedfishDriver`s in one process against
//! bmc-sim serving 1,000 systems in another process, with 1, 100 and 1,000 BMCs
//! (drivers, one per system) polled concurrently, each back to back (closed loop, every
//! poll a GET). Prints operations per second and the client's CPU time per operation
//! (this process only: the simulator runs in a child process, on its own core).
//!
//! Run: `cargo bench -p bmc-redfish --bench throughput`.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)] // a benchmark whose setup fails must stop loudly

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bmc_core::{BmcAddress, BmcDriver, ConnectOptions, Credentials};
use bmc_redfish::RedfishDriver;

const SYSTEMS: usize = 1_000;
const CHILD: &str = "THROUGHPUT_BENCH_SIM";

/// This process's user + system CPU time, from /proc/self/stat (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}

/// The child: serve the simulator and print its URL; stop when stdin closes.
fn run_simulator() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sim = bmc_sim::RedfishSim::start(bmc_sim::SimConfig {
            systems: SYSTEMS,
            ..bmc_sim::SimConfig::default()
        })
        .await
        .unwrap();
        println!("{}", sim.url());
        std::io::stdout().flush().unwrap();
        let _ = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        })
        .await;
        sim.stop().await;
    });
}

async fn measure(url: &str, bmcs: usize, duration: Duration) -> (f64, f64) {
    let creds = Credentials::new("admin", "unused").unwrap();
    let mut drivers = Vec::with_capacity(bmcs);
    for i in 0..bmcs {
        let path = if i == 0 {
            "/redfish/v1/Systems/1".to_string()
        } else {
            format!("/redfish/v1/Systems/1-{}", i + 1)
        };
        let host = url.trim_start_matches("http://");
        let address = BmcAddress::parse(&format!("redfish+http://{host}{path}")).unwrap();
        let options = ConnectOptions::default().without_sessions();
        drivers.push(Arc::new(
            RedfishDriver::connect(&address, &creds, &options)
                .await
                .unwrap(),
        ));
    }
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for d in drivers {
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < duration {
                // Every poll a request: the driver's 250 ms system cache would answer
                // back-to-back polls itself.
                d.invalidate();
                d.power_state().await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut ops = 0u64;
    for t in tasks {
        ops += t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    (ops as f64 / secs, cpu / ops.max(1) as f64 * 1e6)
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        run_simulator();
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let url = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "RedfishDriver power-status polls against bmc-sim ({SYSTEMS} systems, separate process)"
    );
    println!(
        "{:>6} {:>12} {:>18}",
        "BMCs", "polls/s", "client CPU µs/poll"
    );
    for bmcs in [1, 100, 1_000] {
        let (rate, cpu_us) = rt.block_on(measure(&url, bmcs, Duration::from_secs(5)));
        println!("{bmcs:>6} {rate:>12.0} {cpu_us:>18.1}");
    }
    drop(child.stdin.take());
    let _ = child.wait();
}
