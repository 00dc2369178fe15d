//! The Redfish driver with Dell's hooks against bmc-sim serving the recorded iDRAC 9 tree (R750, firmware
//! 6.00.30.00), as is and edited into older firmware: virtual-CD boot by configuration
//! import and what it actually booted, the fallbacks, lifecycle-controller readiness, the
//! job queue, iDRAC message ids, and the registry.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bmc_core::verified::{Deadline, PollPolicy, boot_from_virtual_media_with};
use bmc_core::{
    BmcAddress, BmcDriver, BmcError, BootDevice, BootMode, BootOverride, BootPersistence,
    ConnectOptions, Credentials, MediaKind, PowerAction, PowerState, Registry,
};
use bmc_idrac::IdracPolicy;
use bmc_redfish::RedfishDriver;
use bmc_sim::vendor::BootSource;
use bmc_sim::{Fault, RedfishSim, SimConfig};
use serde_json::{Value, json};

const TREE: &str = "dell-poweredge-r750-idrac9-fw6.00.30.00";
const SYSTEM: &str = "/redfish/v1/Systems/System.Embedded.1";
const MANAGER: &str = "/redfish/v1/Managers/iDRAC.Embedded.1";
const ISO: &str = "http://127.0.0.1:9/images/agent.iso";

fn tree_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/redfish")
        .join(TREE)
}

fn read_tree(path: &str) -> Value {
    let file = tree_dir()
        .join(path.trim_start_matches('/'))
        .join("index.json");
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

fn fast() -> PollPolicy {
    PollPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(50),
    }
}

fn quick_policy() -> IdracPolicy {
    IdracPolicy {
        lc_ready_timeout: Duration::from_secs(2),
        lc_poll_interval: Duration::from_millis(10),
        job_running_retries: 3,
        job_running_wait: Duration::from_millis(10),
    }
}

/// The tree as an iDRAC 9 before 6.00.02 shows it: firmware 4.40, virtual media only
/// under the manager.
fn older_firmware() -> Vec<(String, Value)> {
    let mut manager = read_tree(MANAGER);
    manager["FirmwareVersion"] = json!("4.40.00.00");
    let mut system = read_tree(SYSTEM);
    system.as_object_mut().unwrap().remove("VirtualMedia");
    vec![(MANAGER.into(), manager), (SYSTEM.into(), system)]
}

/// The manager without the configuration-import action.
fn without_import() -> (String, Value) {
    strip_import(read_tree(MANAGER))
}

fn strip_import(mut manager: Value) -> (String, Value) {
    let oem = manager["Actions"]["Oem"].as_object_mut().unwrap();
    oem.retain(|k, _| !k.contains("ImportSystemConfiguration"));
    (MANAGER.into(), manager)
}

