//! The vocabulary every driver speaks: power, boot, virtual media, hardware inventory.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The power state a BMC reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PowerState {
    /// Powered on.
    On,
    /// Powered off.
    Off,
    /// Transitioning to on.
    PoweringOn,
    /// Transitioning to off.
    PoweringOff,
    /// A value this library does not know, kept as the BMC sent it.
    Other(String),
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PowerState::On => f.write_str("On"),
            PowerState::Off => f.write_str("Off"),
            PowerState::PoweringOn => f.write_str("PoweringOn"),
            PowerState::PoweringOff => f.write_str("PoweringOff"),
            PowerState::Other(s) => write!(f, "{s}"),
        }
    }
}

/// A power action to request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PowerAction {
    /// Power on.
    On,
    /// Hard power off, immediately.
    Off,
    /// Ask the operating system to shut down (ACPI), then off.
    SoftOff,
    /// Hard reset (warm reboot without removing power).
    Reset,
    /// Power off, then on again.
    PowerCycle,
}

impl PowerAction {
    /// The power state the BMC reports once the action has completed.
    pub fn target_state(self) -> PowerState {
        match self {
            PowerAction::Off | PowerAction::SoftOff => PowerState::Off,
            PowerAction::On | PowerAction::Reset | PowerAction::PowerCycle => PowerState::On,
        }
    }

    /// Whether the action does nothing useful when the host is already in its target state
    /// (on/off), so "already there" is success. Reset and power cycle always act.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            PowerAction::On | PowerAction::Off | PowerAction::SoftOff
        )
    }
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerAction::On => "power on",
            PowerAction::Off => "power off",
            PowerAction::SoftOff => "soft power off",
            PowerAction::Reset => "reset",
            PowerAction::PowerCycle => "power cycle",
        })
    }
}

/// A device to boot from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum BootDevice {
    /// Network boot (PXE/iPXE).
    Pxe,
    /// The local disk.
    Disk,
    /// CD/DVD, which on a BMC with virtual media means the virtual CD.
    Cd,
    /// The firmware's setup screen.
    BiosSetup,
    /// UEFI HTTP boot.
    UefiHttp,
    /// A value this library does not know, kept as the BMC sent it.
    Other(String),
}

impl fmt::Display for BootDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootDevice::Pxe => f.write_str("pxe"),
            BootDevice::Disk => f.write_str("disk"),
            BootDevice::Cd => f.write_str("cd"),
            BootDevice::BiosSetup => f.write_str("bios-setup"),
            BootDevice::UefiHttp => f.write_str("uefi-http"),
            BootDevice::Other(s) => f.write_str(s),
        }
    }
}

impl FromStr for BootDevice {
    type Err = String;
    /// Parses the names `Display` prints (case-insensitive), plus common aliases.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pxe" | "network" => Ok(BootDevice::Pxe),
            "disk" | "hdd" => Ok(BootDevice::Disk),
            "cd" | "cdrom" | "dvd" => Ok(BootDevice::Cd),
            "bios-setup" | "bios" | "setup" => Ok(BootDevice::BiosSetup),
            "uefi-http" | "http" => Ok(BootDevice::UefiHttp),
            _ => Err(format!(
                "unknown boot device '{s}' (expected pxe, disk, cd, bios-setup or uefi-http)"
            )),
        }
    }
}

/// Firmware boot mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BootMode {
    /// UEFI.
    Uefi,
    /// Legacy BIOS.
    Legacy,
}

impl fmt::Display for BootMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootMode::Uefi => "uefi",
            BootMode::Legacy => "legacy",
        })
    }
}

/// Whether a boot override applies to the next boot only or to every boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BootPersistence {
    /// Next boot only.
    Once,
    /// Every boot until changed.
    Persistent,
}

/// A boot override: which device, for how long, in which mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BootOverride {
    /// Device to boot from.
    pub device: BootDevice,
    /// Once or persistent.
    pub persistence: BootPersistence,
    /// Boot mode, or `None` to leave the firmware's mode unchanged.
    pub mode: Option<BootMode>,
}

impl BootOverride {
    /// Boot once from `device`, leaving the mode as it is.
    pub fn once(device: BootDevice) -> BootOverride {
        BootOverride {
            device,
            persistence: BootPersistence::Once,
            mode: None,
        }
    }

    /// Boot from `device` on every boot, leaving the mode as it is.
    pub fn persistent(device: BootDevice) -> BootOverride {
        BootOverride {
            device,
            persistence: BootPersistence::Persistent,
            mode: None,
        }
    }

    /// The same override with a boot mode.
    pub fn with_mode(mut self, mode: BootMode) -> BootOverride {
        self.mode = Some(mode);
        self
    }
}

/// The boot override a BMC reports: `None` device means no override is set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BootOverrideState {
    /// The override target, if one is set.
    pub device: Option<BootDevice>,
    /// Once or persistent, if the BMC says.
    pub persistence: Option<BootPersistence>,
    /// The boot mode, if the BMC says.
    pub mode: Option<BootMode>,
}

