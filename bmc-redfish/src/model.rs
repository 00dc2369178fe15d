//! Tolerant Redfish models.
//!
//! Each model is read from a parsed JSON value and never fails on its content: wrong types,
//! nulls and missing properties become `None` or empty, unknown enum values are kept as the
//! strings the BMC sent, and collection members are read one by one. The only error is a
//! body that is not a JSON object at all.

use serde_json::Value;

use bmc_core::BmcMessage;

use crate::json::{at, boolean, link, links, number, own_id, string, strings, uint};
use crate::path::last_segment;

/// A resource body that is not a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a JSON object for {resource}, got {found}")]
pub struct ModelError {
    /// What was being read.
    pub resource: &'static str,
    /// What came instead.
    pub found: &'static str,
}

fn object<'a>(v: &'a Value, resource: &'static str) -> Result<&'a Value, ModelError> {
    // An error object is no resource, whatever status it came with.
    if v.get("error").is_some_and(Value::is_object) {
        return Err(ModelError {
            resource,
            found: "a Redfish error object",
        });
    }
    if v.is_object() {
        Ok(v)
    } else {
        Err(ModelError {
            resource,
            found: match v {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            },
        })
    }
}

/// The resource's id: `Id`, or the last segment of its `@odata.id`.
fn resource_id(v: &Value) -> String {
    string(v, &["Id"])
        .or_else(|| own_id(v).map(|p| last_segment(&p)))
        .unwrap_or_default()
}

/// `GET /redfish/v1`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceRoot {
    /// `RedfishVersion`.
    pub redfish_version: Option<String>,
    /// `Vendor`.
    pub vendor: Option<String>,
    /// `Product`.
    pub product: Option<String>,
    /// `UUID`.
    pub uuid: Option<String>,
    /// `Systems` collection.
    pub systems: Option<String>,
    /// `Managers` collection.
    pub managers: Option<String>,
    /// `SessionService`.
    pub session_service: Option<String>,
    /// `Links.Sessions`: where to create sessions.
    pub sessions: Option<String>,
    /// `TaskService`.
    pub task_service: Option<String>,
    /// OEM vendor keys present at the root (`Oem.Dell`, `Oem.Hpe`, …).
    pub oem_vendors: Vec<String>,
}

impl ServiceRoot {
    /// Reads the service root.
    pub fn from_json(v: &Value) -> Result<ServiceRoot, ModelError> {
        let v = object(v, "ServiceRoot")?;
        Ok(ServiceRoot {
            redfish_version: string(v, &["RedfishVersion"]),
            vendor: string(v, &["Vendor"]),
            product: string(v, &["Product"]),
            uuid: string(v, &["UUID"]),
            systems: link(v, &["Systems"]),
            managers: link(v, &["Managers"]),
            session_service: link(v, &["SessionService"]),
            sessions: link(v, &["Links", "Sessions"]),
            task_service: link(v, &["Tasks"]).or_else(|| link(v, &["TaskService"])),
            oem_vendors: oem_keys(v),
        })
    }
}

fn oem_keys(v: &Value) -> Vec<String> {
    at(v, &["Oem"])
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Any collection: its members' paths, each once. Members without a usable `@odata.id`
/// are skipped and counted, so one bad member cannot hide the rest; a member listed again
/// is counted once (BMCs repeat members).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Collection {
    /// Member paths as the BMC wrote them, each resource once.
    pub members: Vec<String>,
    /// Members that could not be read.
    pub skipped: usize,
    /// Members listed more than once (after the first time).
    pub repeated: usize,
}

impl Collection {
    /// Reads a collection; `"Members": null` or no `Members` is an empty collection.
    pub fn from_json(v: &Value) -> Result<Collection, ModelError> {
        let v = object(v, "Collection")?;
        let raw = at(v, &["Members"]).and_then(Value::as_array);
        let usable = raw.map_or(0, |r| {
            r.iter()
                .filter_map(|m| m.get("@odata.id").and_then(Value::as_str))
                .filter(|p| crate::path::request_path(p).is_some())
                .count()
        });
        let members = links(v, &["Members"]);
        let skipped = raw.map_or(0, |r| r.len().saturating_sub(usable));
        Ok(Collection {
            repeated: usable.saturating_sub(members.len()),
            members,
            skipped,
        })
    }
}

