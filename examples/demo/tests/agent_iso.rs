//! The agent ISO booted for real: `examples/agent/image/agent-image.sh build` makes the
//! shared ISO (one command), and a QEMU guest (software emulation) boots it when the
//! conductor boots the agent on a bmc-sim host by virtual media. Beside it, as a USB
//! stick, the host's config image of a few KiB, built by the conductor and fetched from
//! the URL it gave the BMC: the node's pre-provisioning `network_data.json` with a static
//! address (no DHCP client runs; QEMU's user network would offer one) and the agent's
//! section naming the conductor. The agent in the guest configures its network from it,
//! looks its node up and answers the in-band inspection with the guest's real hardware
//! (its virtio disk and NIC), then powers the guest off when told.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bmc_core::verified::PollPolicy;
use bmc_sim::vendor::BootSource;
use bmc_sim::{BootEvent, BootHook, RedfishSim, SimConfig};
use metal3_conductor::conductor::AgentConfigImages;
use metal3_conductor::service::{Service, ServiceConfig, drivers};
use metal3_conductor::{ConductorConfig, Verb};
use provision_fsm::NodeState;
use serde_json::json;

const MAC: &str = "52:54:00:12:34:99";

/// The guests started, killed by PID at the end.
struct Guests(Arc<Mutex<Vec<Child>>>);

