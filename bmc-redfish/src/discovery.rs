//! Discovery: from the service root to the system, its managers and every virtual-media
//! slot reachable from them, as Ironic and the DMTF tools find them.

use std::collections::HashSet;

use serde_json::Value;

use bmc_core::BmcError;

pub use crate::fetch::{Fetch, SERVICE_ROOT};

use crate::model::{ActionInfo, Collection, ComputerSystem, Manager, ServiceRoot, VirtualMedia};
use crate::path::{identity, request_path};

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
///
/// Discovery reads only what the first operations need: the service root only when the
/// address names no system, the managers only when the system has no virtual-media
/// collection of its own (Ironic's rule: the system's slots win), and the slots only up to
/// the first CD-capable one. [`complete`] reads the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    /// The service root, if it was read.
    pub root: Option<ServiceRoot>,
    /// The system's path.
    pub system_path: String,
    /// The system as read during discovery.
    pub system: ComputerSystem,
    /// `ResetType` values the BMC allows (inline or from its ActionInfo); empty when it
    /// does not say.
    pub reset_types: Vec<String>,
    /// Paths of the system's managers (`Links.ManagedBy`, else the Managers collection
    /// when it was read).
    pub manager_paths: Vec<String>,
    /// The managers that were read.
    pub managers: Vec<Manager>,
    /// Virtual-media slots read so far, system slots first, each once.
    pub slots: Vec<Slot>,
    /// Slots listed but not read yet.
    pub unread_slots: Vec<(String, SlotLocation)>,
    /// Virtual-media collections listed so far (identities), so none is listed twice.
    collections: Vec<String>,
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

    /// The USB slot among the slots read, if any.
    pub fn usb(&self) -> Option<&Slot> {
        self.usb_slot.and_then(|i| self.slots.get(i))
    }

    fn choose_slots(&mut self) {
        self.cd_slot = self.slots.iter().position(|s| s.media.takes_cd());
        let cd = self.cd_slot;
        self.usb_slot = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.media.takes_usb())
            .min_by_key(|(i, _)| Some(*i) == cd)
            .map(|(i, _)| i);
    }
}

fn protocol(path: &str, e: crate::model::ModelError) -> BmcError {
    BmcError::Protocol {
        context: format!("GET {path}"),
        reason: e.to_string(),
    }
}

async fn read<T>(
    fetch: &dyn Fetch,
    path: &str,
    parse: fn(&Value) -> Result<T, crate::model::ModelError>,
    notes: &mut Vec<String>,
) -> Option<T> {
    match fetch.get_json(path).await.map(|v| parse(&v)) {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            notes.push(format!("{path}: {e}"));
            None
        }
        Err(e) => {
            notes.push(format!("{path}: {e}"));
            None
        }
    }
}

