//! `metal3-demo` as a process, with its simulated fleet in a process of its own.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Command;

/// `metal3-demo --separate-simulator`: the simulated fleet runs in a child process, every
/// host still ends where it should (what each simulated host booted is read back from the
/// fleet process), and both processes' peak memory is reported.
#[test]
fn demo_with_the_fleet_in_its_own_process() {
    let out = Command::new(env!("CARGO_BIN_EXE_metal3-demo"))
        .args([
            "--hosts",
            "7",
            "--power-delay-ms",
            "0",
            "--separate-simulator",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("every host ended where it should"),
        "{stdout}"
    );
    let memory = stdout
        .lines()
        .find(|l| l.starts_with("peak memory: operator+conductor"))
        .unwrap_or_else(|| panic!("no memory line in {stdout}"));
    // `… operator+conductor 20.0 MiB (2925.7 KiB per host), simulated fleet 51.7 MiB`
    let mib: Vec<f64> = memory
        .split_whitespace()
        .filter_map(|w| w.trim_start_matches('(').parse::<f64>().ok())
        .collect();
    assert_eq!(mib.len(), 3, "{memory}");
    assert!(mib[0] > 1.0 && mib[2] > 1.0, "{memory}");
    // Seven hosts' worth of simulated BMCs served requests through the child.
    let requests: u64 = stdout
        .lines()
        .find(|l| l.starts_with("7 hosts:"))
        .and_then(|l| l.split("; ").find(|p| p.ends_with("per host)")))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(requests > 7 * 20, "{stdout}");
}

/// Past a dozen hosts, without a terminal, the demo prints hosts per state now and then
/// instead of a line per host per transition; `--help` describes the options and a bad
/// value is a usage error.
#[test]
fn a_larger_fleet_prints_summaries_not_a_line_per_host() {
    let out = Command::new(env!("CARGO_BIN_EXE_metal3-demo"))
        .args(["--hosts", "20", "--power-delay-ms", "0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let before_table: Vec<&str> = stdout
        .lines()
        .take_while(|l| !l.starts_with("host "))
        .collect();
    assert!(
        before_table.iter().any(|l| l.starts_with("[20 hosts] ")),
        "{stdout}"
    );
    assert!(
        !before_table.iter().any(|l| l.starts_with("metal3/")),
        "per-host lines without errors:\n{stdout}"
    );
    // At most one summary per 5 s, whatever the number of transitions.
    assert!(before_table.len() < 20, "{stdout}");

    let help = Command::new(env!("CARGO_BIN_EXE_metal3-demo"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--hosts <N>",
        "--fault-rate <P>",
        "--separate-simulator",
        "--quiet",
        "--log-format",
    ] {
        assert!(help.contains(option), "{option} missing:\n{help}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_metal3-demo"))
        .args(["--fault-rate", "1.5"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn help_matches_its_snapshot() {
    test_peers::assert_help_snapshot(
        env!("CARGO_BIN_EXE_metal3-demo"),
        &[],
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots/metal3-demo-help.txt"),
    );
}

/// A host that runs into an error gets a line of its own even past a dozen hosts, where
/// the others only show in the summaries.
#[test]
fn a_host_in_error_gets_its_own_line_in_a_large_fleet() {
    let manifests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let dir = std::env::temp_dir().join(format!("metal3-demo-progress-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["00-secrets.yaml", "10-ippool.yaml", "20-hosts.yaml"] {
        std::fs::copy(manifests.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("30-bad.yaml"),
        r#"
apiVersion: metal3.io/v1alpha1
kind: BareMetalHost
metadata:
  name: bad-address
  namespace: metal3
  annotations: {metal3-demo/vendor: dmtf, metal3-demo/keep-address: "true", metal3-demo/expect-error: registration error}
spec:
  online: true
  bmc: {address: "redfish-virtualmedia://[fe80::1%eth0/redfish/v1", credentialsName: bmc-credentials}
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_metal3-demo"))
        .args(["--hosts", "18", "--power-delay-ms", "0", "--manifests"])
        .arg(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let before_table: Vec<&str> = stdout
        .lines()
        .take_while(|l| !l.starts_with("host "))
        .collect();
    // Every sixth host is a clone of the bad one: three error lines, one each.
    let errors: Vec<&&str> = before_table
        .iter()
        .filter(|l| l.starts_with("metal3/bad-address-"))
        .collect();
    assert_eq!(errors.len(), 3, "{stdout}");
    assert!(
        errors.iter().all(|l| l.contains("registration error")),
        "{stdout}"
    );
    assert!(
        !before_table.iter().any(|l| l.starts_with("metal3/worker-")),
        "{stdout}"
    );
}
