//! A BMC with one virtual-media slot (it takes CDs and USB sticks both): the conductor
//! finds the config image would go where the CD goes, takes it out again and boots the
//! host's own agent ISO instead, the shared ISO streamed from the agent API with the
//! config image in its 64 KiB slot. The "host" reads the ISO as the BMC serves it (whole
//! and by byte ranges, as virtual media reads it), finds its conductor and static network
//! in the slot, and is inspected in band by the real agent. Nothing per host is stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bmc_sim::vendor::BootSource;
use bmc_sim::{BootEvent, BootHook, RedfishSim, SimConfig};
use metal3_agent::agent::{Agent, AgentConfig};
use metal3_agent::config::{ConfigSource, discover};
use metal3_conductor::Verb;
use metal3_conductor::agent_protocol::config_image::{ISO_SLOT_BYTES, iso_slot_placeholder};
use metal3_conductor::conductor::AgentConfigImages;
use provision_fsm::NodeState;
use serde_json::json;

const MAC: &str = "52:54:00:00:00:01";

/// A stand-in for the shared agent ISO, made by xorriso as grub-mkrescue makes it (Rock
/// Ridge and Joliet): 32 MiB of boot files and the empty config-image slot.
fn shared_iso(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("boot")).unwrap();
    std::fs::create_dir_all(tree.join("metal3")).unwrap();
    let mut filler = vec![0u8; 32 << 20];
    for (i, b) in filler.iter_mut().enumerate() {
        *b = (i.wrapping_mul(2654435761) >> 13) as u8;
    }
    std::fs::write(tree.join("boot/initrd.gz"), &filler).unwrap();
    std::fs::write(tree.join("metal3/config.img"), iso_slot_placeholder()).unwrap();
    let iso = dir.join("agent.iso");
    test_peers::iso_from_tree(&tree, &iso, "METAL3_AGENT", &["-J", "-r"]);
    iso
}

/// What the host side saw: the ISO as served, its reading times, and any failure.
#[derive(Default)]
struct Seen {
    iso: Option<Vec<u8>>,
    whole_seconds: f64,
    errors: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_slot_bmc_boots_the_hosts_own_iso_streamed_from_the_shared_one() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("one-slot");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let iso = shared_iso(&dir);
    let shared = std::fs::read(&iso).unwrap();

    let service = common::conductor_service(
        "http://127.0.0.1:9/agent.iso".into(),
        Some(AgentConfigImages {
            agent_api_url: String::new(),
            ca_pem: None,
            agent_iso_file: Some(iso.clone()),
        }),
    )
    .await;
    let conductor = service.conductor.clone();
    let agent_url = service.agent_url();