async fn sim(overrides: Vec<(String, Value)>) -> RedfishSim {
    RedfishSim::start(SimConfig {
        tree: Some(tree_dir()),
        credentials: Some(("root".into(), "calvin".into())),
        power_delay: Duration::from_millis(40),
        overrides,
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn address(sim: &RedfishSim, scheme: &str) -> BmcAddress {
    BmcAddress::parse(&format!("{scheme}+http://{}{SYSTEM}", sim.addr())).unwrap()
}

async fn connect(sim: &RedfishSim) -> RedfishDriver {
    let creds = Credentials::new("root", "calvin").unwrap();
    bmc_idrac::connect_with_policy(
        &address(sim, "idrac-virtualmedia"),
        &creds,
        &ConnectOptions::default(),
        quick_policy(),
    )
    .await
    .unwrap()
}

async fn vmedia_boot(d: &dyn BmcDriver) -> bmc_core::Result<bmc_core::verified::VirtualMediaBoot> {
    boot_from_virtual_media_with(
        d,
        ISO,
        BootMode::Uefi,
        Deadline::after(Duration::from_secs(10)),
        fast(),
    )
    .await
}

fn jobs(sim: &RedfishSim) -> Vec<Value> {
    let listing = sim.resource(&format!("{MANAGER}/Oem/Dell/Jobs")).unwrap();
    listing["Members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| sim.resource(m["@odata.id"].as_str().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn virtual_cd_boot_goes_by_configuration_import_and_boots_the_virtual_cd() {
    let sim = sim(Vec::new()).await;
    let d = connect(&sim).await;
    assert_eq!(d.quirks().profile, "dell-idrac9");
    assert_eq!(d.identity().generation, Some(9));
    let out = vmedia_boot(&d).await.unwrap();
    assert_eq!(out.slot_id, "1", "firmware 6.x: the System's slot 1");
    assert_eq!(d.power_state().await.unwrap(), PowerState::On);
    assert_eq!(
        sim.boots(SYSTEM),
        [BootSource::VirtualCd {
            slot: "/redfish/v1/systems/system.embedded.1/virtualmedia/1".into(),
            image: ISO.into()
        }]
    );
    // The import ran as a job and completed.
    let imports: Vec<_> = jobs(&sim)
        .into_iter()
        .filter(|j| j["JobType"] == "ImportConfiguration")
        .collect();
    assert_eq!(imports.len(), 1);
    assert_eq!(imports[0]["JobState"], "Completed");
    // BootOnce was consumed by the boot.
    let boot = d.boot_override().await.unwrap();
    assert_eq!(boot.device, None);
    d.close().await.unwrap();
}

#[tokio::test]
async fn older_firmware_uses_the_manager_cd_slot_and_never_the_physical_drive() {
    let sim = sim(older_firmware()).await;
    let d = connect(&sim).await;
    assert_eq!(d.quirks().profile, "dell-idrac9-before-6.00.02");
    let out = vmedia_boot(&d).await.unwrap();
    assert_eq!(out.slot_id, "CD", "before 6.00.02: the Manager's CD slot");
    assert_eq!(
        sim.boots(SYSTEM),
        [BootSource::VirtualCd {
            slot: "/redfish/v1/managers/idrac.embedded.1/virtualmedia/cd".into(),
            image: ISO.into()
        }]
    );
    // The generic driver without Dell's hooks on the same BMC refuses the Cd override
    // rather than boot the physical drive...
    let creds = Credentials::new("root", "calvin").unwrap();
    let generic = RedfishDriver::connect_with(
        &address(&sim, "redfish-virtualmedia"),
        &creds,
        &ConnectOptions::default(),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(generic.driver_name(), "redfish");
    let err = generic
        .set_boot_override(&BootOverride::once(BootDevice::Cd))
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("bmc-idrac"), "{err}");
    // ...which is what this firmware does with it.
    generic.power(PowerAction::Off).await.unwrap();
    generic
        .set_boot_override(&BootOverride::once(BootDevice::Pxe))
        .await
        .unwrap();
    let mut system = sim.resource(SYSTEM).unwrap();
    system["PowerState"] = json!("Off");
    system["Boot"]["BootSourceOverrideTarget"] = json!("Cd");
    system["Boot"]["BootSourceOverrideEnabled"] = json!("Once");
    sim.put_resource(SYSTEM, system);
    generic.power(PowerAction::On).await.unwrap();
    assert_eq!(
        sim.boots(SYSTEM).last(),
        Some(&BootSource::Device("PhysicalCd".into()))
    );
}

#[tokio::test]
async fn without_the_import_action_firmware_6_falls_back_to_the_standard_override() {
    let sim = sim(vec![without_import()]).await;
    let d = connect(&sim).await;
    vmedia_boot(&d).await.unwrap();
    assert!(matches!(
        sim.boots(SYSTEM).as_slice(),
        [BootSource::VirtualCd { .. }]
    ));
    assert!(
        jobs(&sim)
            .iter()
            .all(|j| j["JobType"] != "ImportConfiguration")
    );
}

#[tokio::test]
async fn without_the_import_action_older_firmware_refuses_instead_of_booting_the_drive() {
    let mut overrides = older_firmware();
    let manager = overrides.remove(0).1;
    overrides.push(strip_import(manager));
    let sim = sim(overrides).await;
    let d = connect(&sim).await;
    let err = d
        .set_boot_override(&BootOverride::once(BootDevice::Cd))
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::Unsupported { .. }), "{err}");
}

#[tokio::test]
async fn a_refused_import_falls_back_where_the_standard_override_works() {
    let sim = sim(Vec::new()).await;
    let d = connect(&sim).await;
    d.power(PowerAction::Off).await.unwrap();
    while d.power_state().await.unwrap() != PowerState::Off {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.insert_media(&MediaKind::Cd, ISO).await.unwrap();
    sim.inject_at(
        "importsystemconfiguration",
        Fault::Message {
            status: 400,
            id: "IDRAC.2.7.LIC501".into(),
            text: "A required license is missing or expired.".into(),
        },
    );
    d.set_boot_override(&BootOverride::once(BootDevice::Cd))
        .await
        .unwrap();
    let boot = d.boot_override().await.unwrap();
    assert_eq!(boot.device, Some(BootDevice::Cd));
    d.power(PowerAction::On).await.unwrap();
    assert!(matches!(
        sim.boots(SYSTEM).as_slice(),
        [BootSource::VirtualCd { .. }]
    ));
}

#[tokio::test]
async fn a_running_job_is_waited_for_and_a_pending_one_reported_with_its_id() {
    let sim = sim(Vec::new()).await;
    let d = connect(&sim).await;
    sim.inject_at(
        "importsystemconfiguration",
        Fault::Message {
            status: 400,
            id: "IDRAC.2.7.RAC0679".into(),
            text: "Unable to complete the operation because a job is running.".into(),
        },
    );
    d.set_boot_override(&BootOverride::once(BootDevice::Cd))
        .await
        .unwrap();

    // A scheduled BIOS job blocks the import (LC068): the error names it.
    let pending = format!("{MANAGER}/Oem/Dell/Jobs/JID_555000000001");
    sim.put_resource(
        &pending,
        json!({"@odata.id": pending, "Id": "JID_555000000001", "JobState": "Scheduled",
               "JobType": "BIOSConfiguration", "Message": "Task successfully scheduled.",
               "MessageId": "JCP001"}),
    );
    let jobs_path = format!("{MANAGER}/Oem/Dell/Jobs");
    let mut listing = sim.resource(&jobs_path).unwrap();
    listing["Members"]
        .as_array_mut()
        .unwrap()
        .push(json!({"@odata.id": pending}));
    sim.put_resource(&jobs_path, listing);
    sim.inject_at(
        "importsystemconfiguration",
        Fault::Message {
            status: 400,
            id: "IDRAC.2.7.LC068".into(),
            text: "Lifecycle Controller has pending configuration changes.".into(),
        },
    );
    let err = d
        .set_boot_override(&BootOverride::once(BootDevice::Cd))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("LC068"), "{text}");
    assert!(
        text.contains("JID_555000000001 (BIOSConfiguration) Scheduled"),
        "{text}"
    );

    let queue = bmc_idrac::job_queue(&d).await.unwrap();
    assert_eq!(queue.pending().count(), 1);
    assert_eq!(queue.failed().count(), 0);
    assert!(queue.jobs.len() >= 3, "{queue:?}");
    bmc_idrac::clear_job_queue(&d).await.unwrap();
    assert!(bmc_idrac::job_queue(&d).await.unwrap().jobs.is_empty());
}

#[tokio::test]
async fn the_lifecycle_controller_is_waited_for_then_reported_busy() {
    let sim = sim(Vec::new()).await;
    let d = connect(&sim).await;
    sim.lifecycle_controller_busy_for(3);
    d.set_boot_override(&BootOverride::once(BootDevice::Pxe))
        .await
        .unwrap();
    assert!(bmc_idrac::lifecycle_controller_ready(&d).await.unwrap());
    sim.lifecycle_controller_busy_for(1000);
    let err = d
        .set_boot_override(&BootOverride {
            device: BootDevice::Disk,
            persistence: BootPersistence::Persistent,
            mode: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::Busy { .. }), "{err}");
    assert!(err.to_string().contains("Lifecycle Controller"), "{err}");
}

#[tokio::test]
async fn recorded_error_bodies_become_errors_with_the_idrac_ids() {
    let sim = sim(Vec::new()).await;
    let d = connect(&sim).await;
    let client = d.client();
    let licence = client
        .get("/redfish/v1/AccountService/ExternalAccountProviders")
        .await
        .unwrap_err();
    assert_eq!(licence.messages()[0].id, "IDRAC.2.7.LIC501");
    let explained = bmc_idrac::messages::explain(licence, "directory services");
    assert!(
        matches!(explained, BmcError::Unsupported { .. }),
        "{explained}"
    );
    assert!(
        explained
            .to_string()
            .contains("IDRAC.2.7.LIC501: A required license is missing")
    );
    let missing = client
        .get("/redfish/v1/Chassis/System.Embedded.1/NetworkAdapters/InfiniBand.Slot.7/NetworkPorts/InfiniBand.Slot.7")
        .await
        .unwrap_err();
    assert!(matches!(missing, BmcError::NotFound { .. }), "{missing}");
    let ids: Vec<_> = missing.messages().iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["IDRAC.2.7.SYS403", "Base.1.8.ResourceMissingAtURI"]);
}

#[tokio::test]
async fn registered_for_both_idrac_schemes_with_power_boot_and_inventory() {
    let sim = sim(Vec::new()).await;
    let mut registry = Registry::new();
    bmc_idrac::register(&mut registry);
    let creds = Credentials::new("root", "calvin").unwrap();
    for scheme in ["idrac-redfish", "idrac-virtualmedia"] {
        let bmc = registry
            .connect(&address(&sim, scheme), &creds, &ConnectOptions::default())
            .await
            .unwrap();
        assert_eq!(bmc.driver_name(), "idrac");
        bmc.power(PowerAction::On).await.unwrap();
        bmc.set_boot_override(&BootOverride {
            device: BootDevice::Pxe,
            persistence: BootPersistence::Persistent,
            mode: Some(BootMode::Uefi),
        })
        .await
        .unwrap();
        let boot = bmc.boot_override().await.unwrap();
        assert_eq!(boot.device, Some(BootDevice::Pxe));
        assert_eq!(boot.persistence, Some(BootPersistence::Persistent));
        let inv = bmc.inventory().await.unwrap();
        assert_eq!(inv.system.manufacturer.as_deref(), Some("Dell Inc."));
        assert!(!inv.cpus.is_empty() && !inv.nics.is_empty() && !inv.disks.is_empty());
        assert!(
            inv.firmware.iter().any(|f| f.version == "6.00.30.00"),
            "{:?}",
            inv.firmware
        );
        bmc.close().await.unwrap();
    }
    // A boot-mode change is refused with the reason, not half done.
    let d = connect(&sim).await;
    let err = d
        .set_boot_override(&BootOverride {
            device: BootDevice::Cd,
            persistence: BootPersistence::Once,
            mode: Some(BootMode::Legacy),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::InvalidRequest(_)), "{err}");
}

/// The Dell hooks are chosen by the BMC's identity: the R750 behind a generic
/// `redfish-virtualmedia` address boots the virtual CD by configuration import too.
#[tokio::test]
async fn a_dell_behind_a_generic_redfish_address_gets_the_dell_hooks() {
    let sim = sim(older_firmware()).await;
    let mut registry = Registry::new();
    bmc_redfish::register(&mut registry);
    bmc_idrac::register(&mut registry);
    let creds = Credentials::new("root", "calvin").unwrap();
    let bmc = registry
        .connect(
            &address(&sim, "redfish-virtualmedia"),
            &creds,
            &ConnectOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(bmc.driver_name(), "idrac");
    // This firmware boots the physical drive with the standard `Cd` override, which the
    // generic driver alone refuses: with the hooks the boot goes by import.
    vmedia_boot(bmc.as_ref()).await.unwrap();
    let imports = jobs(&sim)
        .into_iter()
        .filter(|j| j["JobType"] == "ImportConfiguration")
        .count();
    assert_eq!(imports, 1);
    assert_eq!(
        sim.boots(SYSTEM),
        [BootSource::VirtualCd {
            slot: "/redfish/v1/managers/idrac.embedded.1/virtualmedia/cd".into(),
            image: ISO.into()
        }]
    );
    bmc.close().await.unwrap();
}

/// An `idrac-*` address whose BMC answers as another vendor is refused, naming both.
#[tokio::test]
async fn an_idrac_address_to_a_bmc_that_is_not_a_dell_is_refused() {
    let hpe = RedfishSim::start(SimConfig {
        tree: Some(tree_dir().join("../hpe-proliant-dl385-gen10plus-v2-ilo5-fw2.72")),
        credentials: Some(("root".into(), "calvin".into())),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut registry = Registry::new();
    bmc_idrac::register(&mut registry);
    let creds = Credentials::new("root", "calvin").unwrap();
    let address = BmcAddress::parse(&format!(
        "idrac-virtualmedia+http://{}/redfish/v1/Systems/1",
        hpe.addr()
    ))
    .unwrap();
    let err = registry
        .connect(&address, &creds, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::InvalidRequest(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("not as a Dell iDRAC") && text.contains("HPE"),
        "{text}"
    );
}

/// The hooks follow the links the iDRAC advertises, not paths of their own: a manager
/// that does not advertise `DellLCService` gets an error naming what is missing (and no
/// request to a guessed path).
#[tokio::test]
async fn the_lifecycle_controller_is_found_by_the_link_the_manager_advertises() {
    let mut manager = read_tree(MANAGER);
    manager["Links"]["Oem"]["Dell"]
        .as_object_mut()
        .unwrap()
        .remove("DellLCService");
    let sim = sim(vec![(MANAGER.into(), manager)]).await;
    let d = connect(&sim).await;
    let before = sim.requests();
    let err = d
        .set_boot_override(&BootOverride::once(BootDevice::Pxe))
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("DellLCService"), "{err}");
    assert_eq!(sim.requests(), before, "nothing was sent to a guessed path");
    // With the link, readiness is read at the action target DellLCService advertises.
    let sim = self::sim(Vec::new()).await;
    let d = connect(&sim).await;
    assert!(bmc_idrac::lifecycle_controller_ready(&d).await.unwrap());
}
