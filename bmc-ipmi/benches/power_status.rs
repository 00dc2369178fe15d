//! IPMI power-status round trips per second on one session against the pyghmi simulator,
//! side by side with running `ipmitool` once per query, in one run.
//!
//! Run: `cargo bench -p bmc-ipmi --bench power_status` (needs ipmitool and the peer script
//! in `../shared/peers`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bmc_ipmi::session::{IpmiSession, SessionConfig, privilege};

const SESSION_QUERIES: u32 = 2000;
const IPMITOOL_RUNS: u32 = 30;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers/ipmi-sim.sh");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-ipmi-peer");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new("bash")
        .arg(&script)
        .args([
            "start",
            "--kind",
            "pyghmi",
            "--dir",
            dir.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .output()
        .expect("peer script runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let session = IpmiSession::open(SessionConfig {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        user: "admin".into(),
        password: "password".into(),
        kg: None,
        privilege: privilege::ADMINISTRATOR,
        suite: None,
        attempt_timeout: Duration::from_secs(1),
        attempts: 3,
        transport: None,
        observer: Default::default(),
    })
    .await
    .unwrap();
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    for _ in 0..SESSION_QUERIES {
        let r = session.command(0x00, 0x01, &[]).await.unwrap();
        assert_eq!(r.completion, 0);
    }
    let ours = t.elapsed();
    let ours_cpu = cpu_seconds() - cpu0;
    session.close().await.unwrap();

    let t = Instant::now();
    for _ in 0..IPMITOOL_RUNS {
        let out = Command::new("ipmitool")
            .args([
                "-I",
                "lanplus",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "admin",
                "-P",
                "password",
                "chassis",
                "power",
                "status",
            ])
            .output()
            .expect("ipmitool runs");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Chassis Power is"));
    }
    let theirs = t.elapsed();
    let _ = Command::new("bash")
        .arg(&script)
        .args(["stop", "--dir", dir.to_str().unwrap()])
        .output();

    let ours_rate = f64::from(SESSION_QUERIES) / ours.as_secs_f64();
    let theirs_rate = f64::from(IPMITOOL_RUNS) / theirs.as_secs_f64();
    println!(
        "bmc-ipmi, one session:   {SESSION_QUERIES} power status queries in {:.2} s = {ours_rate:.0} per second ({:.1} µs client CPU per query)",
        ours.as_secs_f64(),
        ours_cpu * 1e6 / f64::from(SESSION_QUERIES)
    );
    println!(
        "ipmitool, one run each:  {IPMITOOL_RUNS} power status queries in {:.2} s = {theirs_rate:.1} per second",
        theirs.as_secs_f64()
    );
    println!("ratio: {:.0}x", ours_rate / theirs_rate);
}

/// This process's user + system CPU time, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks / 100.0
}