impl Drop for Guests {
    fn drop(&mut self) {
        for mut c in self.0.lock().unwrap().drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn build_iso(out: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let started = Instant::now();
    let run = Command::new("bash")
        .arg(repo.join("examples/agent/image/agent-image.sh"))
        .arg("build")
        .arg(out)
        // Its own target folder: this test's cargo holds the workspace's.
        .env("CARGO_TARGET_DIR", out.join("cargo"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "agent-image.sh build failed: {stderr}"
    );
    let summary = String::from_utf8_lossy(&run.stdout).trim().to_string();
    println!(
        "{summary} (test wall {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    let iso = out.join("agent.iso");
    let size = std::fs::metadata(&iso).unwrap().len();
    assert!(
        size <= 40 << 20,
        "the agent ISO is {size} bytes, over 40 MiB"
    );
    iso
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_boots_the_shared_iso_with_its_config_image_and_is_inspected_in_band() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-iso");
    std::fs::create_dir_all(&dir).unwrap();
    let iso = tokio::task::spawn_blocking({
        let out = dir.join("image");
        move || build_iso(&out)
    })
    .await
    .unwrap();
    // The ISO carries the config-image slot the conductor fills for one-slot BMCs.
    let slot = metal3_conductor::agent_iso::SharedIso::open(&iso).unwrap();
    println!("config-image slot at byte {}", slot.slot_offset());

    // The guest reaches the host's loopback at 10.0.2.2 (QEMU's user network): the agent
    // API on a port chosen now, so the config images can name it.
    let agent_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let service = Service::start(
        ServiceConfig {
            admin_listen: "127.0.0.1:0".into(),
            agent_listen: format!("127.0.0.1:{agent_port}"),
            conductor: ConductorConfig {
                agent_image_url: "http://127.0.0.1:9/agent.iso".into(),
                agent_config_images: Some(AgentConfigImages {
                    agent_api_url: format!("http://10.0.2.2:{agent_port}"),
                    ca_pem: None,
                    agent_iso_file: None,
                }),
                poll: PollPolicy {
                    initial: Duration::from_millis(100),
                    max: Duration::from_millis(500),
                },
                ..ConductorConfig::default()
            },
            ..ServiceConfig::default()
        },
        drivers(),
    )
    .await
    .unwrap();
    let conductor = service.conductor.clone();

    // The node's pre-provisioning network: a static address on the guest's NIC.
    let network = json!({
        "links": [{"id": "prov", "type": "phy", "ethernet_mac_address": MAC}],
        "networks": [{"id": "v4", "type": "ipv4", "link": "prov", "ip_address": "10.0.2.15",
                      "netmask": "255.255.255.0",
                      "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.2.2"}]}],
        "services": [{"type": "dns", "address": "10.0.2.3"}]
    });
    let config_image = dir.join("config.img");
    let disk = dir.join("disk.raw");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();

    let guests = Guests(Arc::new(Mutex::new(Vec::new())));
    let started = guests.0.clone();
    let serial = dir.join("serial.log");
    let (iso_path, config_path, disk_path, serial_path) = (
        iso.clone(),
        config_image.clone(),
        disk.clone(),
        serial.clone(),
    );
    let config_sizes = Arc::new(Mutex::new(Vec::new()));
    let sizes = config_sizes.clone();
    let hook = BootHook(Arc::new(move |event: BootEvent| {
        let BootSource::VirtualCd { image, .. } = &event.source else {
            return;
        };
        if !image.ends_with("/agent.iso") {
            return;
        }
        // What the BMC was given for the USB slot, fetched as the BMC would (from here
        // the agent API is on loopback).
        let Some(stick) = event
            .media
            .iter()
            .find(|m| m.media_types.iter().any(|t| t == "USBStick"))
            .map(|m| m.image.replace("10.0.2.2", "127.0.0.1"))
        else {
            return;
        };
        let (iso_path, config_path, disk_path, serial_path, started, sizes) = (
            iso_path.clone(),
            config_path.clone(),
            disk_path.clone(),
            serial_path.clone(),
            started.clone(),
            sizes.clone(),
        );
        tokio::spawn(async move {
            let Ok(reply) = reqwest::get(&stick).await else {
                return;
            };
            let Ok(bytes) = reply.error_for_status().map(|r| r.bytes()) else {
                return;
            };
            let Ok(bytes) = bytes.await else {
                return;
            };
            sizes.lock().unwrap().push(bytes.len());
            std::fs::write(&config_path, &bytes).unwrap();
            {
                let child = Command::new("qemu-system-x86_64")
                    .args([
                        "-accel", "tcg", "-machine", "pc", "-cpu", "qemu64", "-m", "768",
                    ])
                    .args(["-display", "none", "-no-reboot"])
                    .arg("-cdrom")
                    .arg(&iso_path)
                    // The config image as a read-only USB stick.
                    .args(["-device", "qemu-xhci,id=xhci"])
                    .arg("-drive")
                    .arg(format!(
                        "file={},if=none,id=stick,readonly=on,format=raw",
                        config_path.display()
                    ))
                    .args(["-device", "usb-storage,bus=xhci.0,drive=stick,removable=on"])
                    .arg("-drive")
                    .arg(format!("file={},if=virtio,format=raw", disk_path.display()))
                    .args(["-nic", &format!("user,model=virtio-net-pci,mac={MAC}")])
                    .arg("-serial")
                    .arg(format!("file:{}", serial_path.display()))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("qemu-system-x86_64 (qemu-system-x86) is installed");
                started.lock().unwrap().push(child);
            }
        });
    }));
    let sim = RedfishSim::start(SimConfig {
        credentials: Some(("admin".into(), "password".into())),
        on_boot: Some(hook),
        ..SimConfig::default()
    })
    .await
    .unwrap();

    let name = "site-b/guest-0";
    common::create_sim_node(&conductor, name, sim.addr(), MAC, false, Some(network)).await;
    conductor.provision(name, Verb::Manage, None).await.unwrap();
    let console = || {
        format!(
            "; guest console:\n{}",
            std::fs::read_to_string(&serial).unwrap_or_default()
        )
    };
    let wait = |state: NodeState, limit: Duration| {
        common::wait_for_node(&conductor, name, state, limit, &console)
    };
    wait(NodeState::Manageable, Duration::from_secs(30)).await;
    let booted = Instant::now();
    conductor
        .provision(name, Verb::Inspect { in_band: true }, None)
        .await
        .unwrap();
    wait(NodeState::Manageable, Duration::from_secs(300)).await;
    println!(
        "in-band inspection of the guest took {:.1} s",
        booted.elapsed().as_secs_f64()
    );
    let console = std::fs::read_to_string(&serial).unwrap_or_default();
    assert!(
        console.contains("configuration from the config image"),
        "{console}"
    );
    let sizes = config_sizes.lock().unwrap().clone();
    println!("config image: {sizes:?} bytes");
    assert!(sizes.len() == 1 && sizes[0] <= 8192, "{sizes:?}");
    assert!(
        console.contains("network configured from network_data.json"),
        "{console}"
    );
    let inventory = conductor.inventory(name).unwrap();
    let disk = inventory.disks.iter().find(|d| d.id == "/dev/vda");
    assert_eq!(
        disk.and_then(|d| d.size_bytes),
        Some(64 << 20),
        "{inventory:?}"
    );
    assert!(
        inventory
            .nics
            .iter()
            .any(|n| n.mac.as_ref().is_some_and(|m| m.to_string() == MAC)),
        "{inventory:?}"
    );
    assert!(
        inventory.cpus.iter().any(|c| c.threads == Some(1)),
        "{inventory:?}"
    );
}