/// An action: where to POST and which values the BMC allows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Action {
    /// `target`.
    pub target: String,
    /// `<Param>@Redfish.AllowableValues` inline, if given.
    pub allowable: Vec<String>,
    /// `@Redfish.ActionInfo`: a resource listing the parameters.
    pub action_info: Option<String>,
}

impl Action {
    /// Reads `Actions.<name>`; `param` names the parameter whose allowable values to read.
    fn read(v: &Value, name: &str, param: &str) -> Option<Action> {
        let a = at(v, &["Actions", name])?;
        let target = a
            .get("target")
            .and_then(Value::as_str)
            .and_then(crate::path::request_path)?;
        let key = format!("{param}@Redfish.AllowableValues");
        Some(Action {
            target,
            allowable: strings(a, &[key.as_str()]),
            action_info: a
                .get("@Redfish.ActionInfo")
                .and_then(Value::as_str)
                .and_then(crate::path::request_path),
        })
    }
}

/// A vendor action: `Actions.Oem.<name>` (Dell) or `Oem.<Vendor>.Actions.<name>` (HPE).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OemAction {
    /// The action's key as sent, e.g. `#HpeiLOVirtualMedia.InsertVirtualMedia` or
    /// `#OemManager.v1_4_0.OemManager#OemManager.ImportSystemConfiguration`.
    pub name: String,
    /// `target`, normalised.
    pub target: String,
}

/// Every vendor action of a resource, in both places vendors put them.
fn oem_actions(v: &Value) -> Vec<OemAction> {
    let mut out = Vec::new();
    let mut collect = |actions: Option<&Value>| {
        for (name, a) in actions.and_then(Value::as_object).into_iter().flatten() {
            if let Some(target) = a
                .get("target")
                .and_then(Value::as_str)
                .and_then(crate::path::request_path)
            {
                out.push(OemAction {
                    name: name.clone(),
                    target,
                });
            }
        }
    };
    collect(at(v, &["Actions", "Oem"]));
    for vendor in at(v, &["Oem"])
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        collect(vendor.1.get("Actions"));
    }
    out
}

/// Every action a resource advertises under `Actions` (a vendor service such as Dell's
/// `DellLCService` puts its own actions there, not under `Actions.Oem`), with the vendor
/// actions of [`OemAction`]'s two places.
pub fn all_actions(v: &Value) -> Vec<OemAction> {
    let mut out: Vec<OemAction> = at(v, &["Actions"])
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(name, _)| name.as_str() != "Oem")
        .filter_map(|(name, a)| {
            let target = a
                .get("target")
                .and_then(Value::as_str)
                .and_then(crate::path::request_path)?;
            Some(OemAction {
                name: name.clone(),
                target,
            })
        })
        .collect();
    out.extend(oem_actions(v));
    out
}

/// Every single-object vendor link of `Links.Oem.<Vendor>` (`DellLCService`,
/// `Jobs`, …) as `(name, path)`.
fn oem_links(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (_, links) in at(v, &["Links", "Oem"])
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        for (name, target) in links.as_object().into_iter().flatten() {
            if let Some(path) = target
                .get("@odata.id")
                .and_then(Value::as_str)
                .and_then(crate::path::request_path)
            {
                out.push((name.clone(), path));
            }
        }
    }
    out
}

/// The target of the vendor action whose name ends with `suffix` (`.ImportSystemConfiguration`
/// matches Dell's versioned key).
pub fn find_oem_action<'a>(actions: &'a [OemAction], suffix: &str) -> Option<&'a OemAction> {
    actions.iter().find(|a| a.name.ends_with(suffix))
}

