//! The Redfish driver with HPE's hooks against bmc-sim serving the recorded iLO 5 tree (DL385 Gen10 Plus v2,
//! firmware 2.72): virtual-media boot with BootOnNextServerReset, the OEM insert/eject
//! fallbacks, the power button, the iLO not-ready retries, recorded error bodies and the
//! registry.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bmc_core::verified::{Deadline, PollPolicy, boot_from_virtual_media_with};
use bmc_core::{
    BmcAddress, BmcDriver, BmcError, BootDevice, BootMode, BootOverride, BootPersistence,
    ConnectOptions, Credentials, MediaKind, PowerAction, PowerState, Registry,
};
use bmc_redfish::RedfishDriver;
use bmc_sim::vendor::BootSource;
use bmc_sim::{Fault, RedfishSim, SimConfig};

const TREE: &str = "hpe-proliant-dl385-gen10plus-v2-ilo5-fw2.72";
const SYSTEM: &str = "/redfish/v1/Systems/1";
const CD_SLOT: &str = "/redfish/v1/Managers/1/VirtualMedia/2";
const ISO: &str = "http://127.0.0.1:9/images/agent.iso";

fn tree_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/redfish")
        .join(TREE)
}

async fn sim() -> RedfishSim {
    RedfishSim::start(SimConfig {
        tree: Some(tree_dir()),
        credentials: Some(("Administrator".into(), "s3cret".into())),
        power_delay: Duration::from_millis(40),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn address(sim: &RedfishSim, scheme: &str) -> BmcAddress {
    BmcAddress::parse(&format!("{scheme}+http://{}{SYSTEM}", sim.addr())).unwrap()
}

async fn connect(sim: &RedfishSim) -> RedfishDriver {
    let creds = Credentials::new("Administrator", "s3cret").unwrap();
    bmc_ilo::connect(
        &address(sim, "ilo5-virtualmedia"),
        &creds,
        &ConnectOptions::default(),
    )
    .await
    .unwrap()
}

async fn wait_for(d: &RedfishDriver, state: PowerState) {
    for _ in 0..100 {
        if d.power_state().await.unwrap() == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never reached {state}");
}

fn boot_next(sim: &RedfishSim) -> serde_json::Value {
    sim.resource(CD_SLOT).unwrap()["Oem"]["Hpe"]["BootOnNextServerReset"].clone()
}

#[tokio::test]
async fn virtual_cd_boot_uses_slot_2_and_boot_on_next_server_reset() {
    let sim = sim().await;
    let d = connect(&sim).await;
    assert_eq!(d.quirks().profile, "hpe-ilo5");
    d.power(PowerAction::Off).await.unwrap();
    wait_for(&d, PowerState::Off).await;
    d.insert_media(&MediaKind::Cd, ISO).await.unwrap();
    d.set_boot_override(&BootOverride::once(BootDevice::Cd))
        .await
        .unwrap();
    assert_eq!(boot_next(&sim), true, "set on the CD slot before the reset");
    d.power(PowerAction::On).await.unwrap();
    assert_eq!(
        sim.boots(SYSTEM),
        [BootSource::VirtualCd {
            slot: "/redfish/v1/managers/1/virtualmedia/2".into(),
            image: ISO.into()
        }]
    );
    assert_eq!(boot_next(&sim), false, "consumed by the boot");

    // The whole verified flow, with media already in the slot (eject first).
    let out = boot_from_virtual_media_with(
        &d,
        "http://127.0.0.1:9/images/other.iso",
        BootMode::Uefi,
        Deadline::after(Duration::from_secs(10)),
        PollPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(50),
        },
    )
    .await
    .unwrap();
    assert_eq!(out.slot_id, "2");
    assert!(out.ejected);
    assert_eq!(
        sim.boots(SYSTEM).last(),
        Some(&BootSource::VirtualCd {
            slot: "/redfish/v1/managers/1/virtualmedia/2".into(),
            image: "http://127.0.0.1:9/images/other.iso".into()
        })
    );
    d.close().await.unwrap();
}

#[tokio::test]
async fn oem_insert_and_eject_stand_in_when_the_standard_actions_fail() {
    let sim = sim().await;
    let d = connect(&sim).await;
    let refusal = || Fault::Message {
        status: 400,
        id: "iLO.2.14.ActionNotSupported".into(),
        text: "The action is not supported.".into(),
    };
    sim.inject_at("virtualmedia.insertmedia", refusal());
    d.insert_media(&MediaKind::Cd, ISO).await.unwrap();
    let slot = sim.resource(CD_SLOT).unwrap();
    assert_eq!(slot["Inserted"], true);
    assert_eq!(slot["Image"], ISO);
    sim.inject_at("virtualmedia.ejectmedia", refusal());
    d.eject_media(&MediaKind::Cd).await.unwrap();
    assert_eq!(sim.resource(CD_SLOT).unwrap()["Inserted"], false);
    // An empty slot is not ejected at all (iLO would refuse): no request fails.
    let before = sim.requests();
    d.eject_media(&MediaKind::Cd).await.unwrap();
    assert!(sim.requests() - before <= 1, "at most the read of the slot");
}

#[tokio::test]
async fn soft_off_presses_the_power_button_only_when_on() {
    let sim = sim().await;
    let d = connect(&sim).await;
    wait_for(&d, PowerState::On).await;
    // The standard reset would fail now: success proves the button was used.
    sim.inject_at("computersystem.reset", Fault::Status(500));
    d.power(PowerAction::SoftOff).await.unwrap();
    wait_for(&d, PowerState::Off).await;
    // Off already: a press would switch it on, so nothing is pressed.
    d.power(PowerAction::SoftOff).await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(d.power_state().await.unwrap(), PowerState::Off);
    // The fault meant for a standard reset is still waiting: no reset was sent so far.
    let err = d.power(PowerAction::On).await.unwrap_err();
    assert!(err.to_string().contains("injected fault"), "{err}");
    // On when on sends nothing (iLO answers InvalidOperationForSystemState).
    d.power(PowerAction::On).await.unwrap();
    wait_for(&d, PowerState::On).await;
    let before = sim.requests();
    d.power(PowerAction::On).await.unwrap();
    assert_eq!(sim.requests() - before, 1, "one read of the power state");
}

#[tokio::test]
async fn a_boot_change_during_post_is_retried() {
    let sim = sim().await;
    let d = connect(&sim).await;
    sim.inject_at(
        "/redfish/v1/systems/1",
        Fault::Message {
            status: 400,
            id: "iLO.2.14.UnableToModifyDuringSystemPOST".into(),
            text: "The value for the property cannot be changed while the server is in POST."
                .into(),
        },
    );
    d.set_boot_override(&BootOverride {
        device: BootDevice::Pxe,
        persistence: BootPersistence::Once,
        mode: None,
    })
    .await
    .unwrap();
    assert_eq!(
        d.boot_override().await.unwrap().device,
        Some(BootDevice::Pxe)
    );
}

#[tokio::test]
async fn recorded_ilo_error_bodies_keep_their_message_ids() {
    let sim = sim().await;
    let d = connect(&sim).await;
    let err = d
        .client()
        .get("/redfish/v1/Systems/1/USBDevices/1")
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::NotFound { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "not found: /redfish/v1/Systems/1/USBDevices/1 (Base.1.4.ResourceMissingAtURI: Invalid URI)"
    );
    let err = d
        .client()
        .get("/redfish/v1/SessionService/Sessions0000000066be767add7686c8/")
        .await
        .unwrap_err();
    assert_eq!(err.messages()[0].id, "Base.1.4.ResourceMissingAtURI");
}

#[tokio::test]
async fn registered_for_both_ilo_schemes_with_power_boot_and_inventory() {
    let sim = sim().await;
    let mut registry = Registry::new();
    bmc_ilo::register(&mut registry);
    let creds = Credentials::new("Administrator", "s3cret").unwrap();
    for scheme in ["ilo5-redfish", "ilo5-virtualmedia"] {
        let bmc = registry
            .connect(&address(&sim, scheme), &creds, &ConnectOptions::default())
            .await
            .unwrap();
        assert_eq!(bmc.driver_name(), "ilo");
        bmc.set_boot_override(&BootOverride {
            device: BootDevice::Disk,
            persistence: BootPersistence::Persistent,
            mode: Some(BootMode::Uefi),
        })
        .await
        .unwrap();
        let boot = bmc.boot_override().await.unwrap();
        assert_eq!(boot.device, Some(BootDevice::Disk));
        let inv = bmc.inventory().await.unwrap();
        assert_eq!(inv.system.manufacturer.as_deref(), Some("HPE"));
        assert!(!inv.cpus.is_empty() && !inv.memory.is_empty());
        assert!(
            inv.firmware.iter().any(|f| f.version.contains("2.72")),
            "{:?}",
            inv.firmware
        );
        bmc.close().await.unwrap();
    }
}

/// The HPE hooks are chosen by the BMC's identity: the DL385 behind a generic
/// `redfish-virtualmedia` address gets `BootOnNextServerReset` on its CD slot too.
#[tokio::test]
async fn an_hpe_behind_a_generic_redfish_address_gets_the_ilo_hooks() {
    let sim = sim().await;
    let mut registry = Registry::new();
    bmc_redfish::register(&mut registry);
    bmc_ilo::register(&mut registry);
    let creds = Credentials::new("Administrator", "s3cret").unwrap();
    let bmc = registry
        .connect(
            &address(&sim, "redfish-virtualmedia"),
            &creds,
            &ConnectOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(bmc.driver_name(), "ilo");
    bmc.power(PowerAction::Off).await.unwrap();
    bmc.insert_media(&MediaKind::Cd, ISO).await.unwrap();
    bmc.set_boot_override(&BootOverride::once(BootDevice::Cd))
        .await
        .unwrap();
    assert_eq!(boot_next(&sim), true, "set by the iLO hooks");
    bmc.close().await.unwrap();
}
