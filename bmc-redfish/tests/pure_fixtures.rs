//! The pure parts of the driver on every recorded tree: the vocabulary mapping (what the
//! BMC can do, its boot override as bmc-core says it), the inventory read and mapped, and
//! the boot-override body built from what the tree allows.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use bmc_core::{BootDevice, BootOverride, MediaKind, PowerAction};
use bmc_redfish::discovery::{complete, discover};
use bmc_redfish::{inventory, ladders, vocabulary};
use common::{FixtureTree, TREES};

#[tokio::test]
async fn every_tree_maps_to_bmc_core_and_reads_a_full_inventory() {
    for tree in TREES {
        let fetch = FixtureTree::new(tree);
        let mut d = discover(&fetch, None).await.unwrap();
        complete(&fetch, &mut d).await;

        let caps = vocabulary::capabilities(&d);
        assert!(caps.can_power(PowerAction::On), "{tree}: {caps:?}");
        assert!(caps.can_power(PowerAction::Off), "{tree}: {caps:?}");
        assert!(caps.can_insert(&MediaKind::Cd), "{tree}: {caps:?}");
        assert!(
            caps.boot_devices.contains(&BootDevice::Pxe),
            "{tree}: {caps:?}"
        );
        let state = vocabulary::boot_override_state(&d.system.boot);
        assert!(state.mode.is_some(), "{tree}: {state:?}");

        let parts = inventory::read_parts(&fetch, d.system.clone(), &d.managers).await;
        let inv = inventory::to_inventory(parts);
        assert!(inv.system.manufacturer.is_some(), "{tree}");
        assert!(!inv.cpus.is_empty(), "{tree}: no CPU");
        assert!(
            inv.nics.iter().any(|n| n.mac.is_some()),
            "{tree}: no NIC with a MAC: {:?}",
            inv.nics
        );
        assert!(
            inv.firmware.iter().any(|f| f.component.starts_with("BMC ")),
            "{tree}: {:?}",
            inv.firmware
        );
        assert!(
            inv.cpus
                .iter()
                .all(|c| c.threads.is_some() || c.cores.is_some()),
            "{tree}: {:?}",
            inv.cpus
        );

        // The boot body: the tree's own mode sent back, and a target it does not list
        // refused before anything is sent.
        let body = ladders::boot_patch(
            &BootOverride::once(BootDevice::Pxe),
            &d.system.boot.target_allowable,
            d.system.boot.mode.as_deref(),
        )
        .unwrap();
        assert_eq!(body["Boot"]["BootSourceOverrideTarget"], "Pxe");
        assert_eq!(
            body["Boot"]["BootSourceOverrideMode"].as_str(),
            d.system.boot.mode.as_deref(),
            "{tree}"
        );
        if !d.system.boot.target_allowable.is_empty() {
            let odd = BootOverride::once(BootDevice::Other("Floppy9".into()));
            assert!(
                ladders::boot_patch(&odd, &d.system.boot.target_allowable, None).is_err(),
                "{tree}"
            );
        }
    }
}

#[tokio::test]
async fn the_recorded_vendors_inventories_say_what_their_hardware_is() {
    let read = |tree: &'static str| async move {
        let fetch = FixtureTree::new(tree);
        let d = discover(&fetch, None).await.unwrap();
        let mut d2 = d.clone();
        complete(&fetch, &mut d2).await;
        inventory::to_inventory(
            inventory::read_parts(&fetch, d2.system.clone(), &d2.managers).await,
        )
    };
    let dell = read(TREES[1]).await;
    assert_eq!(dell.system.manufacturer.as_deref(), Some("Dell Inc."));
    assert!(dell.firmware.iter().any(|f| f.version == "6.00.30.00"));
    assert!(!dell.disks.is_empty());
    let hpe = read(TREES[2]).await;
    assert_eq!(hpe.system.manufacturer.as_deref(), Some("HPE"));
    assert!(!hpe.memory.is_empty());
    assert!(hpe.memory.iter().all(|m| m.capacity_mib.unwrap_or(0) > 0));
}