/// An `ActionInfo` resource.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActionInfo {
    /// Parameter name → allowable values.
    pub parameters: Vec<(String, Vec<String>)>,
}

impl ActionInfo {
    /// Reads an ActionInfo.
    pub fn from_json(v: &Value) -> Result<ActionInfo, ModelError> {
        let v = object(v, "ActionInfo")?;
        let parameters = at(v, &["Parameters"])
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| Some((string(p, &["Name"])?, strings(p, &["AllowableValues"]))))
                    .collect()
            })
            .unwrap_or_default();
        Ok(ActionInfo { parameters })
    }

    /// The allowable values of `name`.
    pub fn allowable(&self, name: &str) -> Vec<String> {
        self.parameters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// `ComputerSystem.Boot`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Boot {
    /// `BootSourceOverrideTarget`.
    pub target: Option<String>,
    /// `BootSourceOverrideEnabled` (`Disabled`, `Once`, `Continuous`).
    pub enabled: Option<String>,
    /// `BootSourceOverrideMode` (`UEFI`, `Legacy`).
    pub mode: Option<String>,
    /// Allowable targets (empty when the BMC does not say).
    pub target_allowable: Vec<String>,
    /// Allowable `Enabled` values.
    pub enabled_allowable: Vec<String>,
    /// Allowable modes.
    pub mode_allowable: Vec<String>,
    /// Whether the system has override properties at all.
    pub present: bool,
}

/// A `ComputerSystem`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ComputerSystem {
    /// Path.
    pub path: Option<String>,
    /// `Id`.
    pub id: String,
    /// `Manufacturer`.
    pub manufacturer: Option<String>,
    /// `Model`.
    pub model: Option<String>,
    /// `SerialNumber`.
    pub serial_number: Option<String>,
    /// `SKU`.
    pub sku: Option<String>,
    /// `UUID`.
    pub uuid: Option<String>,
    /// `HostName`.
    pub hostname: Option<String>,
    /// `BiosVersion`.
    pub bios_version: Option<String>,
    /// `PowerState` as sent.
    pub power_state: Option<String>,
    /// `#ComputerSystem.Reset`.
    pub reset: Option<Action>,
    /// Boot override.
    pub boot: Boot,
    /// `@Redfish.Settings.SettingsObject`, where some BMCs want boot changes.
    pub settings_object: Option<String>,
    /// `VirtualMedia` collection.
    pub virtual_media: Option<String>,
    /// `Links.ManagedBy`.
    pub managed_by: Vec<String>,
    /// `Processors`.
    pub processors: Option<String>,
    /// `Memory`.
    pub memory: Option<String>,
    /// `EthernetInterfaces`.
    pub ethernet_interfaces: Option<String>,
    /// `Storage`.
    pub storage: Option<String>,
    /// `SimpleStorage`.
    pub simple_storage: Option<String>,
    /// `Bios`.
    pub bios: Option<String>,
    /// `ProcessorSummary.Count`.
    pub processor_count: Option<u64>,
    /// `ProcessorSummary.Model`.
    pub processor_model: Option<String>,
    /// `MemorySummary.TotalSystemMemoryGiB`.
    pub total_memory_gib: Option<f64>,
    /// `@odata.etag`.
    pub etag: Option<String>,
    /// OEM vendor keys (`Dell`, `Hpe`, `Lenovo`, …).
    pub oem_vendors: Vec<String>,
    /// Vendor actions (HPE's `#HpeComputerSystemExt.PowerButton`, …).
    pub oem_actions: Vec<OemAction>,
}

