//! `bmcctl ipmi://…` against the pyghmi IPMI simulator, checked with ipmitool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use test_peers::IpmiPeer;

fn bmcctl(port: u16, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bmcctl"))
        .args([
            "--user",
            "admin",
            "--password-env",
            "IPMI_TEST_PASSWORD",
            &format!("ipmi://127.0.0.1:{port}"),
        ])
        .args(args)
        .env("IPMI_TEST_PASSWORD", "password")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn bmcctl_drives_the_pyghmi_simulator() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ipmi-bmcctl");
    let peer = IpmiPeer::start("pyghmi", &dir);
    let port = peer.port;
    let ipmitool = |args: &[&str]| peer.ipmitool(args);

    let (ok, text) = bmcctl(port, &["power", "on"]);
    assert!(ok && text.contains("power On"), "{text}");
    assert!(ipmitool(&["chassis", "power", "status"]).contains("Chassis Power is on"));
    let (ok, text) = bmcctl(port, &["boot", "set", "pxe"]);
    assert!(ok, "{text}");
    assert!(ipmitool(&["chassis", "bootparam", "get", "5"]).contains("Force PXE"));
    let (ok, text) = bmcctl(port, &["power", "off"]);
    assert!(ok && text.contains("Off"), "{text}");
    assert!(ipmitool(&["chassis", "power", "status"]).contains("Chassis Power is off"));
    let (ok, text) = bmcctl(port, &["media", "boot", "http://127.0.0.1:9/a.iso"]);
    assert!(!ok && text.contains("not supported by ipmi"), "{text}");
}
