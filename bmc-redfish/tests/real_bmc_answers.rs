//! Real BMCs' ways of answering, one class per test, on recorded trees altered in the
//! test (the recorded files stay as captured) and served by bmc-sim in its strict
//! default: a resource only at the path it was recorded at or its own `@odata.id`, an
//! action only at its advertised `target`.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::time::Duration;

use bmc_core::verified::{Deadline, PollPolicy, ensure_power_with};
use bmc_core::{
    BmcAddress, BmcDriver, BmcError, BootDevice, BootOverride, ConnectOptions, Credentials,
    MediaKind, PowerAction, PowerState,
};
use bmc_redfish::RedfishDriver;
use bmc_sim::{Fault, RedfishSim, SimConfig};
use serde_json::{Value, json};

const ISO: &str = "http://127.0.0.1:9/images/agent.iso";

/// A recorded resource, read from the developer fixtures (to be altered by the test).
fn recorded(tree: &str, path: &str) -> Value {
    let file = common::fixtures_dir()
        .join(tree)
        .join(path.trim_start_matches('/'))
        .join("index.json");
    serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
}

async fn serve(tree: &str, overrides: Vec<(String, Value)>) -> (RedfishSim, RedfishDriver) {
    let sim = RedfishSim::start(SimConfig {
        tree: Some(common::fixtures_dir().join(tree)),
        credentials: Some(("admin".into(), "password".into())),
        overrides,
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

/// POSTs `body` to `path` on the simulator as another client would: the status.
async fn raw_post(sim: &RedfishSim, path: &str, body: &Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{}{path}", sim.url()))
        .basic_auth("admin", Some("password"))
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

const SUPERMICRO: &str = "supermicro-sys-821ge-tnhr-x13-bmc-fw11.01.01";
const SM_SYSTEM: &str = "/redfish/v1/Systems/1";
const SM_CD: &str = "/redfish/v1/Managers/1/VirtualMedia/VirtualMedia1";

/// Action targets advertised with a trailing slash are POSTed to exactly as advertised:
/// power and virtual media work, where a client that drops the slash gets 404.
#[tokio::test]
async fn action_targets_with_a_trailing_slash_are_posted_as_advertised() {
    let mut system = recorded(SUPERMICRO, SM_SYSTEM);
    let reset = format!("{SM_SYSTEM}/Actions/ComputerSystem.Reset/");
    system["Actions"]["#ComputerSystem.Reset"]["target"] = json!(reset);
    let mut slot = recorded(SUPERMICRO, SM_CD);
    let insert = format!("{SM_CD}/Actions/VirtualMedia.InsertMedia/");
    let eject = format!("{SM_CD}/Actions/VirtualMedia.EjectMedia/");
    slot["Actions"]["#VirtualMedia.InsertMedia"]["target"] = json!(insert);
    slot["Actions"]["#VirtualMedia.EjectMedia"]["target"] = json!(eject);
    let (sim, d) = serve(
        SUPERMICRO,
        vec![(SM_SYSTEM.into(), system), (SM_CD.into(), slot)],
    )
    .await;

    // The simulator holds to the advertised spelling, as the BMC does.
    let without_slash = reset.trim_end_matches('/');
    assert_eq!(
        raw_post(&sim, without_slash, &json!({"ResetType": "On"})).await,
        404
    );

    let policy = PollPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(20),
    };
    for action in [PowerAction::On, PowerAction::Off] {
        let out = ensure_power_with(&d, action, Deadline::after(Duration::from_secs(5)), policy)
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"));
        assert_eq!(out.final_state, action.target_state());
    }
    d.insert_media(&MediaKind::Cd, ISO).await.unwrap();
    assert_eq!(sim.resource(SM_CD).unwrap()["Image"], ISO);
    d.eject_media(&MediaKind::Cd).await.unwrap();
    assert_eq!(sim.resource(SM_CD).unwrap()["Inserted"], false);
    assert_eq!(d.power_state().await.unwrap(), PowerState::Off);
}

const DMTF: &str = "dmtf-public-rackmount1";
const DMTF_SYSTEM: &str = "/redfish/v1/Systems/437XR1138R2";

fn error_object(id: &str) -> Value {
    json!({"error": {"code": "Base.1.8.GeneralError",
        "message": "A general error has occurred. See ExtendedInfo for more information.",
        "@Message.ExtendedInfo": [{"MessageId": id, "Message": "Invalid URI"}]}})
}

/// A 2xx answer whose body is a Redfish error object is that error, with its message id,
/// never the resource; the inventory around it is still read.
#[tokio::test]
async fn an_error_object_in_a_2xx_answer_is_the_error_it_carries() {
    let (sim, d) = serve(DMTF, Vec::new()).await;
    let memory = format!("{DMTF_SYSTEM}/Memory");
    sim.inject_at(
        &memory.to_ascii_lowercase(),
        Fault::Answer {
            status: 200,
            body: error_object("Base.1.8.ResourceMissingAtURI"),
        },
    );
    let err = d.client().get(&memory).await.unwrap_err();
    assert!(matches!(err, BmcError::NotFound { .. }), "{err:?}");
    assert_eq!(err.messages()[0].id, "Base.1.8.ResourceMissingAtURI");
    sim.inject_at(
        &memory.to_ascii_lowercase(),
        Fault::Answer {
            status: 201,
            body: error_object("Base.1.8.InternalError"),
        },
    );
    let err = d.client().get(&memory).await.unwrap_err();
    assert!(
        matches!(&err, BmcError::Rejected { status: Some(201), messages, .. }
            if messages[0].id == "Base.1.8.InternalError"),
        "{err:?}"
    );
    // In an inventory: the memory collection answers an error with 200; no DIMM is made
    // of it, and the rest is read.
    sim.inject_at(
        &memory.to_ascii_lowercase(),
        Fault::Answer {
            status: 200,
            body: error_object("Base.1.8.ResourceMissingAtURI"),
        },
    );
    let inventory = d.inventory().await.unwrap();
    assert!(inventory.memory.is_empty(), "{:?}", inventory.memory);
    assert!(!inventory.cpus.is_empty());
}

/// The DMTF system with a `Storage` collection added, whose links are as the test says.
fn with_storage(
    members: Vec<Value>,
    storage_1: Value,
    more: Vec<(String, Value)>,
) -> Vec<(String, Value)> {
    let mut system = recorded(DMTF, DMTF_SYSTEM);
    system["Storage"] = json!({"@odata.id": format!("{DMTF_SYSTEM}/Storage")});
    let mut out = vec![
        (DMTF_SYSTEM.to_string(), system),
        (
            format!("{DMTF_SYSTEM}/Storage"),
            json!({"@odata.id": format!("{DMTF_SYSTEM}/Storage"), "Name": "Storage",
                   "Members@odata.count": members.len(), "Members": members}),
        ),
        (format!("{DMTF_SYSTEM}/Storage/1"), storage_1),
    ];
    out.extend(more);
    out
}

fn drive(path: &str, id: &str, serial: &str) -> Value {
    json!({"@odata.id": path, "@odata.type": "#Drive.v1_9_0.Drive", "Id": id, "Name": id,
           "SerialNumber": serial, "CapacityBytes": 960_197_124_096u64, "MediaType": "SSD"})
}

/// A member or drive link repeated (the same spelling, another case, a trailing slash,
/// from two controllers) is one resource, read once and counted once.
#[tokio::test]
async fn a_repeated_link_is_one_resource() {
    let storage = format!("{DMTF_SYSTEM}/Storage/1");
    let disk = format!("{storage}/Drives/0");
    let mut links = vec![json!({"@odata.id": disk}); 16];
    links.push(json!({"@odata.id": format!("{disk}/")}));
    links.push(json!({"@odata.id": disk.to_ascii_lowercase()}));
    let overrides = with_storage(
        vec![json!({"@odata.id": storage}); 16],
        json!({"@odata.id": storage, "Id": "1", "Name": "Storage 1", "Drives": links}),
        vec![(disk.clone(), drive(&disk, "0", "SN-0"))],
    );
    let (sim, d) = serve(DMTF, overrides).await;
    let before = sim.requests();
    let inventory = d.inventory().await.unwrap();
    assert_eq!(inventory.disks.len(), 1, "{:?}", inventory.disks);
    assert_eq!(inventory.disks[0].serial_number.as_deref(), Some("SN-0"));
    // Each storage and drive read once: 16 storages of 18 links each, followed one by
    // one, would be hundreds of requests.
    let reads = sim.requests() - before;
    assert!(reads < 40, "{reads} requests for one inventory");
}

/// `Members: null`, a collection the system links to but the BMC does not serve, an id
/// with an encoded space, and a drive whose body names another resource: the inventory
/// reads what is there.
#[tokio::test]
async fn odd_collections_and_ids_are_read_as_they_are() {
    let storage = format!("{DMTF_SYSTEM}/Storage/1");
    let spaced = format!("{storage}/Drives/Disk%201");
    let elsewhere = format!("{storage}/Drives/2");
    let mut overrides = with_storage(
        vec![json!({"@odata.id": storage})],
        json!({"@odata.id": storage, "Id": "1", "Drives": [
            {"@odata.id": spaced}, {"@odata.id": elsewhere}]}),
        vec![
            (spaced.clone(), drive(&spaced, "Disk 1", "SN-SPACE")),
            // Served at .../Drives/2, but its body says it is .../Drives/3.
            (
                elsewhere.clone(),
                drive(&format!("{storage}/Drives/3"), "3", "SN-ELSEWHERE"),
            ),
            (
                format!("{DMTF_SYSTEM}/Memory"),
                json!({"@odata.id": format!("{DMTF_SYSTEM}/Memory"), "Members": null}),
            ),
            (format!("{DMTF_SYSTEM}/EthernetInterfaces"), Value::Null),
        ],
    );
    overrides.push((format!("{DMTF_SYSTEM}/Processors/CPU2"), Value::Null));
    let (_sim, d) = serve(DMTF, overrides).await;
    let inventory = d.inventory().await.unwrap();
    assert!(inventory.memory.is_empty());
    assert!(inventory.nics.is_empty());
    assert!(!inventory.cpus.is_empty(), "the CPUs still there are read");
    let mut serials: Vec<_> = inventory
        .disks
        .iter()
        .filter_map(|d| d.serial_number.clone())
        .collect();
    serials.sort();
    assert_eq!(serials, ["SN-ELSEWHERE", "SN-SPACE"]);
    assert!(
        inventory.disks.iter().any(|d| d.id == "Disk 1"),
        "{:?}",
        inventory.disks
    );
}

/// `Cd` and `UsbCd` are one device in the capabilities; a BMC that offers the virtual CD
/// only as `UsbCd` is booted from it by that name.
#[tokio::test]
async fn cd_and_usb_cd_are_one_boot_device() {
    let mut system = recorded(DMTF, DMTF_SYSTEM);
    system["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"] =
        json!(["None", "Pxe", "Cd", "UsbCd", "Hdd", "Cd"]);
    let (_sim, d) = serve(DMTF, vec![(DMTF_SYSTEM.into(), system.clone())]).await;
    let devices = d.capabilities().boot_devices;
    assert_eq!(
        devices.iter().filter(|b| **b == BootDevice::Cd).count(),
        1,
        "{devices:?}"
    );

    system["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"] =
        json!(["None", "Pxe", "UsbCd", "Hdd"]);
    let (sim, d) = serve(DMTF, vec![(DMTF_SYSTEM.into(), system)]).await;
    assert!(d.capabilities().can_boot_from(&BootDevice::Cd));
    d.set_boot_override(&BootOverride::once(BootDevice::Cd))
        .await
        .unwrap();
    assert_eq!(
        sim.resource(DMTF_SYSTEM).unwrap()["Boot"]["BootSourceOverrideTarget"],
        "UsbCd"
    );
    assert_eq!(
        d.boot_override().await.unwrap().device,
        Some(BootDevice::Cd)
    );
}