/// Discovers the system named by `system_path` (from the BMC address), or the only system
/// when it is `None` (Metal3's rule), and the virtual-media slots up to the first CD slot.
pub async fn discover(fetch: &dyn Fetch, system_path: Option<&str>) -> Result<Discovery, BmcError> {
    let mut notes = Vec::new();
    let mut root = None;
    let system_path = match system_path.and_then(request_path) {
        Some(p) => p,
        None => {
            let root_json = fetch.get_json(SERVICE_ROOT).await?;
            let r = ServiceRoot::from_json(&root_json).map_err(|e| protocol(SERVICE_ROOT, e))?;
            let systems = r
                .systems
                .clone()
                .unwrap_or_else(|| format!("{SERVICE_ROOT}/Systems"));
            root = Some(r);
            let json = fetch.get_json(&systems).await?;
            let collection = Collection::from_json(&json).map_err(|e| protocol(&systems, e))?;
            match collection.members.as_slice() {
                [only] => only.clone(),
                [] => {
                    return Err(BmcError::not_found(format!("a system in {systems}")));
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
            if let Some(info) = read(fetch, &info, ActionInfo::from_json, &mut notes).await {
                reset_types = info.allowable("ResetType");
            }
        }
    }

    let mut d = Discovery {
        root,
        manager_paths: dedupe(system.managed_by.clone()),
        system_path,
        system,
        reset_types,
        managers: Vec::new(),
        slots: Vec::new(),
        unread_slots: Vec::new(),
        collections: Vec::new(),
        cd_slot: None,
        usb_slot: None,
        notes,
    };
    let mut collections = Vec::new();
    if let Some(vm) = d.system.virtual_media.clone() {
        collections.push((vm, SlotLocation::System));
    } else {
        // Only the managers have virtual media: read them.
        read_managers(fetch, &mut d).await;
        for m in &d.managers {
            if let Some(vm) = &m.virtual_media {
                collections.push((vm.clone(), SlotLocation::Manager));
            }
        }
    }
    for (collection_path, location) in collections {
        list_collection(fetch, &mut d, &collection_path, location).await;
    }
    // Read slots until one takes CD images; the rest wait until they are needed.
    while d.cd_slot.is_none() && !d.unread_slots.is_empty() {
        read_next_slot(fetch, &mut d).await;
    }
    Ok(d)
}

/// Lists a virtual-media collection's members as unread slots (each slot once).
async fn list_collection(
    fetch: &dyn Fetch,
    d: &mut Discovery,
    collection_path: &str,
    location: SlotLocation,
) {
    let id = identity(collection_path);
    if d.collections.contains(&id) {
        return;
    }
    d.collections.push(id);
    let Some(c) = read(fetch, collection_path, Collection::from_json, &mut d.notes).await else {
        return;
    };
    if c.skipped > 0 {
        d.notes.push(format!(
            "{collection_path}: {} unreadable members",
            c.skipped
        ));
    }
    let known: HashSet<String> = d
        .slots
        .iter()
        .map(|s| identity(&s.path))
        .chain(d.unread_slots.iter().map(|(p, _)| identity(p)))
        .collect();
    let mut seen = known;
    for path in c.members {
        if seen.insert(identity(&path)) {
            d.unread_slots.push((path, location));
        }
    }
}

async fn read_next_slot(fetch: &dyn Fetch, d: &mut Discovery) {
    let (path, location) = d.unread_slots.remove(0);
    if let Some(media) = read(fetch, &path, VirtualMedia::from_json, &mut d.notes).await {
        d.slots.push(Slot {
            path,
            location,
            media,
        });
        d.choose_slots();
    }
}

/// Reads the managers listed for the system (or, with none listed, the service's
/// Managers collection), if not read yet.
pub async fn read_managers(fetch: &dyn Fetch, d: &mut Discovery) {
    if !d.managers.is_empty() {
        return;
    }
    if d.manager_paths.is_empty() {
        let root = match &d.root {
            Some(r) => Some(r.clone()),
            None => read(fetch, SERVICE_ROOT, ServiceRoot::from_json, &mut d.notes).await,
        };
        let collection = root
            .as_ref()
            .and_then(|r| r.managers.clone())
            .unwrap_or_else(|| format!("{SERVICE_ROOT}/Managers"));
        d.root = root;
        if let Some(c) = read(fetch, &collection, Collection::from_json, &mut d.notes).await {
            d.manager_paths = dedupe(c.members);
        }
    }
    for path in d.manager_paths.clone() {
        if let Some(m) = read(fetch, &path, Manager::from_json, &mut d.notes).await {
            d.managers.push(m);
        }
    }
}

/// Reads every slot not read yet (to find a USB slot, or to list them all).
pub async fn complete_slots(fetch: &dyn Fetch, d: &mut Discovery) {
    while !d.unread_slots.is_empty() {
        read_next_slot(fetch, d).await;
    }
}

/// Reads what [`discover`] left for later: the managers, their virtual-media slots (when
/// the system had its own, they were not listed) and every remaining slot.
pub async fn complete(fetch: &dyn Fetch, d: &mut Discovery) {
    read_managers(fetch, d).await;
    let manager_collections: Vec<String> = d
        .managers
        .iter()
        .filter_map(|m| m.virtual_media.clone())
        .collect();
    for c in manager_collections {
        list_collection(fetch, d, &c, SlotLocation::Manager).await;
    }
    complete_slots(fetch, d).await;
}

fn dedupe(paths: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    paths
        .into_iter()
        .filter(|p| seen.insert(identity(p)))
        .collect()
}