    let root = dir.join("host");
    let dev = root.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    common::put(
        &root,
        "proc/cpuinfo",
        "processor\t: 0\nmodel name\t: QEMU Virtual CPU\n\n",
    );
    common::put(&root, "proc/meminfo", "MemTotal:        2048000 kB\n");
    common::put(&root, "sys/class/net/eth0/address", &format!("{MAC}\n"));
    std::fs::create_dir_all(root.join("sys/class/net/eth0/device")).unwrap();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let host_seen = seen.clone();
    let (host_root, host_dev, url_of_agent) = (root.clone(), dev.clone(), agent_url.clone());
    let hook = BootHook(Arc::new(move |event: BootEvent| {
        let BootSource::VirtualCd { image, .. } = event.source else {
            return;
        };
        let (root, dev, seen, agent_url) = (
            host_root.clone(),
            host_dev.clone(),
            host_seen.clone(),
            url_of_agent.clone(),
        );
        tokio::spawn(async move {
            let fail = |e: String| seen.lock().unwrap().errors.push(e);
            if !image.contains("/v1/agent-isos/") {
                return fail(format!("booted {image}, not the host's own ISO"));
            }
            let started = Instant::now();
            let whole = match reqwest::get(&image).await {
                Ok(r) if r.status() == 200 => r.bytes().await.unwrap().to_vec(),
                other => return fail(format!("GET {image}: {other:?}")),
            };
            let whole_seconds = started.elapsed().as_secs_f64();
            // Virtual media reads by ranges: two of them, the slot's neighbourhood too.
            let http = reqwest::Client::new();
            for (first, last) in [
                (0u64, 2047u64),
                (whole.len() as u64 - 100_000, whole.len() as u64 - 1),
            ] {
                let r = http
                    .get(&image)
                    .header("Range", format!("bytes={first}-{last}"))
                    .send()
                    .await
                    .unwrap();
                let range = r
                    .headers()
                    .get("content-range")
                    .map(|v| v.to_str().unwrap().to_string());
                if r.status() != 206
                    || range != Some(format!("bytes {first}-{last}/{}", whole.len()))
                {
                    return fail(format!("range {first}-{last}: {} {range:?}", r.status()));
                }
                if r.bytes().await.unwrap() != whole[first as usize..=last as usize] {
                    return fail(format!("range {first}-{last}: other bytes than the whole"));
                }
            }
            let past = http
                .get(&image)
                .header("Range", format!("bytes={}-", whole.len()))
                .send()
                .await
                .unwrap();
            if past.status() != 416 {
                return fail(format!("a range past the end: {}", past.status()));
            }
            // The ISO as the host's CD drive.
            std::fs::write(dev.join("sr0"), &whole).unwrap();
            common::put(
                &root,
                "sys/block/sr0/size",
                &format!("{}\n", whole.len().div_ceil(512)),
            );
            common::put(&root, "sys/block/sr0/ro", "1\n");
            {
                let mut s = seen.lock().unwrap();
                s.iso = Some(whole);
                s.whole_seconds = whole_seconds;
            }
            let found = match discover(None, &root, &dev, None) {
                Ok(f) => f,
                Err(e) => return fail(e),
            };
            if found.source != ConfigSource::IsoSlot(dev.join("sr0"))
                || found.section.conductor_url != agent_url
            {
                return fail(format!(
                    "configuration {:?} from {:?}",
                    found.section, found.source
                ));
            }
            let network: serde_json::Value =
                serde_json::from_slice(&found.network_data.unwrap_or_default()).unwrap_or_default();
            if network["networks"][0]["ip_address"] != "192.0.2.10" {
                return fail(format!("network {network}"));
            }
            let mut config = AgentConfig::new(found.section.conductor_url);
            config.root = root.clone();
            config.dev = dev.clone();
            config.heartbeat_interval = Duration::from_millis(50);
            config.lookup_timeout = Duration::from_secs(60);
            if let Err(e) = Agent::new(config).unwrap().run().await {
                fail(e.to_string());
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
    // One slot for CDs and USB sticks alike.
    let vm = "/redfish/v1/Systems/1/VirtualMedia";
    let mut collection = sim.resource(vm).unwrap();
    collection["Members"] = json!([{"@odata.id": format!("{vm}/Cd")}]);
    collection["Members@odata.count"] = json!(1);
    sim.put_resource(vm, collection);
    let mut cd = sim.resource(&format!("{vm}/Cd")).unwrap();
    cd["MediaTypes"] = json!(["CD", "DVD", "USBStick"]);
    sim.put_resource(&format!("{vm}/Cd"), cd);

    let name = "remote/one-slot-0";
    common::create_sim_node(
        &conductor,
        name,
        sim.addr(),
        MAC,
        false,
        Some(json!({
            "links": [{"id": "boot", "type": "phy", "ethernet_mac_address": MAC}],
            "networks": [{"id": "site", "type": "ipv4", "link": "boot",
                          "ip_address": "192.0.2.10", "netmask": "255.255.255.0"}],
            "services": []
        })),
    )
    .await;
    conductor.provision(name, Verb::Manage, None).await.unwrap();
    let context = || format!("; on the host: {:?}", seen.lock().unwrap().errors);
    common::wait_for_node(
        &conductor,
        name,
        NodeState::Manageable,
        Duration::from_secs(30),
        &context,
    )
    .await;
    conductor
        .provision(name, Verb::Inspect { in_band: true }, None)
        .await
        .unwrap();
    common::wait_for_node(
        &conductor,
        name,
        NodeState::Manageable,
        Duration::from_secs(60),
        &context,
    )
    .await;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert_eq!(seen.errors, Vec::<String>::new());
    let history = format!("{:?}", conductor.history(name).unwrap().entries);
    assert!(
        history.contains("streamed into the BMC's one slot Cd"),
        "{history}"
    );
    let inventory = conductor.inventory(name).unwrap();
    assert!(
        inventory
            .nics
            .iter()
            .any(|n| n.mac.is_some_and(|m| m.to_string() == MAC))
    );

    // The host's ISO is the shared one but for the slot: same length, every byte outside
    // the slot's 64 KiB equal.
    let served = seen.iso.unwrap();
    assert_eq!(served.len(), shared.len());
    let at = shared
        .windows(25)
        .position(|w| w == b"METAL3-CONFIG-IMAGE-SLOT\n")
        .unwrap();
    assert_eq!(at % 2048, 0);
    assert_eq!(served[..at], shared[..at]);
    assert_eq!(served[at + ISO_SLOT_BYTES..], shared[at + ISO_SLOT_BYTES..]);
    assert_ne!(
        served[at..at + ISO_SLOT_BYTES],
        shared[at..at + ISO_SLOT_BYTES]
    );
    println!(
        "per-host ISO: {} bytes streamed in {:.3} s ({:.0} MiB/s), 0 bytes stored per host",
        served.len(),
        seen.whole_seconds,
        served.len() as f64 / (1u64 << 20) as f64 / seen.whole_seconds
    );
    // Served no longer once the boot is over.
    let slot = sim.resource(&format!("{vm}/Cd")).unwrap();
    assert_eq!(slot["Inserted"], false, "{slot}");
    std::fs::remove_dir_all(&dir).unwrap();
}
