//! `bmcctl ipmi://…` against the pyghmi IPMI simulator, checked with ipmitool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/peers/ipmi-sim.sh")
}

struct Peer {
    dir: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["stop", "--dir", self.dir.to_str().unwrap()])
            .output();
    }
}

fn ipmitool(port: u16, args: &[&str]) -> String {
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
        ])
        .args(args)
        .output()
        .expect("ipmitool runs");
    String::from_utf8_lossy(&out.stdout).to_string()
}

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
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ipmi-bmcctl");
    let out = Command::new("bash")
        .arg(script())
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
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _peer = Peer { dir };

    let (ok, text) = bmcctl(port, &["power", "on"]);
    assert!(ok && text.contains("power On"), "{text}");
    assert!(ipmitool(port, &["chassis", "power", "status"]).contains("Chassis Power is on"));
    let (ok, text) = bmcctl(port, &["boot", "set", "pxe"]);
    assert!(ok, "{text}");
    assert!(ipmitool(port, &["chassis", "bootparam", "get", "5"]).contains("Force PXE"));
    let (ok, text) = bmcctl(port, &["power", "off"]);
    assert!(ok && text.contains("Off"), "{text}");
    assert!(ipmitool(port, &["chassis", "power", "status"]).contains("Chassis Power is off"));
    let (ok, text) = bmcctl(port, &["media", "boot", "http://127.0.0.1:9/a.iso"]);
    assert!(!ok && text.contains("not supported by ipmi"), "{text}");
}
