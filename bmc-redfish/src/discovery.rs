//! Discovery: from the service root to the system, its managers and every virtual-media
//! slot reachable from them, as Ironic and the DMTF tools find them.

use std::collections::HashSet;

use async_trait::async_trait;
use serde_json::Value;

use bmc_core::BmcError;

use crate::model::{ActionInfo, Collection, ComputerSystem, Manager, ServiceRoot, VirtualMedia};
use crate::path::{identity, normalize};

/// The service root's path.
pub const SERVICE_ROOT: &str = "/redfish/v1";

/// Reads a resource. The HTTP client implements it; tests implement it over fixture trees.
#[async_trait]
pub trait Fetch: Send + Sync {
    /// `GET path`, parsed as JSON.
    async fn get_json(&self, path: &str) -> Result<Value, BmcError>;
}

/// Where a virtual-media slot was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotLocation {
    /// Under the ComputerSystem.
    System,
    /// Under a Manager.
    Manager,
}

/// A virtual-media slot and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The slot's path.
    pub path: String,
    /// Where it was found.
    pub location: SlotLocation,
    /// The slot as last read.
    pub media: VirtualMedia,
}

/// What discovery found.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    /// The service root.
    pub root: ServiceRoot,
    /// The system's path.
    pub system_path: String,
    /// The system as read during discovery.
    pub system: ComputerSystem,
    /// `ResetType` values the BMC allows (inline or from its ActionInfo); empty when it
    /// does not say.
    pub reset_types: Vec<String>,
    /// The managers of the system.
    pub managers: Vec<Manager>,
    /// Every virtual-media slot, system slots first, each once.
    pub slots: Vec<Slot>,
    /// Index into `slots` of the slot to use for CD images.
    pub cd_slot: Option<usize>,
    /// Index into `slots` of the slot to use for USB images (not the CD slot when another
    /// one takes USB).
    pub usb_slot: Option<usize>,
    /// What could not be read (a linked resource missing, a bad member), for logs.
    pub notes: Vec<String>,
}

impl Discovery {
    /// The CD slot, if any.
    pub fn cd(&self) -> Option<&Slot> {
        self.cd_slot.and_then(|i| self.slots.get(i))
    }

    /// The USB slot, if any.
    pub fn usb(&self) -> Option<&Slot> {
        self.usb_slot.and_then(|i| self.slots.get(i))
    }
}

fn protocol(path: &str, e: crate::model::ModelError) -> BmcError {
    BmcError::Protocol {
        context: format!("GET {path}"),
        reason: e.to_string(),
    }
}

/// Discovers the system named by `system_path` (from the BMC address), or the only system
/// when it is `None` (Metal3's rule), with its managers and virtual-media slots.
pub async fn discover(fetch: &dyn Fetch, system_path: Option<&str>) -> Result<Discovery, BmcError> {
    let mut notes = Vec::new();
    let root_json = fetch.get_json(SERVICE_ROOT).await?;
    let root = ServiceRoot::from_json(&root_json).map_err(|e| protocol(SERVICE_ROOT, e))?;

    let system_path = match system_path.and_then(normalize) {
        Some(p) => p,
        None => {
            let systems = root
                .systems
                .clone()
                .unwrap_or_else(|| format!("{SERVICE_ROOT}/Systems"));
            let json = fetch.get_json(&systems).await?;
            let collection = Collection::from_json(&json).map_err(|e| protocol(&systems, e))?;
            match collection.members.as_slice() {
                [only] => only.clone(),
                [] => {
                    return Err(BmcError::NotFound {
                        resource: format!("a system in {systems}"),
                    });
                }
                many => {
                    return Err(BmcError::InvalidRequest(format!(
                        "the BMC has {} systems ({}); put the system's path in the address",
                        many.len(),
                        many.join(", ")
                    )));
                }
            }
        }
    };
    let system_json = fetch.get_json(&system_path).await?;
    let system = ComputerSystem::from_json(&system_json).map_err(|e| protocol(&system_path, e))?;

    let mut reset_types = system
        .reset
        .as_ref()
        .map(|r| r.allowable.clone())
        .unwrap_or_default();
    if reset_types.is_empty() {
        if let Some(info) = system.reset.as_ref().and_then(|r| r.action_info.clone()) {
            match fetch
                .get_json(&info)
                .await
                .map(|v| ActionInfo::from_json(&v))
            {
                Ok(Ok(info)) => reset_types = info.allowable("ResetType"),
                Ok(Err(e)) => notes.push(format!("{info}: {e}")),
                Err(e) => notes.push(format!("{info}: {e}")),
            }
        }
    }

    let mut manager_paths = system.managed_by.clone();
    if manager_paths.is_empty() {
        if let Some(managers) = root.managers.clone() {
            match fetch
                .get_json(&managers)
                .await
                .map(|v| Collection::from_json(&v))
            {
                Ok(Ok(c)) => manager_paths = c.members,
                Ok(Err(e)) => notes.push(format!("{managers}: {e}")),
                Err(e) => notes.push(format!("{managers}: {e}")),
            }
        }
    }
    let mut managers = Vec::new();
    for path in dedupe(manager_paths) {
        match fetch.get_json(&path).await.map(|v| Manager::from_json(&v)) {
            Ok(Ok(m)) => managers.push(m),
            Ok(Err(e)) => notes.push(format!("{path}: {e}")),
            Err(e) => notes.push(format!("{path}: {e}")),
        }
    }

    let mut collections: Vec<(String, SlotLocation)> = Vec::new();
    if let Some(vm) = &system.virtual_media {
        collections.push((vm.clone(), SlotLocation::System));
    }
    for m in &managers {
        if let Some(vm) = &m.virtual_media {
            collections.push((vm.clone(), SlotLocation::Manager));
        }
    }
    let mut seen_collections = HashSet::new();
    let mut seen_slots = HashSet::new();
    let mut slots = Vec::new();
    for (collection_path, location) in collections {
        if !seen_collections.insert(identity(&collection_path)) {
            continue;
        }
        let members = match fetch
            .get_json(&collection_path)
            .await
            .map(|v| Collection::from_json(&v))
        {
            Ok(Ok(c)) => {
                if c.skipped > 0 {
                    notes.push(format!(
                        "{collection_path}: {} unreadable members",
                        c.skipped
                    ));
                }
                c.members
            }
            Ok(Err(e)) => {
                notes.push(format!("{collection_path}: {e}"));
                continue;
            }
            Err(e) => {
                notes.push(format!("{collection_path}: {e}"));
                continue;
            }
        };
        for path in members {
            if !seen_slots.insert(identity(&path)) {
                continue;
            }
            match fetch
                .get_json(&path)
                .await
                .map(|v| VirtualMedia::from_json(&v))
            {
                Ok(Ok(media)) => slots.push(Slot {
                    path,
                    location,
                    media,
                }),
                Ok(Err(e)) => notes.push(format!("{path}: {e}")),
                Err(e) => notes.push(format!("{path}: {e}")),
            }
        }
    }

    let cd_slot = slots.iter().position(|s| s.media.takes_cd());
    let usb_slot = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.media.takes_usb())
        .min_by_key(|(i, _)| Some(*i) == cd_slot)
        .map(|(i, _)| i);

    Ok(Discovery {
        root,
        system_path,
        system,
        reset_types,
        managers,
        slots,
        cd_slot,
        usb_slot,
        notes,
    })
}

fn dedupe(paths: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    paths
        .into_iter()
        .filter(|p| seen.insert(identity(p)))
        .collect()
}
