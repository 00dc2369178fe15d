//! The real agent (`metal3-agent`) under the real conductor, on a bmc-sim host whose
//! disk is a file: every boot of the agent ISO by virtual media starts the agent on a fake
//! `/sys` + `/proc` tree describing that disk. In-band inspection reads the tree; cleaning
//! erases the disk's old table and file system; the deploy streams a qcow2 image made by
//! qemu-img onto the disk, its checksum from a checksum file, and adds the config drive
//! partition. The disk is then checked with sgdisk, sfdisk, blkid and mtools.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bmc_core::Credentials;
use bmc_core::verified::PollPolicy;
use bmc_sim::vendor::BootSource;
use bmc_sim::{BootEvent, BootHook};
use bmc_sim::{RedfishSim, SimConfig};
use metal3_agent::agent::{Agent, AgentConfig};
use metal3_conductor::agent_protocol::{ConfigDrive, RootDeviceHints};
use metal3_conductor::service::{Service, ServiceConfig, drivers};
use metal3_conductor::{Conductor, ConductorConfig, DeployConfig, NodeSpec, Verb};
use metal3_demo::fleet::{self, Images};
use provision_fsm::{ChecksumType, Image, ImageFormat, NodeState};
use serde_json::json;
use test_peers::{tool, tool_ok};

const MIB: u64 = 1 << 20;
const DISK: u64 = 256 * MIB;

async fn wait_for(c: &Conductor, name: &str, state: NodeState) {
    common::wait_for_node(c, name, state, Duration::from_secs(90), &String::new).await
}

