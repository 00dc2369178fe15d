//! A provisioned host boots its OS from its disk and comes up with its config: the real
//! agent (under the real conductor, on a bmc-sim host whose disk is a file) writes the
//! test OS image (`agent-image.sh os`, as qcow2 with its checksum) and the config drive;
//! then a QEMU guest (software emulation) boots that disk file, with SeaBIOS and again
//! with OVMF (UEFI). The OS reads the config drive, applies networkData's static address
//! and runs user_data, which calls a beacon on this side: the proof that the installed OS
//! came up with its configuration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bmc_sim::vendor::BootSource;
use bmc_sim::{BootEvent, BootHook, RedfishSim, SimConfig};
use metal3_agent::agent::{Agent, AgentConfig};
use metal3_conductor::agent_protocol::ConfigDrive;
use metal3_conductor::{DeployConfig, Verb};
use metal3_demo::fleet::{self, Images};
use provision_fsm::{ChecksumType, Image, ImageFormat, NodeState};
use serde_json::json;
use test_peers::tool_ok;

const MAC: &str = "52:54:00:00:00:01";
const DISK: u64 = 256 << 20;

fn build_os(out: &Path) -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let run = Command::new("bash")
        .arg(repo.join("examples/agent/image/agent-image.sh"))
        .arg("os")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "agent-image.sh os failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    println!("{}", String::from_utf8_lossy(&run.stdout).trim());
    out.join("os.img")
}

