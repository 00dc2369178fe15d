//! Loading a recorded Redfish tree (`<dir>/redfish/v1/.../index.json`), or building the
//! small built-in one, into a map from normalised path to JSON; one simulated BMC's view
//! of a shared tree ([`Resources`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

/// The lookup key of a path: no trailing slash, lower case (BMCs link case-insensitively).
pub fn key(path: &str) -> String {
    let p = path.split(['?', '#']).next().unwrap_or_default();
    p.trim_end_matches('/').to_ascii_lowercase()
}

/// A loaded tree: each resource under its [`key`], and the path it was recorded at.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// Resources by [`key`].
    pub resources: HashMap<String, Value>,
    /// The path each resource was recorded at (case as captured), by [`key`]; none for
    /// resources made up in code.
    pub recorded: HashMap<String, String>,
    /// Every spelling by which the tree links to each resource (`@odata.id`s inside other
    /// resources), by [`key`]: a recording's links are URIs the BMC gave out, and the
    /// recorder followed them.
    pub linked: HashMap<String, Vec<String>>,
}

impl From<HashMap<String, Value>> for Tree {
    fn from(resources: HashMap<String, Value>) -> Tree {
        let linked = links_in(&resources);
        Tree {
            resources,
            recorded: HashMap::new(),
            linked,
        }
    }
}