fn put(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// The host the agent sees: one CPU, one NIC with the BMC's boot MAC, one 256 MiB disk.
fn fake_host(root: &Path, mac: &str) {
    put(
        root,
        "proc/cpuinfo",
        "processor\t: 0\nmodel name\t: QEMU Virtual CPU\nflags\t\t: fpu sse2\n\n",
    );
    put(root, "proc/meminfo", "MemTotal:        2048000 kB\n");
    put(root, "sys/class/net/eth0/address", &format!("{mac}\n"));
    std::fs::create_dir_all(root.join("sys/class/net/eth0/device")).unwrap();
    put(root, "sys/block/sda/size", &format!("{}\n", DISK / 512));
    put(root, "sys/block/sda/queue/rotational", "0\n");
    put(root, "sys/block/sda/device/model", "QEMU HARDDISK\n");
}

/// A 96 MiB OS image: a GPT with one ext4 partition, as qcow2; and its raw form.
fn os_image(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let raw = dir.join("os.raw");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(96 * MIB)
        .unwrap();
    let r = raw.to_str().unwrap();
    tool_ok(
        "sfdisk",
        &["--quiet", r],
        Some("label: gpt\nstart=2048, size=80MiB, type=linux\n"),
    );
    tool_ok(
        "mkfs.ext4",
        &["-q", "-F", "-L", "root", "-E", "offset=1048576", r, "80M"],
        None,
    );
    let qcow = dir.join("os.qcow2");
    let q = qcow.to_str().unwrap();
    tool_ok(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "qcow2", r, q],
        None,
    );
    let reference = dir.join("os.ref.raw");
    tool_ok(
        "qemu-img",
        &[
            "convert",
            "-f",
            "qcow2",
            "-O",
            "raw",
            q,
            reference.to_str().unwrap(),
        ],
        None,
    );
    (
        std::fs::read(&qcow).unwrap(),
        std::fs::read(&reference).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_agent_inspects_cleans_and_writes_a_qcow2_image_and_config_drive() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-agent");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root: PathBuf = dir.join("host");
    let dev = root.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    // The disk as an earlier tenant left it: a table and a file system.
    let disk = dev.join("sda");
    std::fs::File::create(&disk).unwrap().set_len(DISK).unwrap();
    let d = disk.to_str().unwrap().to_string();
    tool_ok(
        "sfdisk",
        &["--quiet", &d],
        Some("label: dos\nstart=2048, size=100MiB, type=83\n"),
    );
    tool_ok(
        "mkfs.ext4",
        &["-q", "-F", "-L", "old", "-E", "offset=1048576", &d, "100M"],
        None,
    );

    let (qcow, reference) = os_image(&dir);
    let sum = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&qcow))
    };
    let images = Images::demo().with("real.qcow2", qcow.clone()).with(
        "real.qcow2.sha256sum",
        format!("{sum}  real.qcow2\n").into_bytes(),
    );
    let image_server = fleet::serve_images(images).await.unwrap();
    let agent_iso = format!("http://{}/images/agent.iso", image_server.addr);

    let registry = drivers();
    let service = Service::start(
        ServiceConfig {
            admin_listen: "127.0.0.1:0".into(),
            agent_listen: "127.0.0.1:0".into(),
            conductor: ConductorConfig {
                agent_image_url: agent_iso.clone(),
                poll: PollPolicy {
                    initial: Duration::from_millis(50),
                    max: Duration::from_millis(200),
                },
                ..ConductorConfig::default()
            },
            ..ServiceConfig::default()
        },
        registry,
    )
    .await
    .unwrap();
    let conductor = service.conductor.clone();
    let agent_url = service.agent_url();

    let boots = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = boots.clone();
    let (host_root, host_dev) = (root.clone(), dev.clone());
    let hook = BootHook(std::sync::Arc::new(move |event: BootEvent| {
        if let BootSource::VirtualCd { image, .. } = &event.source {
            if *image == agent_iso {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                fake_host(&host_root, &event.macs[0]);
                let mut config = AgentConfig::new(agent_url.clone());
                config.root = host_root.clone();
                config.dev = host_dev.clone();
                config.heartbeat_interval = Duration::from_millis(50);
                config.lookup_timeout = Duration::from_secs(60);
                let agent = Agent::new(config).unwrap();
                tokio::spawn(async move { agent.run().await });
            }
        }
    }));
    let sim = RedfishSim::start(SimConfig {
        credentials: Some(("admin".into(), "password".into())),
        on_boot: Some(hook),
        ..SimConfig::default()
    })
    .await
    .unwrap();

    let name = "lab/real-0";
    conductor
        .create_node(NodeSpec {
            name: name.into(),
            address: format!("redfish-virtualmedia+http://{}", sim.addr())
                .parse()
                .unwrap(),
            credentials: Credentials::new("admin", "password").unwrap(),
            disable_certificate_verification: false,
            // The built-in tree's first NIC, as a BareMetalHost's bootMACAddress.
            boot_mac: Some("52:54:00:00:00:01".into()),
            automated_clean: true,
        })
        .await
        .unwrap();
    conductor.provision(name, Verb::Manage, None).await.unwrap();
    wait_for(&conductor, name, NodeState::Manageable).await;

    // In-band inspection: the agent's reading of the fake host.
    conductor
        .provision(name, Verb::Inspect { in_band: true }, None)
        .await
        .unwrap();
    wait_for(&conductor, name, NodeState::Manageable).await;
    let inventory = conductor.inventory(name).unwrap();
    assert_eq!(inventory.disks.len(), 1, "{inventory:?}");
    assert_eq!(inventory.disks[0].size_bytes, Some(DISK));
    assert_eq!(inventory.disks[0].model.as_deref(), Some("QEMU HARDDISK"));

    // Cleaning: the old table and file system go.
    assert!(tool_ok("blkid", &["-p", "-O", "1048576", &d], None).contains("LABEL=\"old\""));
    conductor
        .provision(name, Verb::Provide, None)
        .await
        .unwrap();
    wait_for(&conductor, name, NodeState::Available).await;
    assert_eq!(tool_ok("wipefs", &["-n", &d], None).trim(), "");
    assert!(
        !tool("blkid", &["-p", "-O", "1048576", &d], None).0,
        "the old ext4 is gone"
    );

    // The deploy: qcow2 streamed to raw, checksum from its file, then the config drive.
    let hints: RootDeviceHints =
        serde_json::from_value(json!({"model": "qemu", "rotational": false})).unwrap();
    conductor
        .provision(
            name,
            Verb::Deploy(DeployConfig {
                image: Image {
                    url: format!("http://{}/images/real.qcow2", image_server.addr),
                    checksum: Some(format!(
                        "http://{}/images/real.qcow2.sha256sum",
                        image_server.addr
                    )),
                    checksum_type: Some(ChecksumType::Sha256),
                    format: Some(ImageFormat::Qcow2),
                },
                config_drive: ConfigDrive {
                    user_data: Some("#cloud-config\nhostname: real-0\n".into()),
                    network_data: Some(json!({"links": [], "networks": [], "services": []})),
                    meta_data: json!({"uuid": "real-0", "name": "real-0"}),
                },
                legacy_boot: false,
                root_device_hints: Some(Box::new(hints)),
            }),
            None,
        )
        .await
        .unwrap();
    wait_for(&conductor, name, NodeState::Active).await;
    assert_eq!(
        boots.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "inspect, clean, deploy"
    );

    let written = std::fs::read(&disk).unwrap();
    // The image's partition is on the disk as qemu-img makes it.
    let (a, b) = (MIB as usize, 81 * MIB as usize);
    assert!(
        written[a..b] == reference[a..b],
        "the image's partition differs from qemu-img's"
    );
    let (clean, verify) = tool("sgdisk", &["-v", &d], None);
    assert!(clean && verify.contains("No problems found"), "{verify}");
    let table: serde_json::Value =
        serde_json::from_str(&tool_ok("sfdisk", &["--json", &d], None)).unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{table}");
    assert!(tool_ok("blkid", &["-p", "-O", "1048576", &d], None).contains("LABEL=\"root\""));
    let config_start = parts[1]["start"].as_u64().unwrap() * 512;
    assert_eq!(parts[1]["name"].as_str(), Some("config-2"));
    let probe = tool_ok("blkid", &["-p", "-O", &config_start.to_string(), &d], None);
    assert!(probe.contains("LABEL=\"config-2\""), "{probe}");
    let at = format!("{d}@@{config_start}");
    assert_eq!(
        tool_ok("mtype", &["-i", &at, "::openstack/latest/user_data"], None),
        "#cloud-config\nhostname: real-0\n"
    );
    let history = conductor.history(name).unwrap();
    let lines: Vec<String> = history.entries.iter().map(|e| format!("{e:?}")).collect();
    assert!(
        lines.iter().any(|l| l.contains("checksum verified")),
        "the agent's log reaches the node's history: {lines:#?}"
    );
}