impl ComputerSystem {
    /// Reads a ComputerSystem.
    pub fn from_json(v: &Value) -> Result<ComputerSystem, ModelError> {
        let v = object(v, "ComputerSystem")?;
        let b = |k: &str| string(v, &["Boot", k]);
        let av = |k: &str| strings(v, &["Boot", &format!("{k}@Redfish.AllowableValues")]);
        Ok(ComputerSystem {
            path: own_id(v),
            id: resource_id(v),
            manufacturer: string(v, &["Manufacturer"]),
            model: string(v, &["Model"]),
            serial_number: string(v, &["SerialNumber"]),
            sku: string(v, &["SKU"]),
            uuid: string(v, &["UUID"]),
            hostname: string(v, &["HostName"]),
            bios_version: string(v, &["BiosVersion"]),
            power_state: string(v, &["PowerState"]),
            reset: Action::read(v, "#ComputerSystem.Reset", "ResetType"),
            boot: Boot {
                target: b("BootSourceOverrideTarget"),
                enabled: b("BootSourceOverrideEnabled"),
                mode: b("BootSourceOverrideMode"),
                target_allowable: av("BootSourceOverrideTarget"),
                enabled_allowable: av("BootSourceOverrideEnabled"),
                mode_allowable: av("BootSourceOverrideMode"),
                present: at(v, &["Boot", "BootSourceOverrideTarget"]).is_some()
                    || at(v, &["Boot", "BootSourceOverrideEnabled"]).is_some(),
            },
            settings_object: link(v, &["@Redfish.Settings", "SettingsObject"]),
            virtual_media: link(v, &["VirtualMedia"]),
            managed_by: links(v, &["Links", "ManagedBy"]),
            processors: link(v, &["Processors"]),
            memory: link(v, &["Memory"]),
            ethernet_interfaces: link(v, &["EthernetInterfaces"]),
            storage: link(v, &["Storage"]),
            simple_storage: link(v, &["SimpleStorage"]),
            bios: link(v, &["Bios"]),
            processor_count: uint(v, &["ProcessorSummary", "Count"]),
            processor_model: string(v, &["ProcessorSummary", "Model"]),
            total_memory_gib: number(v, &["MemorySummary", "TotalSystemMemoryGiB"]),
            etag: string(v, &["@odata.etag"]),
            oem_vendors: oem_keys(v),
            oem_actions: oem_actions(v),
        })
    }
}

/// A `Manager` (the BMC itself).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manager {
    /// Path.
    pub path: Option<String>,
    /// `Id`.
    pub id: String,
    /// `ManagerType` (`BMC`, …).
    pub manager_type: Option<String>,
    /// `Manufacturer`.
    pub manufacturer: Option<String>,
    /// `Model`.
    pub model: Option<String>,
    /// `FirmwareVersion`.
    pub firmware_version: Option<String>,
    /// `VirtualMedia` collection.
    pub virtual_media: Option<String>,
    /// `#Manager.Reset`.
    pub reset: Option<Action>,
    /// OEM vendor keys (`Dell`, `Hpe`, …).
    pub oem_vendors: Vec<String>,
    /// Vendor actions (Dell's `ImportSystemConfiguration`, …).
    pub oem_actions: Vec<OemAction>,
    /// Vendor links of `Links.Oem` as `(name, path)` (Dell's `DellLCService`, `Jobs`, …).
    pub oem_links: Vec<(String, String)>,
}

impl Manager {
    /// The path of the vendor link `name` the manager advertises.
    pub fn oem_link(&self, name: &str) -> Option<&str> {
        self.oem_links
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.as_str())
    }

    /// Reads a Manager.
    pub fn from_json(v: &Value) -> Result<Manager, ModelError> {
        let v = object(v, "Manager")?;
        Ok(Manager {
            path: own_id(v),
            id: resource_id(v),
            manager_type: string(v, &["ManagerType"]),
            manufacturer: string(v, &["Manufacturer"]),
            model: string(v, &["Model"]),
            firmware_version: string(v, &["FirmwareVersion"]),
            virtual_media: link(v, &["VirtualMedia"]),
            reset: Action::read(v, "#Manager.Reset", "ResetType"),
            oem_vendors: oem_keys(v),
            oem_actions: oem_actions(v),
            oem_links: oem_links(v),
        })
    }
}