/// Every `@odata.id` inside the resources (their own at the top level aside), by the
/// [`key`] of what it names.
pub(crate) fn links_in(resources: &HashMap<String, Value>) -> HashMap<String, Vec<String>> {
    fn walk(v: &Value, top: bool, out: &mut HashMap<String, Vec<String>>) {
        match v {
            Value::Object(o) => {
                for (name, value) in o {
                    match value {
                        Value::String(link) if name == "@odata.id" && !top => {
                            let spellings = out.entry(key(link)).or_default();
                            let link = link.split(['#', '?']).next().unwrap_or_default();
                            if !spellings.iter().any(|s| s == link) {
                                spellings.push(link.to_string());
                            }
                        }
                        other => walk(other, false, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, false, out)),
            _ => {}
        }
    }
    let mut out = HashMap::new();
    for v in resources.values() {
        walk(v, true, &mut out);
    }
    out
}

/// Reads every `index.json` under `dir` into a [`Tree`]. Files that are not JSON are
/// skipped and reported.
pub fn load_dir(dir: &Path) -> std::io::Result<(Tree, Vec<String>)> {
    let mut out = HashMap::new();
    let mut recorded = HashMap::new();
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
                        recorded.insert(key(&rel), rel);
                    }
                    _ => skipped.push(rel),
                }
            }
        }
    }
    let linked = links_in(&out);
    Ok((
        Tree {
            resources: out,
            recorded,
            linked,
        },
        skipped,
    ))
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
            "Image": null, "Inserted": false, "WriteProtected": true, "ConnectedVia": "NotConnected",
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
                "AccountService": {"@odata.id": "/redfish/v1/AccountService"},
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
    let mut entries = entries;
    // The account service with the predefined roles every service has.
    let roles = "/redfish/v1/AccountService/Roles";
    entries.push((
        "/redfish/v1/AccountService".to_string(),
        json!({
            "@odata.id": "/redfish/v1/AccountService", "@odata.type": "#AccountService.v1_5_0.AccountService",
            "Id": "AccountService", "Name": "Account Service", "ServiceEnabled": true,
            "Accounts": {"@odata.id": "/redfish/v1/AccountService/Accounts"},
            "Roles": {"@odata.id": roles}
        }),
    ));
    entries.push((
        "/redfish/v1/AccountService/Accounts".to_string(),
        json!({
            "@odata.id": "/redfish/v1/AccountService/Accounts",
            "@odata.type": "#ManagerAccountCollection.ManagerAccountCollection",
            "Name": "Accounts", "Members": [], "Members@odata.count": 0
        }),
    ));
    let predefined = [
        (
            "Administrator",
            vec![
                "Login",
                "ConfigureManager",
                "ConfigureUsers",
                "ConfigureSelf",
                "ConfigureComponents",
            ],
        ),
        (
            "Operator",
            vec!["Login", "ConfigureSelf", "ConfigureComponents"],
        ),
        ("ReadOnly", vec!["Login", "ConfigureSelf"]),
    ];
    entries.push((
        roles.to_string(),
        json!({
            "@odata.id": roles, "@odata.type": "#RoleCollection.RoleCollection", "Name": "Roles",
            "Members": predefined.iter().map(|(id, _)| json!({"@odata.id": format!("{roles}/{id}")})).collect::<Vec<_>>(),
            "Members@odata.count": predefined.len()
        }),
    ));
    for (id, privileges) in predefined {
        entries.push((
            format!("{roles}/{id}"),
            json!({
                "@odata.id": format!("{roles}/{id}"), "@odata.type": "#Role.v1_2_0.Role",
                "Id": id, "Name": format!("{id} role"), "RoleId": id, "IsPredefined": true,
                "AssignedPrivileges": privileges
            }),
        ));
    }
    // What every Redfish resource carries: a type, a name, a collection's count.
    let types = [
        (
            "/redfish/v1/Systems",
            "#ComputerSystemCollection.ComputerSystemCollection",
        ),
        (
            "/EthernetInterfaces",
            "#EthernetInterfaceCollection.EthernetInterfaceCollection",
        ),
        (
            "/EthernetInterfaces/1",
            "#EthernetInterface.v1_6_0.EthernetInterface",
        ),
        (
            "/VirtualMedia",
            "#VirtualMediaCollection.VirtualMediaCollection",
        ),
        (
            "/redfish/v1/Managers",
            "#ManagerCollection.ManagerCollection",
        ),
        ("/redfish/v1/Managers/1", "#Manager.v1_10_0.Manager"),
        (
            "/redfish/v1/SessionService",
            "#SessionService.v1_1_8.SessionService",
        ),
        (
            "/redfish/v1/SessionService/Sessions",
            "#SessionCollection.SessionCollection",
        ),
    ];
    for (path, v) in &mut entries {
        let Some(o) = v.as_object_mut() else {
            continue;
        };
        if !o.contains_key("@odata.type") {
            if let Some((_, t)) = types.iter().find(|(suffix, _)| path.ends_with(suffix)) {
                o.insert("@odata.type".into(), json!(t));
            }
        }
        if !o.contains_key("Id") && !o.contains_key("Members") && path != "/redfish/v1" {
            let id = path.rsplit('/').next().unwrap_or_default().to_string();
            o.insert("Id".into(), json!(id));
        }
        if !o.contains_key("Name") {
            let name = path.rsplit('/').next().unwrap_or_default().to_string();
            o.insert("Name".into(), json!(name));
        }
        if let Some(n) = o.get("Members").and_then(Value::as_array).map(Vec::len) {
            o.entry("Members@odata.count").or_insert(json!(n));
        }
    }
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

/// A loaded tree, shared read-only between simulated BMCs serving the same recording.
pub type BaseTree = Arc<Tree>;

/// Loads the tree under `dir` once per process and hands out the same copy after that:
/// a fleet of 10,000 simulated hosts of five vendors holds five trees, not 10,000.
pub fn load_shared(dir: &Path) -> std::io::Result<BaseTree> {
    static TREES: OnceLock<Mutex<HashMap<PathBuf, BaseTree>>> = OnceLock::new();
    let trees = TREES.get_or_init(Default::default);
    let mut trees = bmc_core::sync::lock(trees);
    if let Some(tree) = trees.get(dir) {
        return Ok(tree.clone());
    }
    let (resources, skipped) = load_dir(dir)?;
    if !skipped.is_empty() {
        tracing::warn!(
            count = skipped.len(),
            "tree files that are not JSON were skipped"
        );
    }
    let tree = Arc::new(resources);
    trees.insert(dir.to_path_buf(), tree.clone());
    Ok(tree)
}

