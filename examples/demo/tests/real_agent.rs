//! The real agent (`metal3-agent`) under the real conductor, on a bmc-sim host whose
//! disk is a file: every boot of the agent ISO by virtual media starts the agent on a fake
//! `/sys` + `/proc` tree describing that disk. In-band inspection reads the tree; cleaning
//! erases the disk's old table and file system; the deploy streams a qcow2 image made by
//! qemu-img onto the disk, its checksum from a checksum file, and adds the config drive
//! partition. The disk is then checked with sgdisk, sfdisk, blkid and mtools.
//!
//! Every agent boot comes with the host's config image, built by the conductor and
//! inserted by it in the tree's second slot (a USB stick): the "host" fetches it from the
//! URL the BMC was given, as a read-only disk, and the agent finds its conductor and its
//! network data on it. Both slots are empty again after each phase.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bmc_sim::vendor::BootSource;
use bmc_sim::{BootEvent, BootHook};
use bmc_sim::{RedfishSim, SimConfig};
use metal3_agent::agent::{Agent, AgentConfig};
use metal3_agent::config::discover;
use metal3_conductor::agent_protocol::{ConfigDrive, RootDeviceHints};
use metal3_conductor::conductor::AgentConfigImages;
use metal3_conductor::{Conductor, DeployConfig, Verb};
use metal3_demo::fleet::{self, Images};
use provision_fsm::{ChecksumType, Image, ImageFormat, NodeState};
use serde_json::json;
use test_peers::{tool, tool_ok};

const MIB: u64 = 1 << 20;
const DISK: u64 = 256 * MIB;

type HostErrors = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

async fn wait_for(c: &Conductor, name: &str, state: NodeState, host: &HostErrors) {
    let context = || format!("; on the host: {:?}", host.lock().unwrap());
    common::wait_for_node(c, name, state, Duration::from_secs(90), &context).await
}

