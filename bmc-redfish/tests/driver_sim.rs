//! `RedfishDriver` against bmc-sim serving each recorded tree: discovery, power, boot
//! once from CD, the verified virtual-media boot, eject, and inventory — one test per tree
//! and operation.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use bmc_core::verified::{Deadline, PollPolicy, boot_from_virtual_media_with, ensure_power_with};
use bmc_core::{
    BmcAddress, BmcDriver, BootDevice, BootMode, BootOverride, BootPersistence, ConnectOptions,
    Credentials, MediaKind, PowerAction, PowerState,
};
use bmc_redfish::RedfishDriver;
use bmc_sim::{RedfishSim, SimConfig};

const ISO: &str = "http://127.0.0.1:9/images/agent.iso";

fn fast() -> PollPolicy {
    PollPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(50),
    }
}

async fn start(tree: &str) -> (RedfishSim, RedfishDriver) {
    let sim = RedfishSim::start(SimConfig {
        tree: Some(common::fixtures_dir().join(tree)),
        credentials: Some(("admin".into(), "password".into())),
        power_delay: Duration::from_millis(60),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let address = BmcAddress::parse(&format!("redfish+http://{}", sim.addr())).unwrap();
    let creds = Credentials::new("admin", "password").unwrap();
    let driver = RedfishDriver::connect(&address, &creds, &ConnectOptions::default())
        .await
        .unwrap();
    (sim, driver)
}

async fn discovery(tree: &str) {
    let (_sim, d) = start(tree).await;
    let caps = d.capabilities();
    assert!(
        caps.can_power(PowerAction::On) && caps.can_power(PowerAction::Off),
        "{tree}: {caps:?}"
    );
    assert!(caps.can_boot_from(&BootDevice::Cd), "{tree}: {caps:?}");
    assert!(caps.can_insert(&MediaKind::Cd), "{tree}: {caps:?}");
    assert!(caps.inventory);
    d.close().await.unwrap();
}

async fn power(tree: &str) {
    let (sim, d) = start(tree).await;
    let deadline = || Deadline::after(Duration::from_secs(5));
    for action in [
        PowerAction::On,
        PowerAction::Off,
        PowerAction::On,
        PowerAction::Reset,
    ] {
        let out = ensure_power_with(&d, action, deadline(), fast())
            .await
            .unwrap_or_else(|e| panic!("{tree} {action}: {e}"));
        assert_eq!(out.final_state, action.target_state(), "{tree} {action}");
    }
    assert_eq!(d.power_state().await.unwrap(), PowerState::On);
    let system = d.discovery().system_path.clone();
    assert_eq!(sim.resource(&system).unwrap()["PowerState"], "On");
    d.close().await.unwrap();
}

async fn boot_once_cd(tree: &str) {
    let (sim, d) = start(tree).await;
    d.set_boot_override(&BootOverride::once(BootDevice::Cd).with_mode(BootMode::Uefi))
        .await
        .unwrap();
    let state = d.boot_override().await.unwrap();
    assert_eq!(state.device, Some(BootDevice::Cd), "{tree}");
    assert_eq!(state.persistence, Some(BootPersistence::Once), "{tree}");
    let system = sim.resource(&d.discovery().system_path).unwrap();
    assert_eq!(system["Boot"]["BootSourceOverrideTarget"], "Cd", "{tree}");
    // Without a mode asked for, the mode the BMC reports is sent back unchanged.
    let mode_before = system["Boot"]["BootSourceOverrideMode"].clone();
    d.set_boot_override(&BootOverride::persistent(BootDevice::Pxe))
        .await
        .unwrap();
    let system = sim.resource(&d.discovery().system_path).unwrap();
    assert_eq!(
        system["Boot"]["BootSourceOverrideMode"], mode_before,
        "{tree}"
    );
    assert_eq!(system["Boot"]["BootSourceOverrideTarget"], "Pxe", "{tree}");
    // A target the BMC does not list is refused before anything is sent.
    let before = d.client().request_count();
    let err = d
        .set_boot_override(&BootOverride::once(BootDevice::Other("Floppy9".into())))
        .await
        .unwrap_err();
    assert!(
        matches!(err, bmc_core::BmcError::InvalidRequest(_)),
        "{tree}: {err:?}"
    );
    assert_eq!(d.client().request_count(), before);
    d.close().await.unwrap();
}

async fn virtual_media_boot(tree: &str) {
    let (sim, d) = start(tree).await;
    let out = boot_from_virtual_media_with(
        &d,
        ISO,
        BootMode::Uefi,
        Deadline::after(Duration::from_secs(5)),
        fast(),
    )
    .await
    .unwrap_or_else(|e| panic!("{tree}: {e}"));
    let cd = d.discovery().cd().unwrap().path.clone();
    let slot = sim.resource(&cd).unwrap();
    assert_eq!(slot["Image"], ISO, "{tree}");
    assert_eq!(slot["Inserted"], true, "{tree}");
    assert_eq!(d.power_state().await.unwrap(), PowerState::On, "{tree}");
    assert!(
        matches!(out.power_action, PowerAction::On | PowerAction::Reset),
        "{tree}"
    );
    // Eject, and ejecting again (nothing inserted) is still success.
    d.eject_media(&MediaKind::Cd).await.unwrap();
    d.eject_media(&MediaKind::Cd).await.unwrap();
    assert_eq!(sim.resource(&cd).unwrap()["Inserted"], false, "{tree}");
    d.close().await.unwrap();
}

async fn inventory(tree: &str) {
    let (_sim, d) = start(tree).await;
    let inv = d.inventory().await.unwrap();
    assert!(
        inv.system.manufacturer.is_some() || tree.starts_with("dmtf"),
        "{tree}"
    );
    assert!(
        inv.nics.iter().any(|n| n.mac.is_some()),
        "{tree}: {:?}",
        inv.nics
    );
    assert!(!inv.cpus.is_empty(), "{tree}");
    assert!(!inv.firmware.is_empty(), "{tree}");
    d.close().await.unwrap();
}

macro_rules! per_tree {
    ($($module:ident => $index:expr),*) => {$(
        mod $module {
            use super::*;
            fn tree() -> &'static str { common::TREES[$index] }
            #[tokio::test] async fn discovery() { super::discovery(tree()).await }
            #[tokio::test] async fn power() { super::power(tree()).await }
            #[tokio::test] async fn boot_once_cd() { super::boot_once_cd(tree()).await }
            #[tokio::test] async fn virtual_media_boot() { super::virtual_media_boot(tree()).await }
            #[tokio::test] async fn inventory() { super::inventory(tree()).await }
        }
    )*};
}

per_tree!(dmtf => 0, dell => 1, hpe => 2, lenovo => 3, supermicro => 4);

#[tokio::test]
async fn warm_operations_cost_one_request() {
    let (_sim, d) = start(common::TREES[2]).await;
    // The system read at connect time is reused only for a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = d.client().request_count();
    d.power_state().await.unwrap();
    assert_eq!(
        d.client().request_count() - before,
        1,
        "a power poll is one GET"
    );
    let before = d.client().request_count();
    d.power(PowerAction::On).await.unwrap();
    assert_eq!(
        d.client().request_count() - before,
        1,
        "power on is one POST"
    );
}

#[tokio::test]
async fn a_wrong_password_fails_connect_with_one_login_attempt() {
    let sim = RedfishSim::start(SimConfig {
        tree: Some(common::fixtures_dir().join(common::TREES[1])),
        credentials: Some(("admin".into(), "password".into())),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let address = BmcAddress::parse(&format!("redfish+http://{}", sim.addr())).unwrap();
    let err = RedfishDriver::connect(
        &address,
        &Credentials::new("admin", "nope").unwrap(),
        &ConnectOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, bmc_core::BmcError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert_eq!(sim.requests(), 2, "service root, then one session POST");
}

#[tokio::test]
async fn an_expired_session_is_renewed_transparently() {
    let (sim, d) = start(common::TREES[4]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.inject([bmc_sim::Fault::ExpireSessions]);
    let before = sim.requests();
    assert!(d.power_state().await.is_ok());
    assert_eq!(sim.requests() - before, 4, "401, root, new session, replay");
    d.close().await.unwrap();
    assert_eq!(sim.sessions(), 0, "close deleted the session");
}

#[tokio::test]
async fn busy_then_success_is_retried_for_reads_and_garbage_is_a_protocol_error() {
    let (sim, d) = start(common::TREES[1]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.inject([bmc_sim::Fault::Busy, bmc_sim::Fault::Busy]);
    let before = sim.requests();
    assert!(d.power_state().await.is_ok(), "two 503s, then the answer");
    assert_eq!(sim.requests() - before, 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.inject([bmc_sim::Fault::Garbage]);
    let err = d.power_state().await.unwrap_err();
    assert!(
        matches!(err, bmc_core::BmcError::Protocol { .. }),
        "{err:?}"
    );
    sim.inject([bmc_sim::Fault::Status(500)]);
    let err = d.power(PowerAction::On).await.unwrap_err();
    assert!(
        matches!(
            err,
            bmc_core::BmcError::Rejected {
                status: Some(500),
                ..
            }
        ),
        "a write is not retried on a plain 500: {err:?}"
    );
}

#[tokio::test]
async fn a_dropped_connection_is_retried_for_reads() {
    let (sim, d) = start(common::TREES[3]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sim.inject([bmc_sim::Fault::Drop]);
    let before = sim.requests();
    assert!(d.power_state().await.is_ok());
    assert_eq!(sim.requests() - before, 2, "dropped once, then answered");
}