/// Kills the guest by PID when the test ends, however it ends.
struct Guest(std::process::Child);

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provisioned_os_boots_from_disk_with_its_static_network_and_user_data() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("os-from-disk");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let os = tokio::task::spawn_blocking({
        let out = dir.join("os");
        move || build_os(&out)
    })
    .await
    .unwrap();
    let qcow = dir.join("os.qcow2");
    tool_ok(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            os.to_str().unwrap(),
            qcow.to_str().unwrap(),
        ],
        None,
    );
    let qcow = std::fs::read(&qcow).unwrap();
    let sum = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&qcow))
    };
    let images = Images::demo().with("os.qcow2", qcow).with(
        "os.qcow2.sha256sum",
        format!("{sum}  os.qcow2\n").into_bytes(),
    );
    let image_server = fleet::serve_images(images).await.unwrap();

    // The beacon the OS calls (QEMU's user network shows this side's loopback at
    // 10.0.2.2).
    let beacon = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let beacon_port = beacon.local_addr().unwrap().port();

    let service = common::conductor_service(
        format!("http://{}/images/agent.iso", image_server.addr),
        None,
    )
    .await;
    let conductor = service.conductor.clone();

    // The host as the agent sees it: its NIC and the disk file.
    let root = dir.join("host");
    let dev = root.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    let disk = dev.join("vda");
    std::fs::File::create(&disk).unwrap().set_len(DISK).unwrap();
    common::put(
        &root,
        "proc/cpuinfo",
        "processor\t: 0\nmodel name\t: QEMU Virtual CPU\n\n",
    );
    common::put(&root, "proc/meminfo", "MemTotal:        524288 kB\n");
    common::put(&root, "sys/class/net/eth0/address", &format!("{MAC}\n"));
    std::fs::create_dir_all(root.join("sys/class/net/eth0/device")).unwrap();
    common::put(&root, "sys/block/vda/size", &format!("{}\n", DISK / 512));
    let agent_url = service.agent_url();
    let (host_root, host_dev) = (root.clone(), dev.clone());
    let hook = BootHook(std::sync::Arc::new(move |event: BootEvent| {
        if matches!(&event.source, BootSource::VirtualCd { image, .. } if image.ends_with("/agent.iso"))
        {
            let mut config = AgentConfig::new(agent_url.clone());
            config.root = host_root.clone();
            config.dev = host_dev.clone();
            config.heartbeat_interval = Duration::from_millis(50);
            let agent = Agent::new(config).unwrap();
            tokio::spawn(async move { agent.run().await });
        }
    }));
    let sim = RedfishSim::start(SimConfig {
        credentials: Some(("admin".into(), "password".into())),
        on_boot: Some(hook),
        ..SimConfig::default()
    })
    .await
    .unwrap();

    let name = "site/os-0";
    common::create_sim_node(&conductor, name, sim.addr(), MAC, false, None).await;
    let nothing = String::new;
    conductor.provision(name, Verb::Manage, None).await.unwrap();
    common::wait_for_node(
        &conductor,
        name,
        NodeState::Manageable,
        Duration::from_secs(30),
        &nothing,
    )
    .await;
    conductor
        .provision(name, Verb::Provide, None)
        .await
        .unwrap();
    common::wait_for_node(
        &conductor,
        name,
        NodeState::Available,
        Duration::from_secs(30),
        &nothing,
    )
    .await;
    let user_data =
        format!("#!/bin/sh\nwget -q -O - http://10.0.2.2:{beacon_port}/beacon/os-0 > /dev/null\n");
    conductor
        .provision(
            name,
            Verb::Deploy(DeployConfig {
                image: Image {
                    url: format!("http://{}/images/os.qcow2", image_server.addr),
                    checksum: Some(format!("http://{}/images/os.qcow2.sha256sum", image_server.addr)),
                    checksum_type: Some(ChecksumType::Sha256),
                    format: Some(ImageFormat::Qcow2),
                },
                config_drive: ConfigDrive {
                    user_data: Some(user_data),
                    network_data: Some(json!({
                        "links": [{"id": "boot", "type": "phy", "ethernet_mac_address": MAC}],
                        "networks": [{"id": "v4", "type": "ipv4", "link": "boot",
                                      "ip_address": "10.0.2.15", "netmask": "255.255.255.0",
                                      "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.2.2"}]}],
                        "services": []
                    })),
                    meta_data: json!({"uuid": "os-0", "name": "os-0"}),
                },
                legacy_boot: true,
                // A small disk: named, since without hints the agent wants 4 GiB.
                root_device_hints: Some(Box::new(
                    serde_json::from_value(json!({"deviceName": "/dev/vda"})).unwrap(),
                )),
            }),
            None,
        )
        .await
        .unwrap();
    common::wait_for_node(
        &conductor,
        name,
        NodeState::Active,
        Duration::from_secs(60),
        &nothing,
    )
    .await;

    // The host powers on from its disk: a guest on the disk the agent wrote, with BIOS
    // and then with UEFI firmware.
    beacon.set_nonblocking(true).unwrap();
    for uefi in [false, true] {
        let firmware = if uefi { "UEFI" } else { "BIOS" };
        let serial = dir.join(format!("serial-{firmware}.log"));
        let (request, after) = boot_from_disk(&disk, uefi, &serial, &beacon, &dir).await;
        let console = std::fs::read_to_string(&serial).unwrap_or_default();
        let request =
            request.unwrap_or_else(|| panic!("{firmware}: no beacon; console:\n{console}"));
        println!("{firmware}: the OS called its beacon {after:.1} s after power-on");
        assert!(request.starts_with("GET /beacon/os-0 "), "{request}");
        assert!(
            console.contains("metal3 test OS: network eth0 10.0.2.15/24 via 10.0.2.2"),
            "{console}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Boots a guest from `disk` (BIOS, or UEFI with Debian's OVMF) and waits for the OS's
/// beacon call: its request line and the seconds from power-on, or `None` when the OS
/// said it could not go on or 240 s passed.
async fn boot_from_disk(
    disk: &Path,
    uefi: bool,
    serial: &Path,
    beacon: &std::net::TcpListener,
    dir: &Path,
) -> (Option<String>, f64) {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-accel", "tcg", "-machine", "pc", "-cpu", "qemu64", "-m", "512",
    ])
    .args(["-display", "none", "-no-reboot"]);
    if uefi {
        let vars = dir.join("OVMF_VARS.fd");
        std::fs::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).expect("ovmf is installed");
        qemu.arg("-drive")
            .arg("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd")
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
    }
    let booted = Instant::now();
    let _guest = Guest(
        qemu.arg("-drive")
            .arg(format!("file={},if=virtio,format=raw", disk.display()))
            .args(["-nic", &format!("user,model=virtio-net-pci,mac={MAC}")])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 is installed"),
    );
    while booted.elapsed() < Duration::from_secs(240) {
        match beacon.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                let mut line = String::new();
                BufReader::new(&stream).read_line(&mut line).unwrap();
                let _ = (&stream).write_all(b"HTTP/1.0 200 OK\r\n\r\n");
                return (Some(line), booted.elapsed().as_secs_f64());
            }
            Err(_) => {
                // The OS says when it cannot go on: no need to wait the whole time.
                let console = std::fs::read_to_string(serial).unwrap_or_default();
                if ["no config-2", "cannot mount", "no network for"]
                    .iter()
                    .any(|m| console.contains(&format!("metal3 test OS: {m}")))
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await
            }
        }
    }
    (None, booted.elapsed().as_secs_f64())
}
