//! The hardware inventory: read over [`Fetch`] from the system and its collections
//! ([`read_parts`]), then mapped to bmc-core's vocabulary with no I/O ([`to_inventory`]).
//! Both run on the recorded trees in tests, as discovery does.

use serde_json::Value;

use bmc_core::{
    Cpu, Disk, DiskKind, FirmwareVersion, HardwareInventory, MemoryModule, Nic, SystemIdentity,
};

use crate::fetch::Fetch;
use crate::model::{
    Collection, ComputerSystem, Drive, EthernetInterface, Manager, Memory, ModelError, Processor,
    SimpleStorage, Storage,
};

/// What the inventory is made of, as read from the BMC.
#[derive(Debug, Clone, Default)]
pub struct InventoryParts {
    /// The system.
    pub system: ComputerSystem,
    /// `Processors` members.
    pub processors: Vec<Processor>,
    /// `Memory` members.
    pub memory: Vec<Memory>,
    /// `EthernetInterfaces` members.
    pub nics: Vec<EthernetInterface>,
    /// The drives of every `Storage` member.
    pub drives: Vec<Drive>,
    /// `SimpleStorage` members (read only when `Storage` lists no drive).
    pub simple_storage: Vec<SimpleStorage>,
    /// `(manager id, firmware version)` of each manager that reports one.
    pub bmc_firmware: Vec<(String, String)>,
}

/// Reads every member of a collection; one unreadable member does not hide the rest.
async fn members<T>(
    fetch: &dyn Fetch,
    collection: Option<&String>,
    parse: fn(&Value) -> Result<T, ModelError>,
) -> Vec<T> {
    let Some(path) = collection else {
        return Vec::new();
    };
    let members = match fetch
        .get_json(path)
        .await
        .map(|v| Collection::from_json(&v))
    {
        Ok(Ok(c)) => c.members,
        _ => return Vec::new(),
    };
    let mut out = Vec::with_capacity(members.len());
    for m in members {
        if let Ok(v) = fetch.get_json(&m).await {
            if let Ok(item) = parse(&v) {
                out.push(item);
            }
        }
    }
    out
}

/// Reads the parts of the inventory of `system` (as just read) and its `managers`.
pub async fn read_parts(
    fetch: &dyn Fetch,
    system: ComputerSystem,
    managers: &[Manager],
) -> InventoryParts {
    let processors = members(fetch, system.processors.as_ref(), Processor::from_json).await;
    let memory = members(fetch, system.memory.as_ref(), Memory::from_json).await;
    let nics = members(
        fetch,
        system.ethernet_interfaces.as_ref(),
        EthernetInterface::from_json,
    )
    .await;
    let mut drives = Vec::new();
    // A drive linked from two storage controllers (or twice from one) is one drive.
    let mut seen = std::collections::HashSet::new();
    for storage in members(fetch, system.storage.as_ref(), Storage::from_json).await {
        for path in storage.drives {
            if !seen.insert(crate::path::identity(&path)) {
                continue;
            }
            if let Ok(v) = fetch.get_json(&path).await {
                if let Ok(drive) = Drive::from_json(&v) {
                    drives.push(drive);
                }
            }
        }
    }
    let simple_storage = if drives.is_empty() {
        members(
            fetch,
            system.simple_storage.as_ref(),
            SimpleStorage::from_json,
        )
        .await
    } else {
        Vec::new()
    };
    let bmc_firmware = managers
        .iter()
        .filter_map(|m| Some((m.id.clone(), m.firmware_version.clone()?)))
        .collect();
    InventoryParts {
        system,
        processors,
        memory,
        nics,
        drives,
        simple_storage,
        bmc_firmware,
    }
}

/// A drive in bmc-core's vocabulary: NVMe by protocol, else SSD or HDD by media type.
pub fn disk(d: Drive) -> Disk {
    let kind = match (d.protocol.as_deref(), d.media_type.as_deref()) {
        (Some(p), _) if p.eq_ignore_ascii_case("NVMe") => DiskKind::Nvme,
        (_, Some("SSD")) => DiskKind::Ssd,
        (_, Some("HDD")) => DiskKind::Hdd,
        _ => DiskKind::Unknown,
    };
    Disk {
        id: d.name.unwrap_or(d.id),
        model: d.model,
        serial_number: d.serial_number,
        size_bytes: d.capacity_bytes,
        kind,
    }
}

/// The inventory in bmc-core's vocabulary: absent processors and DIMMs and non-CPU
/// processors (GPUs, FPGAs) left out, drives from `Storage` or else `SimpleStorage`, the
/// BIOS and each BMC's firmware.
pub fn to_inventory(parts: InventoryParts) -> HardwareInventory {
    let InventoryParts {
        system,
        processors,
        memory,
        nics,
        drives,
        simple_storage,
        bmc_firmware,
    } = parts;
    let cpus = processors
        .into_iter()
        .filter(|p| p.state.as_deref() != Some("Absent"))
        .filter(|p| p.processor_type.as_deref().is_none_or(|t| t == "CPU"))
        .map(|p| Cpu {
            id: p.id,
            model: p.model,
            architecture: p.architecture,
            cores: p.cores.and_then(|c| u32::try_from(c).ok()),
            threads: p.threads.and_then(|c| u32::try_from(c).ok()),
            max_speed_mhz: p.max_speed_mhz.and_then(|c| u32::try_from(c).ok()),
        })
        .collect();
    let memory = memory
        .into_iter()
        .filter(|m| m.state.as_deref() != Some("Absent") && m.capacity_mib.unwrap_or(0) > 0)
        .map(|m| MemoryModule {
            id: m.id,
            capacity_mib: m.capacity_mib,
            memory_type: m.device_type,
            speed_mhz: m.speed_mhz.and_then(|c| u32::try_from(c).ok()),
        })
        .collect();
    let nics = nics
        .into_iter()
        .map(|n| Nic {
            mac: n.mac.as_deref().and_then(|m| m.parse().ok()),
            id: n.id,
            speed_mbps: n.speed_mbps.and_then(|c| u32::try_from(c).ok()),
            link_up: n.link_status.map(|s| s == "LinkUp"),
        })
        .collect();
    let mut disks: Vec<Disk> = drives.into_iter().map(disk).collect();
    if disks.is_empty() {
        for ss in simple_storage {
            for (name, model, size) in ss.devices {
                disks.push(Disk {
                    id: name,
                    model,
                    serial_number: None,
                    size_bytes: size,
                    kind: DiskKind::Unknown,
                });
            }
        }
    }
    let mut firmware = Vec::new();
    if let Some(v) = &system.bios_version {
        firmware.push(FirmwareVersion {
            component: "BIOS".to_string(),
            version: v.clone(),
        });
    }
    for (id, version) in bmc_firmware {
        firmware.push(FirmwareVersion {
            component: format!("BMC {id}"),
            version,
        });
    }
    HardwareInventory {
        system: SystemIdentity {
            manufacturer: system.manufacturer,
            model: system.model,
            serial_number: system.serial_number,
            sku: system.sku,
            uuid: system.uuid,
            hostname: system.hostname,
        },
        cpus,
        memory,
        total_memory_mib: system.total_memory_gib.map(|g| (g * 1024.0).round() as u64),
        nics,
        disks,
        firmware,
    }
}
