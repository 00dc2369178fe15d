//! The main job on real virtual machines: a lab of two guests (`vm-lab.sh up`, one
//! booting legacy BIOS, one UEFI) behind sushy-tools' Redfish emulator, at a routed site
//! with no DHCP server, taken through the whole workflow by `metal3_demo::lab::run_lab`.
//! Needs root and network namespaces (skipped, saying so, where there are none) and the
//! lab's packages (`vm-lab.sh setup`, which `.ci/run` runs). Reuses the agent ISO and
//! the test OS the `agent_iso` and `os_from_disk` tests build when they are there.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use metal3_demo::lab::{DhcpListener, Lab, LabConfig, LabImages, run_lab};

fn vm_lab() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peers/vm-lab.sh")
}

fn can_run_labs() -> Result<(), &'static str> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root");
    }
    let probe = format!("m3lab-probe-{}", std::process::id());
    let made = Command::new("ip").args(["netns", "add", &probe]).status();
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    match made {
        Ok(s) if s.success() => Ok(()),
        _ => Err("no network namespaces (ip netns add failed)"),
    }
}

/// Takes the lab down when the test ends, however it ends.
struct LabUp(PathBuf);

impl Drop for LabUp {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(vm_lab())
            .arg("down")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn two_guests_bios_and_uefi_go_through_the_whole_workflow_without_dhcp() {
    if let Err(why) = can_run_labs() {
        eprintln!("skipped: the lab needs root and network namespaces: {why}");
        return;
    }
    assert!(
        Path::new("/var/cache/vm-lab/venv/bin/sushy-emulator").exists(),
        "the lab is not set up: run {} setup (.ci/run does)",
        vm_lab().display()
    );
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.join("lab");
    if Path::new("/run/netns/bmlab-mgmt").exists() {
        // A lab left over from an interrupted run of this test.
        let _ = Command::new("bash")
            .arg(vm_lab())
            .arg("down")
            .arg(&dir)
            .status();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let up = Command::new("bash")
        .arg(vm_lab())
        .args(["up"])
        .arg(&dir)
        .args(["--nodes", "2"])
        .env("LAB_MAX_S", "900")
        .status()
        .unwrap();
    let _down = LabUp(dir.clone());
    assert!(up.success(), "vm-lab.sh up failed ({up})");
    let lab = Lab::load(&dir).unwrap();
    assert_eq!(lab.nodes.len(), 2);

    // The listener the run relies on for its DHCP evidence hears a real client: busybox
    // udhcpc asking from the site's bridge, before the guests start.
    {
        let listener = DhcpListener::start(Some(&lab.site_netns)).unwrap();
        let probe = "m3lab-dhcp-probe";
        let _ = Command::new("ip").args(["netns", "del", probe]).status();
        let ok = |args: &[&str]| {
            assert!(
                Command::new("ip").args(args).status().unwrap().success(),
                "ip {args:?}"
            )
        };
        ok(&["netns", "add", probe]);
        ok(&[
            "-n", probe, "link", "add", "probe0", "type", "veth", "peer", "name", "bmprobe0",
        ]);
        ok(&[
            "-n",
            probe,
            "link",
            "set",
            "bmprobe0",
            "netns",
            &lab.site_netns,
        ]);
        ok(&[
            "-n",
            &lab.site_netns,
            "link",
            "set",
            "bmprobe0",
            "master",
            "bmbr0",
            "up",
        ]);
        ok(&["-n", probe, "link", "set", "probe0", "up"]);
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                probe,
                "busybox",
                "udhcpc",
                "-i",
                "probe0",
                "-n",
                "-q",
                "-t",
                "2",
                "-T",
                "1",
                "-s",
                "/bin/true",
            ])
            .output();
        let _ = Command::new("ip").args(["netns", "del", probe]).status();
        let heard = listener.heard();
        assert!(
            heard.iter().any(|h| h.contains("DHCPDISCOVER")),
            "the DHCP listener heard no DISCOVER from udhcpc: {heard:?}"
        );
    }

    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let images = LabImages::build(
        &repo,
        &tmp.join("agent-iso/image"),
        &tmp.join("os-from-disk/os"),
    )
    .unwrap();
    let report = run_lab(LabConfig {
        timeout: Duration::from_secs(480),
        progress: true,
        ..LabConfig::new(lab, images)
    })
    .unwrap();
    print!("{}", report.table());
    for h in &report.hosts {
        println!("{}: {}; phases {:?}", h.key, h.inventory, h.phases);
    }
    println!(
        "agent ISO {} bytes; emulator pool {} bytes; DHCP heard: {:?}; whole run {:.1} s",
        report.agent_iso_bytes,
        report.emulator_pool_bytes,
        report.dhcp_requests,
        report.total.as_secs_f64()
    );
    assert_eq!(report.hosts.len(), 2);
    assert_eq!(report.hosts[0].boot_mode, "legacy");
    assert_eq!(report.hosts[1].boot_mode, "UEFI");
    for h in &report.hosts {
        assert!(h.problems.is_empty(), "{}: {:?}", h.key, h.problems);
        assert!(h.os_up_after.is_some() && h.agent_boot.is_some(), "{h:?}");
    }
    assert!(
        report.dhcp_requests.is_empty(),
        "DHCP requests on a site without DHCP: {:?}",
        report.dhcp_requests
    );
}