/// One simulated BMC's resources: a shared base tree and this BMC's changes to it
/// (copy on write). Reads see the changes first; a resource is copied out of the base the
/// first time it is written.
#[derive(Debug, Clone)]
pub struct Resources {
    base: BaseTree,
    /// Written resources; `None` for one removed.
    changed: HashMap<String, Option<Value>>,
    /// The paths resources were put at ([`Resources::insert_at`]), by [`key`].
    put_at: HashMap<String, String>,
}

impl Resources {
    /// The base tree, unchanged.
    pub fn new(base: BaseTree) -> Resources {
        Resources {
            base,
            changed: HashMap::new(),
            put_at: HashMap::new(),
        }
    }

    /// The resource at `k` (a [`key`]).
    pub fn get(&self, k: &str) -> Option<&Value> {
        match self.changed.get(k) {
            Some(v) => v.as_ref(),
            None => self.base.resources.get(k),
        }
    }

    /// The path the resource at `k` was recorded at, if it came from a recording.
    pub fn recorded_path(&self, k: &str) -> Option<&str> {
        self.put_at
            .get(k)
            .or_else(|| self.base.recorded.get(k))
            .map(String::as_str)
    }

    /// The spellings by which the tree links to the resource at `k`.
    pub fn linked_paths(&self, k: &str) -> &[String] {
        self.base.linked.get(k).map_or(&[], Vec::as_slice)
    }

    /// Adds or replaces the resource at `path`, served at that path as if recorded there.
    pub fn insert_at(&mut self, path: &str, v: Value) {
        let k = key(path);
        self.put_at.insert(k.clone(), path.to_string());
        self.insert(k, v);
    }

    /// The resource at `k` for writing (copied out of the base on first write).
    pub fn get_mut(&mut self, k: &str) -> Option<&mut Value> {
        if !self.changed.contains_key(k) {
            let v = self.base.resources.get(k)?.clone();
            self.changed.insert(k.to_string(), Some(v));
        }
        self.changed.get_mut(k).and_then(Option::as_mut)
    }

    /// Adds or replaces the resource at `k`.
    pub fn insert(&mut self, k: String, v: Value) {
        self.changed.insert(k, Some(v));
    }

    /// Removes the resource at `k`.
    pub fn remove(&mut self, k: &str) {
        if self.get(k).is_some() {
            self.changed.insert(k.to_string(), None);
        }
    }

    /// Every resource: key and JSON, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        let changed = self
            .changed
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)));
        let base = self
            .base
            .resources
            .iter()
            .filter(|(k, _)| !self.changed.contains_key(*k));
        changed.chain(base)
    }

    /// How many resources this BMC has written (its own memory beyond the shared tree).
    pub fn changed(&self) -> usize {
        self.changed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stay_in_the_overlay_and_reads_see_them() {
        let base: BaseTree = Arc::new(builtin().into());
        let mut a = Resources::new(base.clone());
        let b = Resources::new(base.clone());
        let system = key("/redfish/v1/Systems/1");
        if let Some(s) = a.get_mut(&system) {
            s["PowerState"] = json!("On");
        }
        assert_eq!(a.get(&system).map(|s| &s["PowerState"]), Some(&json!("On")));
        assert_eq!(
            b.get(&system).map(|s| &s["PowerState"]),
            Some(&json!("Off"))
        );
        assert_eq!(base.resources[&system]["PowerState"], json!("Off"));
        assert_eq!(a.changed(), 1);

        let manager = key("/redfish/v1/Managers/1");
        a.remove(&manager);
        assert!(a.get(&manager).is_none());
        assert!(b.get(&manager).is_some());
        let n = base.resources.len();
        assert_eq!(a.iter().count(), n - 1);
        assert_eq!(b.iter().count(), n);
        a.insert("/new".into(), json!({}));
        assert_eq!(a.iter().count(), n);
        // Removing what is not there leaves no tombstone.
        a.remove("/nothing");
        assert_eq!(a.changed(), 3);
    }
}
