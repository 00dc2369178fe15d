//! The models on real error bodies, edge-case payloads and arbitrary JSON.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use bmc_core::BmcMessage;
use bmc_redfish::discovery::Fetch;
use bmc_redfish::model::*;
use common::{FixtureTree, TREES};
use proptest::prelude::*;
use serde_json::{Value, json};

#[tokio::test]
async fn real_error_bodies_surface_their_message_ids() {
    let dell = FixtureTree::new(TREES[1]);
    let body = dell
        .get_json("/redfish/v1/AccountService/ExternalAccountProviders")
        .await
        .unwrap();
    let e = ErrorBody::from_json(&body).unwrap();
    assert_eq!(e.code.as_deref(), Some("Base.1.8.GeneralError"));
    assert_eq!(
        e.all_messages(),
        [BmcMessage {
            id: "IDRAC.2.7.LIC501".into(),
            text: "A required license is missing or expired.".into()
        }]
    );
    let hpe = FixtureTree::new(TREES[2]);
    let body = hpe
        .get_json("/redfish/v1/Systems/1/USBDevices/1")
        .await
        .unwrap();
    let e = ErrorBody::from_json(&body).unwrap();
    assert_eq!(
        e.all_messages(),
        [BmcMessage {
            id: "Base.1.4.ResourceMissingAtURI".into(),
            // iLO sends no Message: its MessageArgs explain.
            text: "Invalid URI".into()
        }]
    );
    // A normal resource is not an error body.
    // An id-only entry borrows error.message when it explains something (sushy-emulator).
    let sushy = ErrorBody::from_json(&json!({"error": {"code": "Base.1.0.GeneralError",
        "message": "Failed fetching image from URL http://x/a.iso",
        "@Message.ExtendedInfo": [{"MessageId": "Base.1.0.GeneralError"}]}}))
    .unwrap();
    assert_eq!(
        sushy.all_messages()[0].text,
        "Failed fetching image from URL http://x/a.iso"
    );
    let root = hpe.get_json("/redfish/v1").await.unwrap();
    assert_eq!(ErrorBody::from_json(&root), None);
}

#[test]
fn odd_payloads_are_survived() {
    let c = Collection::from_json(&json!({"Members": null, "Members@odata.count": 3})).unwrap();
    assert!(c.members.is_empty());
    let c = Collection::from_json(&json!({"Members": [
        {"@odata.id": "/redfish/v1/Systems/1/"}, 7, {"id": "x"}, {"@odata.id": "/redfish/v1/Systems/2"},
        {"@odata.id": "/redfish/v1/systems/1"}, {"@odata.id": "/redfish/v1/Systems/2"}
    ]}))
    .unwrap();
    // Members as the BMC wrote them (trailing slash kept), each resource once.
    assert_eq!(
        c.members,
        ["/redfish/v1/Systems/1/", "/redfish/v1/Systems/2"]
    );
    assert_eq!((c.skipped, c.repeated), (2, 2));
    let c = Collection::from_json(&json!({"Name": "no members at all"})).unwrap();
    assert!(c.members.is_empty());
    // An error object is no collection.
    let e = Collection::from_json(&json!({"error": {"code": "Base.1.8.GeneralError",
        "@Message.ExtendedInfo": [{"MessageId": "Base.1.8.ResourceMissingAtURI"}]}}));
    assert!(e.is_err(), "{e:?}");

    let s = ComputerSystem::from_json(&json!({
        "@odata.id": "/redfish/v1/Systems/Self",
        "PowerState": 5,
        "Manufacturer": null,
        "Boot": {"BootSourceOverrideTarget": "UefiTarget", "BootSourceOverrideMode": null,
                 "BootSourceOverrideTarget@Redfish.AllowableValues": ["Pxe", 3, "Cd"]},
        "Actions": {"#ComputerSystem.Reset": {"target": "/redfish/v1/Systems/Self/Actions/ComputerSystem.Reset",
                    "ResetType@Redfish.AllowableValues": ["On", "GracefulShutdownGracefulRestart", "Off"]}},
        "MemorySummary": {"TotalSystemMemoryGiB": 2048.0},
        "Links": {"ManagedBy": [{"@odata.id": "/redfish/v1/Managers/bmc"}, null]}
    }))
    .unwrap();
    assert_eq!(s.id, "Self", "id from the path when Id is missing");
    assert_eq!(s.power_state, None);
    assert_eq!(s.manufacturer, None);
    assert_eq!(s.boot.target.as_deref(), Some("UefiTarget"));
    assert_eq!(s.boot.mode, None);
    assert_eq!(s.boot.target_allowable, ["Pxe", "Cd"]);
    assert_eq!(
        s.reset.unwrap().allowable,
        ["On", "GracefulShutdownGracefulRestart", "Off"],
        "unknown values kept"
    );
    assert_eq!(s.total_memory_gib, Some(2048.0));
    assert_eq!(s.managed_by, ["/redfish/v1/Managers/bmc"]);

    let vm =
        VirtualMedia::from_json(&json!({"Id": "RemovableDisk", "Image": "None", "MediaTypes": []}))
            .unwrap();
    assert_eq!(vm.image, None, "the string None means no image");
    assert!(vm.takes_usb());
    assert!(!vm.takes_cd());
    let vm = VirtualMedia::from_json(
        &json!({"Id": "1", "Name": "Virtual CD", "Image": "http://x/a.iso", "ConnectedVia": "URI"}),
    )
    .unwrap();
    assert!(vm.takes_cd(), "no MediaTypes: by name");
    assert!(vm.is_inserted(), "no Inserted: an image with a connection");

    for bad in [json!(null), json!([1, 2]), json!("x"), json!(1)] {
        assert!(ComputerSystem::from_json(&bad).is_err());
        assert!(Collection::from_json(&bad).is_err());
    }
    assert_eq!(
        ServiceRoot::from_json(&json!(["x"]))
            .unwrap_err()
            .to_string(),
        "expected a JSON object for ServiceRoot, got an array"
    );
}