/// A `VirtualMedia` slot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VirtualMedia {
    /// Path.
    pub path: Option<String>,
    /// `Id`.
    pub id: String,
    /// `Name`.
    pub name: Option<String>,
    /// `MediaTypes` (`CD`, `DVD`, `USBStick`, `Floppy`, or others kept as sent).
    pub media_types: Vec<String>,
    /// `Image`; `""` and the string `"None"` read as no image.
    pub image: Option<String>,
    /// `Inserted`.
    pub inserted: Option<bool>,
    /// `WriteProtected`.
    pub write_protected: Option<bool>,
    /// `ConnectedVia`.
    pub connected_via: Option<String>,
    /// `#VirtualMedia.InsertMedia`.
    pub insert: Option<Action>,
    /// `#VirtualMedia.EjectMedia`.
    pub eject: Option<Action>,
    /// `@odata.etag`.
    pub etag: Option<String>,
    /// Vendor actions (HPE's `#HpeiLOVirtualMedia.InsertVirtualMedia`, …).
    pub oem_actions: Vec<OemAction>,
    /// `Oem.Hpe.BootOnNextServerReset`, where the BMC has it.
    pub boot_on_next_server_reset: Option<bool>,
}

impl VirtualMedia {
    /// Reads a VirtualMedia slot.
    pub fn from_json(v: &Value) -> Result<VirtualMedia, ModelError> {
        let v = object(v, "VirtualMedia")?;
        let image = string(v, &["Image"]).filter(|i| !i.eq_ignore_ascii_case("none"));
        Ok(VirtualMedia {
            path: own_id(v),
            id: resource_id(v),
            name: string(v, &["Name"]),
            media_types: strings(v, &["MediaTypes"]),
            image,
            inserted: boolean(v, &["Inserted"]),
            write_protected: boolean(v, &["WriteProtected"]),
            connected_via: string(v, &["ConnectedVia"]),
            insert: Action::read(v, "#VirtualMedia.InsertMedia", "TransferProtocolType"),
            eject: Action::read(v, "#VirtualMedia.EjectMedia", "TransferProtocolType"),
            etag: string(v, &["@odata.etag"]),
            oem_actions: oem_actions(v),
            boot_on_next_server_reset: boolean(v, &["Oem", "Hpe", "BootOnNextServerReset"]),
        })
    }

    /// Whether media is in the slot: `Inserted`, or an image with a connection when the
    /// BMC does not report `Inserted`.
    pub fn is_inserted(&self) -> bool {
        self.inserted.unwrap_or_else(|| {
            self.image.is_some() && self.connected_via.as_deref() != Some("NotConnected")
        })
    }

    /// Whether the slot takes CD/DVD images: by `MediaTypes`, or, when the BMC lists none,
    /// by its id or name.
    pub fn takes_cd(&self) -> bool {
        if self.media_types.is_empty() {
            let label = format!("{} {}", self.id, self.name.as_deref().unwrap_or_default())
                .to_ascii_lowercase();
            return ["cd", "dvd", "optical"].iter().any(|k| label.contains(k));
        }
        self.media_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case("CD") || t.eq_ignore_ascii_case("DVD"))
    }

    /// Whether the slot takes USB stick or floppy images.
    pub fn takes_usb(&self) -> bool {
        if self.media_types.is_empty() {
            let label = format!("{} {}", self.id, self.name.as_deref().unwrap_or_default())
                .to_ascii_lowercase();
            return ["usb", "removable", "floppy"]
                .iter()
                .any(|k| label.contains(k));
        }
        self.media_types
            .iter()
            .any(|t| t.eq_ignore_ascii_case("USBStick") || t.eq_ignore_ascii_case("Floppy"))
    }
}

/// An `EthernetInterface`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EthernetInterface {
    /// `Id`.
    pub id: String,
    /// `PermanentMACAddress`, else `MACAddress`.
    pub mac: Option<String>,
    /// `SpeedMbps`.
    pub speed_mbps: Option<u64>,
    /// `LinkStatus` (`LinkUp`, `LinkDown`, `NoLink`).
    pub link_status: Option<String>,
}

