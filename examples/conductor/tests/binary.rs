//! The `conductor` binary as a user runs it: `--help` describes every option, and with
//! `--log-format json` its log lines on standard error are JSON objects that carry the
//! node and the caller's correlation id into the BMC requests, and never a password.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bmc_sim::{RedfishSim, SimConfig};
use metal3_conductor::{ConductorApi, HttpConductor, NodeSpec, Verb};
use provision_fsm::NodeState;

#[test]
fn help_describes_every_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_conductor"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for option in [
        "--listen <ADDR>",
        "--agent-listen <ADDR>",
        "--agent-image <URL>",
        "--max-heavy <N>",
        "--per-bmc <N>",
        "--completions <SHELL>",
        "--log <FILTER>",
        "--log-format <LOG_FORMAT>",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    assert!(help.contains("[env: CONDUCTOR_AGENT_IMAGE="), "{help}");
    // A wrong command line is exit status 2, with the reason.
    let out = Command::new(env!("CARGO_BIN_EXE_conductor"))
        .arg("--max-heavy=0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-heavy"));
    // Completions for a shell.
    let out = Command::new(env!("CARGO_BIN_EXE_conductor"))
        .args(["--completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--agent-listen"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_node_and_correlation_id_into_bmc_requests() {
    let sim = RedfishSim::start(SimConfig {
        tree: Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/fixtures/redfish/dmtf-public-rackmount1"),
        ),
        credentials: Some(("admin".into(), "pw-must-not-leak".into())),
        power_delay: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_conductor"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--agent-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--log",
            "debug,hyper=warn,reqwest=warn,h2=warn",
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let admin_url = line.trim().strip_prefix("admin API ").unwrap().to_string();
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });

    let admin = HttpConductor::new(&admin_url);
    let address = format!(
        "redfish-virtualmedia+{}/redfish/v1/Systems/437XR1138R2",
        sim.url()
    );
    admin
        .create_node(NodeSpec {
            name: "lab/node-0".into(),
            address: address.parse().unwrap(),
            credentials: bmc_core::Credentials::new("admin", "pw-must-not-leak").unwrap(),
            disable_certificate_verification: false,
            boot_mac: None,
            automated_clean: false,
            preprovisioning_network_data: None,
            legacy_boot: false,
        })
        .await
        .unwrap();
    admin
        .provision("lab/node-0", Verb::Manage, Some("reconcile-7"))
        .await
        .unwrap();
    let mut state = NodeState::Enroll;
    for _ in 0..500 {
        state = admin.node("lab/node-0").await.unwrap().state;
        if state == NodeState::Manageable {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Stop it by its PID, then read everything it logged.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let lines = lines.join().unwrap();
    sim.stop().await;
    assert_eq!(state, NodeState::Manageable);
    assert!(status.success(), "{status:?}");

    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.iter().any(|l| l.contains("pw-must-not-leak")));
    // A BMC request logged inside the node's span, with the operator's correlation id.
    let request = records
        .iter()
        .find(|r| {
            r["fields"]["message"] == "redfish request"
                && r["spans"].as_array().is_some_and(|spans| {
                    spans
                        .iter()
                        .any(|s| s["node"] == "lab/node-0" && s["correlation_id"] == "reconcile-7")
                })
        })
        .unwrap_or_else(|| panic!("no correlated redfish request in:\n{}", lines.join("\n")));
    assert!(
        request["fields"]["path"]
            .as_str()
            .unwrap()
            .starts_with("/redfish/v1")
    );
    assert!(request["fields"]["status"].is_u64());
    assert!(
        records
            .iter()
            .any(|r| r["fields"]["message"] == "conductor listening"),
        "{lines:#?}"
    );
}

#[test]
fn help_matches_its_snapshot() {
    test_peers::assert_help_snapshot(
        env!("CARGO_BIN_EXE_conductor"),
        &[],
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots/conductor-help.txt"),
    );
}