impl BootOverrideState {
    /// Whether this state satisfies `wanted`: the same device, the same mode when both a
    /// mode was asked for and the BMC reports one, and the same persistence, except that a
    /// persistent override satisfies a one-time request: the next boot uses the device
    /// either way. (Some BMCs and sushy-emulator keep every override continuous; the caller
    /// that needs the override gone afterwards sets the next boot device explicitly, as a
    /// conductor does with the disk after provisioning.)
    pub fn satisfies(&self, wanted: &BootOverride) -> bool {
        self.device.as_ref() == Some(&wanted.device)
            && self.persistence.is_none_or(|p| {
                p == wanted.persistence
                    || (wanted.persistence == BootPersistence::Once
                        && p == BootPersistence::Persistent)
            })
            && match (wanted.mode, self.mode) {
                (Some(w), Some(m)) => w == m,
                _ => true,
            }
    }
}

/// The kind of media a virtual-media slot takes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MediaKind {
    /// CD or DVD (an ISO image).
    Cd,
    /// USB stick (a disk image).
    Usb,
    /// Floppy.
    Floppy,
    /// A value this library does not know, kept as the BMC sent it.
    Other(String),
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaKind::Cd => f.write_str("cd"),
            MediaKind::Usb => f.write_str("usb"),
            MediaKind::Floppy => f.write_str("floppy"),
            MediaKind::Other(s) => f.write_str(s),
        }
    }
}

/// One virtual-media slot and what is in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualMediaSlot {
    /// The BMC's id for the slot (e.g. `CD`, `2`, `EXT1`).
    pub id: String,
    /// Media kinds the slot accepts.
    pub kinds: Vec<MediaKind>,
    /// Whether media is inserted.
    pub inserted: bool,
    /// The inserted image's URL, if any.
    pub image: Option<String>,
    /// Whether the media is write-protected, if the BMC says.
    pub write_protected: Option<bool>,
}

impl VirtualMediaSlot {
    /// Whether the slot accepts `kind`.
    pub fn accepts(&self, kind: &MediaKind) -> bool {
        self.kinds.contains(kind)
    }
}

/// A MAC address (EUI-48).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddress(pub [u8; 6]);

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddress({self})")
    }
}

impl FromStr for MacAddress {
    type Err = String;
    /// Parses `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid MAC address '{s}'");
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddress(out))
    }
}

impl Serialize for MacAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Who the system is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SystemIdentity {
    /// Manufacturer, e.g. `Dell Inc.`.
    pub manufacturer: Option<String>,
    /// Model, e.g. `PowerEdge R750`.
    pub model: Option<String>,
    /// Serial number / service tag.
    pub serial_number: Option<String>,
    /// SKU.
    pub sku: Option<String>,
    /// System UUID.
    pub uuid: Option<String>,
    /// Host name, if the BMC knows it.
    pub hostname: Option<String>,
}

/// One processor socket.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cpu {
    /// Socket or id as the BMC names it.
    pub id: String,
    /// Model string.
    pub model: Option<String>,
    /// Architecture, e.g. `x86_64`.
    pub architecture: Option<String>,
    /// Physical cores.
    pub cores: Option<u32>,
    /// Hardware threads.
    pub threads: Option<u32>,
    /// Maximum speed in MHz.
    pub max_speed_mhz: Option<u32>,
}

/// One memory module.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemoryModule {
    /// Slot or id as the BMC names it.
    pub id: String,
    /// Capacity in MiB.
    pub capacity_mib: Option<u64>,
    /// Type, e.g. `DDR5`.
    pub memory_type: Option<String>,
    /// Speed in MHz.
    pub speed_mhz: Option<u32>,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Nic {
    /// Id as the BMC names it.
    pub id: String,
    /// Permanent or current MAC address, if valid.
    pub mac: Option<MacAddress>,
    /// Link speed in Mbit/s.
    pub speed_mbps: Option<u32>,
    /// Whether the link is up, if the BMC says.
    pub link_up: Option<bool>,
}

/// The kind of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum DiskKind {
    /// Spinning disk.
    Hdd,
    /// SATA/SAS solid-state disk.
    Ssd,
    /// NVMe.
    Nvme,
    /// Unknown or unreported.
    Unknown,
}

/// One disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// Id or name as the BMC names it.
    pub id: String,
    /// Model.
    pub model: Option<String>,
    /// Serial number.
    pub serial_number: Option<String>,
    /// Capacity in bytes.
    pub size_bytes: Option<u64>,
    /// HDD, SSD, NVMe.
    pub kind: DiskKind,
}

/// The version of one firmware component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareVersion {
    /// Component, e.g. `BIOS`, `BMC`, `NIC.Integrated.1-1-1`.
    pub component: String,
    /// Version string.
    pub version: String,
}

/// What a BMC knows about the hardware behind it (out-of-band inspection).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HardwareInventory {
    /// System identity.
    pub system: SystemIdentity,
    /// Processors.
    pub cpus: Vec<Cpu>,
    /// Memory modules.
    pub memory: Vec<MemoryModule>,
    /// Total memory in MiB, when the BMC reports a summary.
    pub total_memory_mib: Option<u64>,
    /// Network interfaces.
    pub nics: Vec<Nic>,
    /// Disks.
    pub disks: Vec<Disk>,
    /// Firmware versions (BIOS, BMC, and others the BMC lists).
    pub firmware: Vec<FirmwareVersion>,
}
