//! Crashes at random moments: `metal3-demo` with its conductor in a process of its own,
//! killed with SIGKILL and started again on its node store, and with the operator
//! killed (its tasks stopped where they are) and opened again on its store; each alone
//! and both at once, 20 hosts both ways with inspection by the agent. The demo's checks
//! then hold with no slack: every host provisioned, deprovisioned and deleted; one
//! deploy per host, counted at the simulated host (live ISO boots, images the agent
//! wrote) and at the conductor; no address given twice; no node left behind.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Command;

fn run_with(kills: &[&str]) -> String {
    let mut args = vec!["--hosts", "20", "--power-delay-ms", "0", "--quiet"];
    args.extend_from_slice(kills);
    let out = Command::new(env!("CARGO_BIN_EXE_metal3-demo"))
        .args(&args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Exit 0 only when every host ended where it should.
    assert!(out.status.success(), "{kills:?}\n{stdout}\n{stderr}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    stdout
}

fn kills_line(stdout: &str) -> &str {
    stdout
        .lines()
        .find(|l| l.starts_with("conductor killed with SIGKILL"))
        .unwrap_or_else(|| panic!("no kill line in {stdout}"))
}

#[test]
fn ten_conductor_kills() {
    let out = run_with(&["--kill-conductor", "10"]);
    assert!(
        kills_line(&out)
            .starts_with("conductor killed with SIGKILL 10 times, operator killed 0 times"),
        "{out}"
    );
}

#[test]
fn ten_operator_kills() {
    let out = run_with(&["--kill-operator", "10"]);
    assert!(
        kills_line(&out)
            .starts_with("conductor killed with SIGKILL 0 times, operator killed 10 times"),
        "{out}"
    );
}

#[test]
fn ten_kills_of_each_at_once() {
    let out = run_with(&["--kill-conductor", "10", "--kill-operator", "10"]);
    assert!(
        kills_line(&out)
            .starts_with("conductor killed with SIGKILL 10 times, operator killed 10 times"),
        "{out}"
    );
}
