//! `bmcctl` against bmc-sim serving the recorded vendor trees, each through the driver
//! its Metal3 scheme selects: `idrac-virtualmedia://` (Dell), `ilo5-virtualmedia://`
//! (HPE), `redfish-virtualmedia://` (Lenovo, Supermicro: the generic driver, no
//! regression). Virtual-media boot (checked by what the simulated host booted), power,
//! boot override and inventory.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bmc_sim::vendor::BootSource;
use bmc_sim::{RedfishSim, SimConfig};
use serde_json::Value;

const ISO: &str = "http://127.0.0.1:9/images/agent.iso";

struct Case {
    tree: &'static str,
    scheme: &'static str,
    system: &'static str,
    driver: &'static str,
    manufacturer: &'static str,
    /// The CD slot the driver must choose (the simulator's lower-case key).
    slot: &'static str,
}

const CASES: &[Case] = &[
    Case {
        tree: "dell-poweredge-r750-idrac9-fw6.00.30.00",
        scheme: "idrac-virtualmedia",
        system: "/redfish/v1/Systems/System.Embedded.1",
        driver: "idrac",
        manufacturer: "Dell Inc.",
        slot: "/redfish/v1/systems/system.embedded.1/virtualmedia/1",
    },
    Case {
        tree: "hpe-proliant-dl385-gen10plus-v2-ilo5-fw2.72",
        scheme: "ilo5-virtualmedia",
        system: "/redfish/v1/Systems/1",
        driver: "ilo",
        manufacturer: "HPE",
        slot: "/redfish/v1/managers/1/virtualmedia/2",
    },
    Case {
        tree: "lenovo-thinksystem-sr670v2-xcc-fw2.83",
        scheme: "redfish-virtualmedia",
        system: "/redfish/v1/Systems/1",
        driver: "redfish",
        manufacturer: "Lenovo",
        slot: "/redfish/v1/systems/1/virtualmedia/ext1",
    },
    Case {
        tree: "supermicro-sys-821ge-tnhr-x13-bmc-fw11.01.01",
        scheme: "redfish-virtualmedia",
        system: "/redfish/v1/Systems/1",
        driver: "redfish",
        manufacturer: "Supermicro",
        slot: "/redfish/v1/managers/1/virtualmedia/virtualmedia1",
    },
];

async fn bmcctl(address: &str, args: &[&str]) -> Value {
    let mut full = vec!["--user", "root", "--json", "--timeout", "20", address];
    full.extend_from_slice(args);
    let full: Vec<String> = full.into_iter().map(str::to_string).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_bmcctl"))
            .args(&full)
            .env("BMC_PASSWORD", "calvin")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bmcctl {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn run(case: &Case) {
    let sim = RedfishSim::start(SimConfig {
        tree: Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/fixtures/redfish")
                .join(case.tree),
        ),
        credentials: Some(("root".into(), "calvin".into())),
        power_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let address = format!("{}+http://{}{}", case.scheme, sim.addr(), case.system);
    let info = bmcctl(&address, &["info"]).await;
    assert_eq!(info["driver"], case.driver, "{}", case.tree);

    let boot = bmcctl(&address, &["media", "boot", ISO]).await;
    assert_eq!(boot["power"], "On", "{}: {boot}", case.tree);
    assert_eq!(
        sim.boots(case.system).last(),
        Some(&BootSource::VirtualCd {
            slot: case.slot.into(),
            image: ISO.into()
        }),
        "{}: {boot}",
        case.tree
    );
    let media = bmcctl(&address, &["media", "status"]).await;
    assert!(media.to_string().contains(ISO), "{}: {media}", case.tree);
    bmcctl(&address, &["media", "eject"]).await;

    let off = bmcctl(&address, &["power", "off"]).await;
    assert_eq!(off["power"], "Off", "{}: {off}", case.tree);
    bmcctl(&address, &["boot", "set", "pxe", "--persistent"]).await;
    let status = bmcctl(&address, &["boot", "status"]).await;
    assert!(
        status.to_string().contains("pxe"),
        "{}: {status}",
        case.tree
    );
    let on = bmcctl(&address, &["power", "on"]).await;
    assert_eq!(on["power"], "On", "{}: {on}", case.tree);
    assert_eq!(
        sim.boots(case.system).last(),
        Some(&BootSource::Device("Pxe".into())),
        "{}",
        case.tree
    );

    let inv = bmcctl(&address, &["inventory"]).await;
    assert_eq!(
        inv["system"]["manufacturer"], case.manufacturer,
        "{}",
        case.tree
    );
    assert!(!inv["cpus"].as_array().unwrap().is_empty(), "{}", case.tree);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dell_through_idrac_virtualmedia() {
    run(&CASES[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpe_through_ilo5_virtualmedia() {
    run(&CASES[1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenovo_through_the_generic_driver() {
    run(&CASES[2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supermicro_through_the_generic_driver() {
    run(&CASES[3]).await;
}