impl EthernetInterface {
    /// Reads an EthernetInterface.
    pub fn from_json(v: &Value) -> Result<EthernetInterface, ModelError> {
        let v = object(v, "EthernetInterface")?;
        Ok(EthernetInterface {
            id: resource_id(v),
            mac: string(v, &["PermanentMACAddress"]).or_else(|| string(v, &["MACAddress"])),
            speed_mbps: uint(v, &["SpeedMbps"]),
            link_status: string(v, &["LinkStatus"]),
        })
    }
}

/// A `Processor`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Processor {
    /// `Id`.
    pub id: String,
    /// `ProcessorType` (`CPU`, `GPU`, `FPGA`, …).
    pub processor_type: Option<String>,
    /// `Model`.
    pub model: Option<String>,
    /// `InstructionSet` (`x86-64`, `ARM-A64`, …), else `ProcessorArchitecture`.
    pub architecture: Option<String>,
    /// `TotalCores`.
    pub cores: Option<u64>,
    /// `TotalThreads`.
    pub threads: Option<u64>,
    /// `MaxSpeedMHz`.
    pub max_speed_mhz: Option<u64>,
    /// `Status.State` (`Absent` slots are not processors).
    pub state: Option<String>,
}

impl Processor {
    /// Reads a Processor.
    pub fn from_json(v: &Value) -> Result<Processor, ModelError> {
        let v = object(v, "Processor")?;
        Ok(Processor {
            id: resource_id(v),
            processor_type: string(v, &["ProcessorType"]),
            model: string(v, &["Model"]),
            architecture: string(v, &["InstructionSet"])
                .or_else(|| string(v, &["ProcessorArchitecture"])),
            cores: uint(v, &["TotalCores"]),
            threads: uint(v, &["TotalThreads"]),
            max_speed_mhz: uint(v, &["MaxSpeedMHz"]),
            state: string(v, &["Status", "State"]),
        })
    }
}

/// A `Memory` module.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Memory {
    /// `Id`.
    pub id: String,
    /// `CapacityMiB`.
    pub capacity_mib: Option<u64>,
    /// `MemoryDeviceType` (`DDR5`, …).
    pub device_type: Option<String>,
    /// `OperatingSpeedMhz`.
    pub speed_mhz: Option<u64>,
    /// `Status.State`.
    pub state: Option<String>,
}

impl Memory {
    /// Reads a Memory resource.
    pub fn from_json(v: &Value) -> Result<Memory, ModelError> {
        let v = object(v, "Memory")?;
        Ok(Memory {
            id: resource_id(v),
            capacity_mib: uint(v, &["CapacityMiB"]),
            device_type: string(v, &["MemoryDeviceType"]),
            speed_mhz: uint(v, &["OperatingSpeedMhz"]),
            state: string(v, &["Status", "State"]),
        })
    }
}

/// A `Storage` subsystem: its drives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Storage {
    /// `Id`.
    pub id: String,
    /// `Drives` links.
    pub drives: Vec<String>,
}

impl Storage {
    /// Reads a Storage resource.
    pub fn from_json(v: &Value) -> Result<Storage, ModelError> {
        let v = object(v, "Storage")?;
        Ok(Storage {
            id: resource_id(v),
            drives: links(v, &["Drives"]),
        })
    }
}

/// A `Drive`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Drive {
    /// `Id`.
    pub id: String,
    /// `Name`.
    pub name: Option<String>,
    /// `Model`.
    pub model: Option<String>,
    /// `SerialNumber`.
    pub serial_number: Option<String>,
    /// `CapacityBytes`.
    pub capacity_bytes: Option<u64>,
    /// `MediaType` (`HDD`, `SSD`).
    pub media_type: Option<String>,
    /// `Protocol` (`SATA`, `SAS`, `NVMe`).
    pub protocol: Option<String>,
}

