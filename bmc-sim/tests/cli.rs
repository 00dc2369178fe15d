//! The `bmc-sim` binary's command line.
#![allow(clippy::unwrap_used)]

#[test]
fn help_matches_its_snapshot() {
    test_peers::assert_help_snapshot(
        env!("CARGO_BIN_EXE_bmc-sim"),
        &[],
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/bmc-sim-help.txt"),
    );
}

#[test]
fn a_bad_value_is_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bmc-sim"))
        .args(["--fault-rate", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fault-rate"));
}