#[test]
fn tasks_report_completion_and_messages() {
    let t = Task::from_json(&json!({"TaskState": "Exception", "TaskStatus": "Critical",
        "Messages": [{"MessageId": "IDRAC.2.8.SYS446", "Message": "Unable to complete the operation"}]})).unwrap();
    assert!(t.is_finished());
    assert!(!t.succeeded());
    assert_eq!(t.messages[0].id, "IDRAC.2.8.SYS446");
    let running = Task::from_json(&json!({"TaskState": "Running", "PercentComplete": 40})).unwrap();
    assert!(!running.is_finished());
    assert_eq!(running.percent, Some(40));
}

#[tokio::test]
async fn inventory_resources_of_every_tree_are_readable() {
    for tree_name in TREES {
        let tree = FixtureTree::new(tree_name);
        let d = bmc_redfish::discovery::discover(&tree, None).await.unwrap();
        let sys = &d.system;
        assert!(
            sys.manufacturer.is_some() || tree_name.starts_with("dmtf"),
            "{tree_name}"
        );
        let mut nics = 0;
        if let Some(p) = &sys.ethernet_interfaces {
            for m in Collection::from_json(&tree.get_json(p).await.unwrap())
                .unwrap()
                .members
            {
                if let Ok(v) = tree.get_json(&m).await {
                    let nic = EthernetInterface::from_json(&v).unwrap();
                    nics += usize::from(nic.mac.is_some());
                }
            }
        }
        assert!(nics > 0, "{tree_name}: no NIC with a MAC");
        let mut cpus = 0;
        if let Some(p) = &sys.processors {
            for m in Collection::from_json(&tree.get_json(p).await.unwrap())
                .unwrap()
                .members
            {
                if let Ok(v) = tree.get_json(&m).await {
                    cpus += usize::from(Processor::from_json(&v).unwrap().model.is_some());
                }
            }
        }
        assert!(cpus > 0, "{tree_name}: no processor with a model");
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just("On".to_string()),
            Just("/redfish/v1/Systems/1/".to_string()),
            Just("CD".to_string()),
            Just("".to_string()),
            Just("None".to_string()),
            ".{0,12}"
        ]
        .prop_map(Value::String),
    ];
    let keys = prop_oneof![
        Just("@odata.id"),
        Just("Members"),
        Just("Boot"),
        Just("Actions"),
        Just("#ComputerSystem.Reset"),
        Just("target"),
        Just("MediaTypes"),
        Just("Image"),
        Just("Inserted"),
        Just("Links"),
        Just("ManagedBy"),
        Just("error"),
        Just("@Message.ExtendedInfo"),
        Just("MessageId"),
        Just("Parameters"),
        Just("AllowableValues"),
        Just("Name"),
        Just("Id"),
        Just("PowerState"),
        Just("Messages"),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #[test]
    fn no_model_panics_on_any_json(v in arbitrary_json()) {
        let _ = ServiceRoot::from_json(&v);
        let _ = Collection::from_json(&v);
        let _ = ComputerSystem::from_json(&v);
        let _ = Manager::from_json(&v);
        let _ = VirtualMedia::from_json(&v).map(|m| (m.takes_cd(), m.takes_usb(), m.is_inserted()));
        let _ = ActionInfo::from_json(&v).map(|a| a.allowable("ResetType"));
        let _ = EthernetInterface::from_json(&v);
        let _ = Processor::from_json(&v);
        let _ = Memory::from_json(&v);
        let _ = Storage::from_json(&v);
        let _ = Drive::from_json(&v);
        let _ = SimpleStorage::from_json(&v);
        let _ = SessionService::from_json(&v);
        let _ = Bios::from_json(&v).map(|b| b.attribute("BootMode"));
        let _ = Task::from_json(&v).map(|t| t.succeeded());
        let _ = ErrorBody::from_json(&v).map(|e| e.all_messages());
        if let Some(s) = v.as_str() {
            let _ = bmc_redfish::path::request_path(s);
            let _ = bmc_redfish::path::last_segment(s);
        }
    }
}

#[tokio::test]
async fn bios_of_every_tree_that_has_one() {
    let mut with_settings = 0;
    for tree_name in TREES {
        let tree = FixtureTree::new(tree_name);
        let d = bmc_redfish::discovery::discover(&tree, None).await.unwrap();
        let Some(path) = &d.system.bios else { continue };
        let Ok(v) = tree.get_json(path).await else {
            continue;
        };
        let bios = Bios::from_json(&v).unwrap();
        assert!(!bios.attributes.is_empty(), "{tree_name}");
        with_settings += usize::from(bios.settings_object.is_some());
        let (name, _) = bios.attributes.iter().next().unwrap();
        assert!(bios.attribute(name).is_some());
    }
    assert!(with_settings >= 3, "most trees say where BIOS changes go");
}
