//! Loading a recorded Redfish tree (`<dir>/redfish/v1/.../index.json`), or building the
//! small built-in one, into a map from normalised path to JSON.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};

/// The lookup key of a path: no trailing slash, lower case (BMCs link case-insensitively).
pub fn key(path: &str) -> String {
    let p = path.split(['?', '#']).next().unwrap_or_default();
    p.trim_end_matches('/').to_ascii_lowercase()
}

/// Reads every `index.json` under `dir` into path → JSON. Files that are not JSON are
/// skipped and reported.
pub fn load_dir(dir: &Path) -> std::io::Result<(HashMap<String, Value>, Vec<String>)> {
    let mut out = HashMap::new();
    let mut skipped = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "index.json") {
                let rel = path
                    .parent()
                    .and_then(|p| p.strip_prefix(dir).ok())
                    .map(|p| format!("/{}", p.to_string_lossy().replace('\\', "/")))
                    .unwrap_or_default();
                match std::fs::read(&path).map(|b| serde_json::from_slice::<Value>(&b)) {
                    Ok(Ok(v)) => {
                        out.insert(key(&rel), v);
                    }
                    _ => skipped.push(rel),
                }
            }
        }
    }
    Ok((out, skipped))
}

/// A small, complete tree: one system with CD and USB slots under it, one manager, a
/// session service. Used when no recorded tree is given.
pub fn builtin() -> HashMap<String, Value> {
    let s = "/redfish/v1/Systems/1";
    let vm = format!("{s}/VirtualMedia");
    let slot = |id: &str, types: Value| {
        json!({
            "@odata.id": format!("{vm}/{id}"), "@odata.type": "#VirtualMedia.v1_6_0.VirtualMedia",
            "Id": id, "Name": format!("Virtual {id}"), "MediaTypes": types,
            "Image": "", "Inserted": false, "WriteProtected": true, "ConnectedVia": "NotConnected",
            "Actions": {
                "#VirtualMedia.InsertMedia": {"target": format!("{vm}/{id}/Actions/VirtualMedia.InsertMedia")},
                "#VirtualMedia.EjectMedia": {"target": format!("{vm}/{id}/Actions/VirtualMedia.EjectMedia")}
            }
        })
    };
    let entries = vec![
        (
            "/redfish/v1".to_string(),
            json!({
                "@odata.id": "/redfish/v1", "@odata.type": "#ServiceRoot.v1_15_0.ServiceRoot",
                "Id": "RootService", "Name": "bmc-sim", "RedfishVersion": "1.15.0", "Vendor": "bmc-sim",
                "Systems": {"@odata.id": "/redfish/v1/Systems"},
                "Managers": {"@odata.id": "/redfish/v1/Managers"},
                "SessionService": {"@odata.id": "/redfish/v1/SessionService"},
                "Links": {"Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}}
            }),
        ),
        (
            "/redfish/v1/Systems".to_string(),
            json!({
                "@odata.id": "/redfish/v1/Systems", "Name": "Systems",
                "Members": [{"@odata.id": s}], "Members@odata.count": 1
            }),
        ),
        (
            s.to_string(),
            json!({
                "@odata.id": s, "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem",
                "Id": "1", "Name": "sim-1", "Manufacturer": "bmc-sim", "Model": "Simulated Server",
                "SerialNumber": "SIM0001", "UUID": "5a1e0000-0000-4000-8000-000000000001",
                "BiosVersion": "1.0.0", "PowerState": "Off",
                "ProcessorSummary": {"Count": 2, "Model": "Simulated CPU"},
                "MemorySummary": {"TotalSystemMemoryGiB": 64},
                "Boot": {
                    "BootSourceOverrideTarget": "None", "BootSourceOverrideEnabled": "Disabled",
                    "BootSourceOverrideMode": "UEFI",
                    "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Cd", "Hdd", "BiosSetup", "UefiHttp"]
                },
                "Actions": {"#ComputerSystem.Reset": {
                    "target": format!("{s}/Actions/ComputerSystem.Reset"),
                    "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "GracefulShutdown", "ForceRestart", "PowerCycle"]
                }},
                "VirtualMedia": {"@odata.id": vm},
                "EthernetInterfaces": {"@odata.id": format!("{s}/EthernetInterfaces")},
                "Links": {"ManagedBy": [{"@odata.id": "/redfish/v1/Managers/1"}]}
            }),
        ),
        (
            format!("{s}/EthernetInterfaces"),
            json!({
                "@odata.id": format!("{s}/EthernetInterfaces"),
                "Members": [{"@odata.id": format!("{s}/EthernetInterfaces/1")}]
            }),
        ),
        (
            format!("{s}/EthernetInterfaces/1"),
            json!({
                "@odata.id": format!("{s}/EthernetInterfaces/1"), "Id": "1",
                "MACAddress": "52:54:00:00:00:01", "SpeedMbps": 25000, "LinkStatus": "LinkUp"
            }),
        ),
        (
            vm.clone(),
            json!({
                "@odata.id": vm, "Name": "Virtual Media",
                "Members": [{"@odata.id": format!("{vm}/Cd")}, {"@odata.id": format!("{vm}/Usb")}]
            }),
        ),
        (format!("{vm}/Cd"), slot("Cd", json!(["CD", "DVD"]))),
        (format!("{vm}/Usb"), slot("Usb", json!(["USBStick"]))),
        (
            "/redfish/v1/Managers".to_string(),
            json!({
                "@odata.id": "/redfish/v1/Managers", "Members": [{"@odata.id": "/redfish/v1/Managers/1"}]
            }),
        ),
        (
            "/redfish/v1/Managers/1".to_string(),
            json!({
                "@odata.id": "/redfish/v1/Managers/1", "Id": "1", "ManagerType": "BMC",
                "FirmwareVersion": "sim-1.0"
            }),
        ),
        (
            "/redfish/v1/SessionService".to_string(),
            json!({
                "@odata.id": "/redfish/v1/SessionService", "ServiceEnabled": true, "SessionTimeout": 1800,
                "Sessions": {"@odata.id": "/redfish/v1/SessionService/Sessions"}
            }),
        ),
        (
            "/redfish/v1/SessionService/Sessions".to_string(),
            json!({
                "@odata.id": "/redfish/v1/SessionService/Sessions", "Members": []
            }),
        ),
    ];
    entries.into_iter().map(|(k, v)| (key(&k), v)).collect()
}

/// Copies system `path` (and everything under it) `n - 1` more times as `<path>-2` …
/// `<path>-n`, and lists all copies in the Systems collection.
pub fn replicate_system(resources: &mut HashMap<String, Value>, system: &str, n: usize) {
    if n <= 1 {
        return;
    }
    let base = key(system);
    let originals: Vec<(String, Value)> = resources
        .iter()
        .filter(|(k, _)| *k == &base || k.starts_with(&format!("{base}/")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut members = vec![json!({"@odata.id": system})];
    for i in 2..=n {
        let new_path = format!("{system}-{i}");
        for (k, v) in &originals {
            let text = v.to_string().replace(system, &new_path);
            if let Ok(mut copy) = serde_json::from_str::<Value>(&text) {
                if k == &base {
                    copy["Id"] = json!(format!("{}-{i}", system.rsplit('/').next().unwrap_or("1")));
                }
                resources.insert(format!("{}{}", key(&new_path), &k[base.len()..]), copy);
            }
        }
        members.push(json!({"@odata.id": new_path}));
    }
    let collection = key("/redfish/v1/Systems");
    if let Some(c) = resources.get_mut(&collection) {
        c["Members@odata.count"] = json!(members.len());
        c["Members"] = Value::Array(members);
    }
}