impl Drive {
    /// Reads a Drive.
    pub fn from_json(v: &Value) -> Result<Drive, ModelError> {
        let v = object(v, "Drive")?;
        Ok(Drive {
            id: resource_id(v),
            name: string(v, &["Name"]),
            model: string(v, &["Model"]),
            serial_number: string(v, &["SerialNumber"]),
            capacity_bytes: uint(v, &["CapacityBytes"]),
            media_type: string(v, &["MediaType"]),
            protocol: string(v, &["Protocol"]),
        })
    }
}

/// A `SimpleStorage` controller's devices.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimpleStorage {
    /// `Id`.
    pub id: String,
    /// Devices present: (name, model, capacity in bytes).
    pub devices: Vec<(String, Option<String>, Option<u64>)>,
}

impl SimpleStorage {
    /// Reads a SimpleStorage resource; absent devices are left out.
    pub fn from_json(v: &Value) -> Result<SimpleStorage, ModelError> {
        let v = object(v, "SimpleStorage")?;
        let devices = at(v, &["Devices"])
            .and_then(Value::as_array)
            .map(|ds| {
                ds.iter()
                    .filter(|d| string(d, &["Status", "State"]).as_deref() != Some("Absent"))
                    .map(|d| {
                        (
                            string(d, &["Name"]).unwrap_or_default(),
                            string(d, &["Model"]),
                            uint(d, &["CapacityBytes"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(SimpleStorage {
            id: resource_id(v),
            devices,
        })
    }
}

/// A `SessionService`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionService {
    /// `ServiceEnabled`.
    pub enabled: Option<bool>,
    /// `SessionTimeout` in seconds.
    pub timeout_secs: Option<u64>,
    /// `Sessions` collection.
    pub sessions: Option<String>,
}

impl SessionService {
    /// Reads a SessionService.
    pub fn from_json(v: &Value) -> Result<SessionService, ModelError> {
        let v = object(v, "SessionService")?;
        Ok(SessionService {
            enabled: boolean(v, &["ServiceEnabled"]),
            timeout_secs: uint(v, &["SessionTimeout"]),
            sessions: link(v, &["Sessions"]),
        })
    }
}

/// A `Task` (what a task monitor reports).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Task {
    /// `TaskState` (`New`, `Running`, `Completed`, `Exception`, `Killed`, …), or a Dell
    /// job's `JobState` (`Scheduled`, `Running`, `Completed`, `Failed`, …).
    pub state: Option<String>,
    /// `TaskStatus` (`OK`, `Warning`, `Critical`).
    pub status: Option<String>,
    /// `PercentComplete`.
    pub percent: Option<u64>,
    /// `Messages`.
    pub messages: Vec<BmcMessage>,
}

impl Task {
    /// Reads a Task.
    pub fn from_json(v: &Value) -> Result<Task, ModelError> {
        let v = object(v, "Task")?;
        let mut task_messages = messages(at(v, &["Messages"]));
        // A Dell job (`DellJob`, the monitor of iDRAC's OEM actions) carries `JobState`
        // and one `MessageId`/`Message` instead.
        if task_messages.is_empty() {
            let id = string(v, &["MessageId"]).unwrap_or_default();
            let text = string(v, &["Message"]).unwrap_or_default();
            if !id.is_empty() || !text.is_empty() {
                task_messages.push(BmcMessage { id, text });
            }
        }
        Ok(Task {
            state: string(v, &["TaskState"]).or_else(|| string(v, &["JobState"])),
            status: string(v, &["TaskStatus"]),
            percent: uint(v, &["PercentComplete"]),
            messages: task_messages,
        })
    }

    /// Whether the task has finished, successfully or not.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.state.as_deref(),
            Some(
                "Completed"
                    | "Exception"
                    | "Killed"
                    | "Cancelled"
                    | "Failed"
                    | "CompletedWithErrors"
            )
        )
    }

    /// Whether the task finished successfully.
    pub fn succeeded(&self) -> bool {
        self.state.as_deref() == Some("Completed")
            && !matches!(self.status.as_deref(), Some("Critical"))
    }
}

fn messages(v: Option<&Value>) -> Vec<BmcMessage> {
    v.and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter_map(|m| {
                    let id = string(m, &["MessageId"]).unwrap_or_default();
                    // iLO sends only the id and its arguments: the arguments are the
                    // explanation then ("Invalid URI").
                    let text = string(m, &["Message"]).unwrap_or_else(|| {
                        m.get("MessageArgs")
                            .and_then(Value::as_array)
                            .map(|args| {
                                args.iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            })
                            .unwrap_or_default()
                    });
                    (!id.is_empty() || !text.is_empty()).then_some(BmcMessage { id, text })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A Redfish error body: `{"error": {"code", "message", "@Message.ExtendedInfo": [...]}}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorBody {
    /// `error.code`.
    pub code: Option<String>,
    /// `error.message`.
    pub message: Option<String>,
    /// `error.@Message.ExtendedInfo` (and top-level `@Message.ExtendedInfo`).
    pub extended: Vec<BmcMessage>,
}

impl ErrorBody {
    /// Reads an error body; anything else yields `None`.
    pub fn from_json(v: &Value) -> Option<ErrorBody> {
        let e = at(v, &["error"]).filter(|e| e.is_object());
        let mut extended = messages(e.and_then(|e| e.get("@Message.ExtendedInfo")));
        extended.extend(messages(v.get("@Message.ExtendedInfo")));
        let body = ErrorBody {
            code: e.and_then(|e| string(e, &["code"])),
            message: e.and_then(|e| string(e, &["message"])),
            extended,
        };
        (body.code.is_some() || body.message.is_some() || !body.extended.is_empty()).then_some(body)
    }

    /// All messages: the extended ones, else the code and message. Extended entries that
    /// carry only an id borrow `error.message`, which then holds the explanation (sushy,
    /// iLO).
    pub fn all_messages(&self) -> Vec<BmcMessage> {
        if !self.extended.is_empty() {
            let mut out = self.extended.clone();
            if out.iter().all(|m| m.text.is_empty()) {
                // ...unless it only points back at the ExtendedInfo.
                let useful = self
                    .message
                    .as_ref()
                    .filter(|m| !m.contains("ExtendedInfo"));
                if let (Some(first), Some(message)) = (out.first_mut(), useful) {
                    first.text = message.clone();
                }
            }
            return out;
        }
        vec![BmcMessage {
            id: self.code.clone().unwrap_or_default(),
            text: self.message.clone().unwrap_or_default(),
        }]
    }
}

/// A `Bios` resource: current attributes and where pending changes go.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bios {
    /// `AttributeRegistry`.
    pub attribute_registry: Option<String>,
    /// `Attributes` as sent (values of any JSON type).
    pub attributes: serde_json::Map<String, Value>,
    /// `@Redfish.Settings.SettingsObject`: where to PATCH changes (`Bios/Settings`,
    /// `Bios/Pending`, `Bios/SD` on the recorded trees).
    pub settings_object: Option<String>,
    /// `#Bios.ResetBios` target.
    pub reset_bios: Option<String>,
}

impl Bios {
    /// Reads a Bios resource.
    pub fn from_json(v: &Value) -> Result<Bios, ModelError> {
        let v = object(v, "Bios")?;
        Ok(Bios {
            attribute_registry: string(v, &["AttributeRegistry"]),
            attributes: at(v, &["Attributes"])
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            settings_object: link(v, &["@Redfish.Settings", "SettingsObject"]),
            reset_bios: Action::read(v, "#Bios.ResetBios", "ResetType").map(|a| a.target),
        })
    }

    /// An attribute's value as text (strings as they are, other values as JSON).
    pub fn attribute(&self, name: &str) -> Option<String> {
        self.attributes.get(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}
