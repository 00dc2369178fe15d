//! The Redfish ⇄ bmc-core vocabulary, with no I/O: power states and `ResetType`s, boot
//! targets and override states, media slots, and what a BMC can do from what discovery
//! found. Tested on the recorded trees.

use bmc_core::{
    BootDevice, BootMode, BootOverrideState, BootPersistence, Capabilities, MediaKind, PowerAction,
    PowerState, VirtualMediaSlot,
};

use crate::discovery::{Discovery, Slot};
use crate::model::{Boot, VirtualMedia};

/// The `ResetType`s to try for an action, best first.
pub fn reset_candidates(action: PowerAction) -> &'static [&'static str] {
    match action {
        PowerAction::On => &["On", "ForceOn"],
        PowerAction::Off => &["ForceOff"],
        PowerAction::SoftOff => &["GracefulShutdown", "PushPowerButton"],
        PowerAction::Reset => &["ForceRestart", "GracefulRestart", "PowerCycle"],
        PowerAction::PowerCycle => &["PowerCycle", "ForceRestart"],
    }
}

/// The `BootSourceOverrideTarget` for a boot device.
pub fn boot_target(device: &BootDevice) -> &str {
    match device {
        BootDevice::Pxe => "Pxe",
        BootDevice::Disk => "Hdd",
        BootDevice::Cd => "Cd",
        BootDevice::BiosSetup => "BiosSetup",
        BootDevice::UefiHttp => "UefiHttp",
        BootDevice::Other(s) => s,
        _ => "None",
    }
}

/// The boot device a `BootSourceOverrideTarget` names (`None` for `None`).
pub fn boot_device(target: &str) -> Option<BootDevice> {
    match target {
        "None" => None,
        "Pxe" => Some(BootDevice::Pxe),
        "Hdd" => Some(BootDevice::Disk),
        "Cd" | "UsbCd" => Some(BootDevice::Cd),
        "BiosSetup" => Some(BootDevice::BiosSetup),
        "UefiHttp" => Some(BootDevice::UefiHttp),
        other => Some(BootDevice::Other(other.to_string())),
    }
}

/// A `PowerState` as bmc-core says it.
pub fn power_state(s: Option<&str>) -> PowerState {
    match s {
        Some("On") => PowerState::On,
        Some("Off") => PowerState::Off,
        Some("PoweringOn") => PowerState::PoweringOn,
        Some("PoweringOff") => PowerState::PoweringOff,
        Some(other) => PowerState::Other(other.to_string()),
        None => PowerState::Other("unknown".to_string()),
    }
}

/// The media kinds a slot takes.
pub fn media_kinds(m: &VirtualMedia) -> Vec<MediaKind> {
    let mut kinds = Vec::new();
    if m.takes_cd() {
        kinds.push(MediaKind::Cd);
    }
    if m.takes_usb() {
        kinds.push(MediaKind::Usb);
    }
    kinds
}

/// A slot as bmc-core says it.
pub fn slot_state(slot: &Slot) -> VirtualMediaSlot {
    VirtualMediaSlot {
        id: slot.media.id.clone(),
        kinds: media_kinds(&slot.media),
        inserted: slot.media.is_inserted(),
        image: slot.media.image.clone(),
        write_protected: slot.media.write_protected,
    }
}

/// What plain Redfish says a BMC can do, from what discovery found: the power actions its
/// `ResetType`s allow, its boot targets, boot modes and persistence, its media slots.
pub fn capabilities(d: &Discovery) -> Capabilities {
    let allowed = |action: PowerAction| {
        d.system.reset.is_some()
            && (d.reset_types.is_empty()
                || reset_candidates(action)
                    .iter()
                    .any(|c| d.reset_types.iter().any(|t| t == c)))
    };
    let power_actions = [
        PowerAction::On,
        PowerAction::Off,
        PowerAction::SoftOff,
        PowerAction::Reset,
        PowerAction::PowerCycle,
    ]
    .into_iter()
    .filter(|a| allowed(*a))
    .collect();
    let boot = &d.system.boot;
    let boot_devices = if !boot.present {
        Vec::new()
    } else if boot.target_allowable.is_empty() {
        vec![
            BootDevice::Pxe,
            BootDevice::Disk,
            BootDevice::Cd,
            BootDevice::BiosSetup,
        ]
    } else {
        // `Cd` and `UsbCd` are both the CD: each device once.
        let mut devices: Vec<BootDevice> = Vec::new();
        for device in boot
            .target_allowable
            .iter()
            .filter_map(|t| boot_device(t))
            .filter(|b| !matches!(b, BootDevice::Other(_)))
        {
            if !devices.contains(&device) {
                devices.push(device);
            }
        }
        devices
    };
    let mut virtual_media = Vec::new();
    if d.cd().is_some() {
        virtual_media.push(MediaKind::Cd);
    }
    // A USB slot may still be among the slots not read yet.
    if d.usb().is_some() || !d.unread_slots.is_empty() {
        virtual_media.push(MediaKind::Usb);
    }
    Capabilities {
        power_actions,
        boot_devices,
        boot_modes: if boot.mode.is_some() || !boot.mode_allowable.is_empty() {
            vec![BootMode::Uefi, BootMode::Legacy]
        } else {
            Vec::new()
        },
        persistent_boot: boot.enabled_allowable.is_empty()
            || boot.enabled_allowable.iter().any(|e| e == "Continuous"),
        virtual_media,
        inventory: true,
    }
}

/// The boot override as bmc-core says it, from the system's `Boot`.
pub fn boot_override_state(boot: &Boot) -> BootOverrideState {
    let enabled = boot.enabled.as_deref();
    let active = !matches!(enabled, Some("Disabled"));
    BootOverrideState {
        device: if active {
            boot.target.as_deref().and_then(boot_device)
        } else {
            None
        },
        persistence: match enabled {
            Some("Once") => Some(BootPersistence::Once),
            Some("Continuous") => Some(BootPersistence::Persistent),
            _ => None,
        },
        mode: match boot.mode.as_deref() {
            Some("UEFI") => Some(BootMode::Uefi),
            Some("Legacy") => Some(BootMode::Legacy),
            _ => None,
        },
    }
}
