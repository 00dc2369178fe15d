//! Discovery over every recorded tree: the system, its reset types, managers, all
//! virtual-media slots (each once) and the CD slot Ironic would pick.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use bmc_redfish::discovery::{SlotLocation, complete, discover};
use common::{FixtureTree, TREES};

struct Expect {
    tree: &'static str,
    system: &'static str,
    managers: &'static [&'static str],
    reset_has: &'static [&'static str],
    slots: usize,
    cd: &'static str,
    usb: &'static str,
    cd_location: SlotLocation,
}

const EXPECT: [Expect; 5] = [
    Expect {
        tree: TREES[0],
        system: "/redfish/v1/Systems/437XR1138R2",
        managers: &["BMC"],
        reset_has: &[
            "On",
            "ForceOff",
            "GracefulShutdown",
            "ForceRestart",
            "PushPowerButton",
        ],
        slots: 2,
        cd: "/redfish/v1/Systems/437XR1138R2/VirtualMedia/CD1",
        usb: "/redfish/v1/Systems/437XR1138R2/VirtualMedia/Floppy1",
        cd_location: SlotLocation::System,
    },
    Expect {
        tree: TREES[1],
        system: "/redfish/v1/Systems/System.Embedded.1",
        managers: &["iDRAC.Embedded.1"],
        reset_has: &["On", "ForceOff", "PowerCycle", "GracefulShutdown"],
        slots: 4,
        cd: "/redfish/v1/Systems/System.Embedded.1/VirtualMedia/1",
        usb: "/redfish/v1/Systems/System.Embedded.1/VirtualMedia/2",
        cd_location: SlotLocation::System,
    },
    Expect {
        tree: TREES[2],
        system: "/redfish/v1/Systems/1",
        managers: &["1"],
        reset_has: &["On", "ForceOff", "GracefulShutdown", "PushPowerButton"],
        slots: 2,
        cd: "/redfish/v1/Managers/1/VirtualMedia/2",
        usb: "/redfish/v1/Managers/1/VirtualMedia/1",
        cd_location: SlotLocation::Manager,
    },
    Expect {
        tree: TREES[3],
        system: "/redfish/v1/Systems/1",
        managers: &["1"],
        reset_has: &["On", "ForceOff", "GracefulShutdown", "ForceOn"],
        slots: 20,
        cd: "/redfish/v1/Systems/1/VirtualMedia/EXT1",
        usb: "/redfish/v1/Systems/1/VirtualMedia/EXT2",
        cd_location: SlotLocation::System,
    },
    Expect {
        tree: TREES[4],
        system: "/redfish/v1/Systems/1",
        managers: &["1"],
        reset_has: &["On", "ForceOff", "PowerCycle", "ForceRestart"],
        slots: 3,
        cd: "/redfish/v1/Managers/1/VirtualMedia/VirtualMedia1",
        usb: "/redfish/v1/Managers/1/VirtualMedia/VirtualMedia2",
        cd_location: SlotLocation::System,
    },
];

#[tokio::test]
async fn discovers_every_tree_without_a_system_path() {
    for e in &EXPECT {
        let tree = FixtureTree::new(e.tree);
        let mut d = discover(&tree, None)
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", e.tree));
        // Discovery stops at the first CD slot; the rest is read on demand.
        assert_eq!(d.cd().unwrap().path, e.cd, "{}", e.tree);
        assert!(d.unread_slots.len() < e.slots, "{}", e.tree);
        complete(&tree, &mut d).await;
        assert_eq!(d.system_path, e.system, "{}", e.tree);
        let managers: Vec<&str> = d.managers.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(managers, e.managers, "{}", e.tree);
        for r in e.reset_has {
            assert!(
                d.reset_types.iter().any(|t| t == r),
                "{}: {r} missing from {:?}",
                e.tree,
                d.reset_types
            );
        }
        let paths: Vec<&str> = d.slots.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(d.slots.len(), e.slots, "{}: {paths:?}", e.tree);
        let cd = d.cd().unwrap();
        assert_eq!(cd.path, e.cd, "{}", e.tree);
        assert_eq!(cd.location, e.cd_location, "{}", e.tree);
        assert_eq!(d.usb().unwrap().path, e.usb, "{}", e.tree);
        // Each slot once, whatever the links looked like.
        let unique: std::collections::HashSet<String> =
            paths.iter().map(|p| p.to_ascii_lowercase()).collect();
        assert_eq!(unique.len(), paths.len(), "{}", e.tree);
        assert!(
            d.system.boot.target_allowable.iter().any(|t| t == "Cd"),
            "{}",
            e.tree
        );
    }
}

#[tokio::test]
async fn a_system_path_in_the_address_is_used_as_given_even_with_a_trailing_slash() {
    let tree = FixtureTree::new(TREES[1]);
    let d = discover(&tree, Some("/redfish/v1/Systems/System.Embedded.1/"))
        .await
        .unwrap();
    assert_eq!(d.system.id, "System.Embedded.1");
    let requests = tree.requests.lock().unwrap();
    assert!(
        !requests.iter().any(|r| r == "/redfish/v1/Systems"),
        "no need to list systems: {requests:?}"
    );
}

#[tokio::test]
async fn a_wrong_system_path_is_not_found() {
    let tree = FixtureTree::new(TREES[2]);
    let err = discover(&tree, Some("/redfish/v1/Systems/9"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, bmc_core::BmcError::NotFound { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn dmtf_slots_report_their_inserted_media() {
    let tree = FixtureTree::new(TREES[0]);
    let d = discover(&tree, None).await.unwrap();
    let cd = &d.cd().unwrap().media;
    assert!(cd.is_inserted());
    assert!(cd.image.is_some());
    assert!(
        cd.insert.is_none(),
        "the DMTF mockup has no actions: PATCH is the way"
    );
}

#[tokio::test]
async fn supermicro_reset_types_come_from_action_info_and_the_shared_collection_is_read_once() {
    let tree = FixtureTree::new(TREES[4]);
    let d = discover(&tree, None).await.unwrap();
    assert_eq!(d.reset_types.len(), 8);
    let requests = tree.requests.lock().unwrap();
    let collection_reads = requests
        .iter()
        .filter(|r| *r == "/redfish/v1/Managers/1/VirtualMedia")
        .count();
    assert_eq!(collection_reads, 1, "{requests:?}");
}