/// The host the agent sees: one CPU, one NIC with the BMC's boot MAC, one 256 MiB disk.
fn fake_host(root: &Path, mac: &str) {
    common::put(
        root,
        "proc/cpuinfo",
        "processor\t: 0\nmodel name\t: QEMU Virtual CPU\nflags\t\t: fpu sse2\n\n",
    );
    common::put(root, "proc/meminfo", "MemTotal:        2048000 kB\n");
    common::put(root, "sys/class/net/eth0/address", &format!("{mac}\n"));
    std::fs::create_dir_all(root.join("sys/class/net/eth0/device")).unwrap();
    common::put(root, "sys/block/sda/size", &format!("{}\n", DISK / 512));
    common::put(root, "sys/block/sda/queue/rotational", "0\n");
    common::put(root, "sys/block/sda/device/model", "QEMU HARDDISK\n");
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

/// The site's network for the agent: a static address on the boot NIC, no DHCP.
fn site_network() -> serde_json::Value {
    json!({
        "links": [{"id": "boot", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"}],
        "networks": [{"id": "site", "type": "ipv4", "link": "boot",
                      "ip_address": "192.0.2.10", "netmask": "255.255.255.0",
                      "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"}]}],
        "services": [{"type": "dns", "address": "192.0.2.53"}]
    })
}

/// The built-in tree's CD and USB slots hold nothing.
fn assert_both_slots_empty(sim: &RedfishSim) {
    for slot in ["Cd", "Usb"] {
        let path = format!("/redfish/v1/Systems/1/VirtualMedia/{slot}");
        let v = sim.resource(&path).unwrap_or_else(|| panic!("no {path}"));
        assert_eq!(v["Inserted"], false, "{path}: {v}");
    }
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

    // The agent API as bound: the host reaches it on loopback.
    let config_images = AgentConfigImages {
        agent_api_url: String::new(),
        ca_pem: None,
        agent_iso_file: None,
    };
    let service = common::conductor_service(agent_iso.clone(), Some(config_images)).await;
    let conductor = service.conductor.clone();
    let agent_url = service.agent_url();

    let boots = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = boots.clone();
    // What went wrong on the "host" side (a spawned task's panic would go unseen).
    let host_errors: HostErrors = Default::default();
    let errors = host_errors.clone();
    let served: HostErrors = Default::default();
    let agents_stopped = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let stops = agents_stopped.clone();
    let urls = served.clone();
    let (host_root, host_dev) = (root.clone(), dev.clone());
    let expected_network = site_network();
    let hook = BootHook(std::sync::Arc::new(move |event: BootEvent| {
        let BootSource::VirtualCd { image, .. } = &event.source else {
            return;
        };
        if *image != agent_iso {
            return;
        }
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        fake_host(&host_root, &event.macs[0]);
        let media = event.media.clone();
        let stick = event
            .media
            .iter()
            .find(|m| m.image != agent_iso && m.media_types.iter().any(|t| t == "USBStick"))
            .map(|m| m.image.clone());
        urls.lock().unwrap().extend(stick.clone());
        let (root, dev, errors) = (host_root.clone(), host_dev.clone(), errors.clone());
        let stopped = stops.clone();
        let (agent_url, expected_network) = (agent_url.clone(), expected_network.clone());
        tokio::spawn(async move {
            let Some(url) = stick else {
                errors
                    .lock()
                    .unwrap()
                    .push(format!("booted without a config image: {media:?}"));
                return;
            };
            let started = async {
                let bytes = reqwest::get(&url).await.map_err(|e| e.to_string())?;
                if !bytes.status().is_success() {
                    return Err(format!("GET {url}: {}", bytes.status()));
                }
                let bytes = bytes.bytes().await.map_err(|e| e.to_string())?;
                // The stick as the host sees it: a small read-only disk.
                std::fs::write(dev.join("sdb"), &bytes).map_err(|e| e.to_string())?;
                common::put(
                    &root,
                    "sys/block/sdb/size",
                    &format!("{}\n", bytes.len().div_ceil(512)),
                );
                common::put(&root, "sys/block/sdb/ro", "1\n");
                common::put(&root, "sys/block/sdb/removable", "1\n");
                let found = discover(None, &root, &dev, None)?;
                if found.section.conductor_url != agent_url {
                    return Err(format!(
                        "the config image names {}",
                        found.section.conductor_url
                    ));
                }
                let network: serde_json::Value =
                    serde_json::from_slice(&found.network_data.unwrap_or_default())
                        .map_err(|e| e.to_string())?;
                if network != expected_network {
                    return Err(format!("network data {network}"));
                }
                let mut config = AgentConfig::new(found.section.conductor_url);
                config.root = root.clone();
                config.dev = dev.clone();
                config.heartbeat_interval = Duration::from_millis(50);
                config.lookup_timeout = Duration::from_secs(60);
                Agent::new(config).map_err(|e| e.to_string())
            }
            .await;
            match started {
                // Told to power off after its result, the agent syncs and stops.
                Ok(agent) => match agent.run().await {
                    Ok(()) => stopped.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                    Err(e) => {
                        errors.lock().unwrap().push(e.to_string());
                        0
                    }
                },
                Err(e) => {
                    errors.lock().unwrap().push(e);
                    0
                }
            };
        });
    }));
    let sim = RedfishSim::start(SimConfig {
        credentials: Some(("admin".into(), "password".into())),
        on_boot: Some(hook),
        ..SimConfig::default()
    })
    .await
    .unwrap();

    let name = "lab/real-0";
    // The built-in tree's first NIC, as a BareMetalHost's bootMACAddress.
    common::create_sim_node(
        &conductor,
        name,
        sim.addr(),
        "52:54:00:00:00:01",
        true,
        Some(site_network()),
    )
    .await;
    conductor.provision(name, Verb::Manage, None).await.unwrap();
    wait_for(&conductor, name, NodeState::Manageable, &host_errors).await;

    // In-band inspection: the agent's reading of the fake host.
    conductor
        .provision(name, Verb::Inspect { in_band: true }, None)
        .await
        .unwrap();
    wait_for(&conductor, name, NodeState::Manageable, &host_errors).await;
    assert_eq!(*host_errors.lock().unwrap(), Vec::<String>::new());
    let inventory = conductor.inventory(name).unwrap();
    // The disk, and the config image's stick beside it.
    assert_eq!(inventory.disks.len(), 2, "{inventory:?}");
    assert_eq!(inventory.disks[0].size_bytes, Some(DISK));
    assert_eq!(inventory.disks[0].model.as_deref(), Some("QEMU HARDDISK"));
    assert_both_slots_empty(&sim);
    // The image was served for that boot only.
    let history = format!("{:?}", conductor.history(name).unwrap().entries);
    assert!(
        history.contains("with the host's config image in the usb slot Usb"),
        "{history}"
    );

    // Cleaning: the old table and file system go.
    assert!(tool_ok("blkid", &["-p", "-O", "1048576", &d], None).contains("LABEL=\"old\""));
    conductor
        .provision(name, Verb::Provide, None)
        .await
        .unwrap();
    wait_for(&conductor, name, NodeState::Available, &host_errors).await;
    assert_eq!(*host_errors.lock().unwrap(), Vec::<String>::new());
    assert_both_slots_empty(&sim);
    assert_eq!(tool_ok("wipefs", &["-n", &d], None).trim(), "");
    // The read-only config stick was left alone.
    assert!(
        tool_ok("blkid", &["-p", dev.join("sdb").to_str().unwrap()], None)
            .contains("LABEL=\"config-2\"")
    );
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
    wait_for(&conductor, name, NodeState::Active, &host_errors).await;
    assert_eq!(*host_errors.lock().unwrap(), Vec::<String>::new());
    assert_eq!(
        boots.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "inspect, clean, deploy"
    );
    assert_both_slots_empty(&sim);
    assert_eq!(
        agents_stopped.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "each agent powers off when told, after its result"
    );
    // A new image for each boot, served only while its boot waits for the agent.
    let urls = served.lock().unwrap().clone();
    assert_eq!(urls.len(), 3, "{urls:?}");
    assert!(urls[0] != urls[1] && urls[1] != urls[2], "{urls:?}");
    for url in &urls {
        assert_eq!(reqwest::get(url).await.unwrap().status(), 404, "{url}");
    }

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
    // The download's progress, at each tenth it crossed, after the disk was chosen and
    // before the result.
    let at = |text: &str| lines.iter().position(|l| l.contains(text));
    let progress: Vec<&String> = lines.iter().filter(|l| l.contains("MiB of http")).collect();
    assert!(progress.len() >= 3, "{lines:#?}");
    assert!(at("writing http").unwrap() < at("MiB of http").unwrap());
    assert!(at("(100 %)").unwrap() < at("checksum verified").unwrap());
    assert!(
        progress.last().is_some_and(|l| l.contains("(100 %)")),
        "{progress:#?}"
    );
}
