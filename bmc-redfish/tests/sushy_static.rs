//! Every recorded tree served by a second neutral server we did not write, sushy-tools'
//! `sushy-static` (files as captured, HTTP/1.0, trailing slashes stripped, no auth), and
//! by bmc-sim in its strict default: the driver's read paths (discovery, inventory, power,
//! boot and virtual-media status, capabilities) give the same answers from both. A write
//! is answered 204 by sushy-static and changes nothing, so only the strict simulator can
//! check writes; here the read-back refuses to call such a power change done.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use bmc_core::verified::{Deadline, PollPolicy, ensure_power_with};
use bmc_core::{
    BmcAddress, BmcDriver, BmcError, ConnectOptions, Credentials, PowerAction, PowerState,
};
use bmc_redfish::RedfishDriver;
use bmc_sim::{RedfishSim, SimConfig};
use common::{TREES, fixtures_dir};
use test_peers::SushyStatic;

fn work_dir() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sushy-static");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn serve_static(tree: &str) -> SushyStatic {
    let dir = work_dir();
    SushyStatic::start(
        &dir.join("venv"),
        &fixtures_dir().join(tree),
        &dir.join(format!("{tree}.log")),
    )
}

async fn connect(host: &str, system: Option<&str>) -> Result<RedfishDriver, BmcError> {
    let address = BmcAddress::parse(&format!("redfish+http://{host}{}", system.unwrap_or("")))?;
    let creds = Credentials::new("admin", "password").unwrap();
    let options = ConnectOptions::default()
        .with_request_timeout(Duration::from_secs(10))
        .with_operation_timeout(Duration::from_secs(30));
    RedfishDriver::connect(&address, &creds, &options).await
}

/// What a driver reads from one BMC: everything a conductor's read paths use.
#[derive(Debug, PartialEq)]
struct Reading {
    power: PowerState,
    boot: bmc_core::BootOverrideState,
    media: Vec<bmc_core::VirtualMediaSlot>,
    inventory: bmc_core::HardwareInventory,
    capabilities: bmc_core::Capabilities,
}

async fn read(d: &RedfishDriver, tree: &str, server: &str) -> Reading {
    let what = |op: &str, e: BmcError| -> String { format!("{tree} on {server}: {op}: {e}") };
    Reading {
        power: d
            .power_state()
            .await
            .unwrap_or_else(|e| panic!("{}", what("power", e))),
        boot: d
            .boot_override()
            .await
            .unwrap_or_else(|e| panic!("{}", what("boot", e))),
        media: d
            .virtual_media()
            .await
            .unwrap_or_else(|e| panic!("{}", what("media", e))),
        inventory: d
            .inventory()
            .await
            .unwrap_or_else(|e| panic!("{}", what("inventory", e))),
        capabilities: d.capabilities(),
    }
}

/// Per tree: the system discovery finds, and what its inventory holds.
struct Expect {
    system: &'static str,
    power: PowerState,
    cpus: usize,
    disks: usize,
    nics: usize,
    slots: usize,
}

const EXPECT: [Expect; 5] = [
    Expect {
        system: "/redfish/v1/Systems/437XR1138R2",
        power: PowerState::On,
        cpus: 1,
        disks: 2,
        nics: 4,
        slots: 2,
    },
    Expect {
        system: "/redfish/v1/Systems/System.Embedded.1",
        power: PowerState::On,
        cpus: 2,
        disks: 3,
        nics: 5,
        slots: 1,
    },
    Expect {
        system: "/redfish/v1/Systems/1",
        power: PowerState::On,
        cpus: 2,
        disks: 18,
        nics: 7,
        slots: 2,
    },
    Expect {
        system: "/redfish/v1/Systems/1",
        power: PowerState::On,
        cpus: 2,
        disks: 4,
        nics: 5,
        slots: 1,
    },
    Expect {
        system: "/redfish/v1/Systems/1",
        power: PowerState::On,
        cpus: 2,
        disks: 8,
        nics: 12,
        slots: 1,
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_tree_reads_the_same_from_sushy_static_and_the_strict_simulator() {
    for (tree, e) in TREES.iter().zip(&EXPECT) {
        let peer = serve_static(tree);
        let sim = RedfishSim::start(SimConfig {
            tree: Some(fixtures_dir().join(tree)),
            credentials: Some(("admin".into(), "password".into())),
            ..SimConfig::default()
        })
        .await
        .unwrap();

        // Discovery from the service root, with no system in the address.
        let d = connect(&peer.host(), None)
            .await
            .unwrap_or_else(|err| panic!("{tree} on sushy-static: {err}"));
        let from_static = read(&d, tree, "sushy-static").await;
        let s = connect(&sim.addr().to_string(), None)
            .await
            .unwrap_or_else(|err| panic!("{tree} on bmc-sim: {err}"));
        let from_sim = read(&s, tree, "bmc-sim").await;
        println!(
            "{tree}: power {:?}, {} CPUs, {} disks, {} NICs, {} media slots, {} firmware",
            from_static.power,
            from_static.inventory.cpus.len(),
            from_static.inventory.disks.len(),
            from_static.inventory.nics.len(),
            from_static.media.len(),
            from_static.inventory.firmware.len(),
        );
        assert_eq!(from_static, from_sim, "{tree}");
        assert_eq!(from_static.power, e.power, "{tree}");
        assert_eq!(from_static.inventory.cpus.len(), e.cpus, "{tree}");
        assert_eq!(from_static.inventory.disks.len(), e.disks, "{tree}");
        assert_eq!(from_static.inventory.nics.len(), e.nics, "{tree}");
        assert_eq!(from_static.media.len(), e.slots, "{tree}");

        // The same system named in the address, as advertised and with a trailing slash
        // (sushy-static strips it; the driver sends it as given).
        for system in [e.system.to_string(), format!("{}/", e.system)] {
            let named = connect(&peer.host(), Some(&system))
                .await
                .unwrap_or_else(|err| panic!("{tree} {system} on sushy-static: {err}"));
            assert_eq!(
                named.power_state().await.unwrap(),
                e.power,
                "{tree} {system}"
            );
            assert_eq!(
                named.inventory().await.unwrap(),
                from_static.inventory,
                "{tree} {system}"
            );
        }
        d.close().await.unwrap();
        s.close().await.unwrap();
    }
}

/// sushy-static takes a reset with 204 and never changes the power state: the verified
/// power change reads back and fails, naming the state it kept seeing, instead of
/// reporting a change that did not happen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_accepted_but_not_carried_out_is_not_reported_done() {
    let peer = serve_static(TREES[4]);
    let d = connect(&peer.host(), None).await.unwrap();
    assert_eq!(d.power_state().await.unwrap(), PowerState::On);
    let policy = PollPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(300),
    };
    let err = ensure_power_with(
        &d,
        PowerAction::Off,
        Deadline::after(Duration::from_secs(3)),
        policy,
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("still reports power On"), "{text}");
    assert_eq!(d.power_state().await.unwrap(), PowerState::On);
}
