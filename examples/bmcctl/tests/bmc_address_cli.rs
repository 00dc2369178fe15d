//! The `bmc-address` tool, run as a user would.
#![allow(clippy::expect_used)] // a tool that does not start is a failed test

use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bmc-address"))
        .args(args)
        .output()
        .expect("bmc-address runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn describes_valid_addresses() {
    let (ok, stdout, _) = run(&[
        "idrac-virtualmedia+https://10.0.0.5/redfish/v1/Systems/System.Embedded.1",
        "[fe80::1]:6230",
    ]);
    assert!(ok);
    assert!(stdout.contains("driver:           Idrac"), "{stdout}");
    assert!(
        stdout.contains("redfish endpoint: https://10.0.0.5"),
        "{stdout}"
    );
    assert!(
        stdout.contains("system id:        /redfish/v1/Systems/System.Embedded.1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("canonical:        ipmi://[fe80::1]:6230"),
        "{stdout}"
    );
    assert!(stdout.contains("ipmi port:        6230"), "{stdout}");
}

#[test]
fn reports_invalid_addresses_with_upstream_text_and_fails() {
    let (ok, _, stderr) = run(&["redfish://10.0.0.5", "my-.bmc"]);
    assert!(!ok);
    assert!(
        stderr.contains("BMC address hostname/IP : [my-.bmc] is invalid"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_bmc-address"))
        .output()
        .expect("bmc-address runs");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing address is a usage error"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: bmc-address"));
}

#[test]
fn help_matches_its_snapshot() {
    test_peers::assert_help_snapshot(
        env!("CARGO_BIN_EXE_bmc-address"),
        &[],
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots/bmc-address-help.txt"),
    );
}
