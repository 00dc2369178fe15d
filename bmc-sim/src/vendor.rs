//! What the simulated BMC does the vendor's way: which device a power-on boots (the
//! virtual CD, the physical drive, the network), Dell's configuration import and job
//! queue, HPE's OEM virtual-media actions and power button.
//!
//! The rules are pure functions over the resource map, so the HTTP layer stays thin.

use serde_json::{Value, json};

use crate::tree::{Resources, key};

/// Whose firmware the tree comes from, from its service root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimVendor {
    /// Plain Redfish: `Cd` boots the inserted virtual CD.
    Generic,
    /// Dell iDRAC: `Cd` boots the physical drive before firmware 6.00.02; the OEM
    /// one-time boot `VCD-DVD` (set by a configuration import) boots the virtual CD.
    Dell {
        /// Firmware 6.00.02 or later (virtual media under Systems, `Cd` boots it).
        cd_boots_virtual_media: bool,
    },
    /// HPE iLO: `Oem.Hpe.BootOnNextServerReset` on a slot boots it at the next reset;
    /// ejecting an empty slot fails.
    Hpe,
}

impl SimVendor {
    /// Reads the vendor from the service root and the first manager.
    pub fn detect(resources: &Resources) -> SimVendor {
        let root = resources.get(&key("/redfish/v1"));
        let oem = |name: &str| root.and_then(|r| r.get("Oem")).and_then(|o| o.get(name));
        let vendor = root
            .and_then(|r| r.get("Vendor"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if vendor == "Dell" || oem("Dell").is_some() {
            let firmware = resources
                .iter()
                .filter(|(k, _)| {
                    k.starts_with("/redfish/v1/managers/") && k.matches('/').count() == 4
                })
                .find_map(|(_, m)| m.get("FirmwareVersion").and_then(Value::as_str))
                .map(numbers)
                .unwrap_or_default();
            SimVendor::Dell {
                cd_boots_virtual_media: firmware.as_slice() >= [6, 0, 2].as_slice(),
            }
        } else if vendor == "HPE" || oem("Hpe").is_some() {
            SimVendor::Hpe
        } else {
            SimVendor::Generic
        }
    }
}

fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// What a power-on or reset booted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootSource {
    /// The virtual CD, with the image that was inserted.
    VirtualCd {
        /// The slot's path.
        slot: String,
        /// The image URL.
        image: String,
    },
    /// A device named by the boot override: `Pxe`, `Hdd`, `UefiHttp`, …; `PhysicalCd`
    /// when a `Cd` override boots the server's own optical drive (older iDRAC), `Cd`
    /// when the override asks for a CD and no virtual CD is inserted.
    Device(String),
    /// No override in force: the server's boot order.
    BootOrder,
}

/// A one-time or persistent boot set through Dell's configuration import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DellBoot {
    /// `ServerBoot.1#FirstBootDevice` (`VCD-DVD`, `VFDD`, `PXE`, `HDD`, …).
    pub device: String,
    /// `ServerBoot.1#BootOnce` was `Enabled`.
    pub once: bool,
}

/// Reads an attribute out of an SCP `ImportBuffer`: `<Attribute Name="NAME">VALUE<`.
fn scp_attribute<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let marker = format!("Name=\"{name}\">");
    let start = xml.find(&marker)? + marker.len();
    let rest = &xml[start..];
    Some(&rest[..rest.find('<')?])
}

/// Parses the boot part of an `ImportSystemConfiguration` body, or says what is wrong.
pub fn parse_dell_import(body: &Value) -> Result<DellBoot, String> {
    let buffer = body
        .get("ImportBuffer")
        .and_then(Value::as_str)
        .ok_or("ImportBuffer is required")?;
    if !buffer.starts_with("<SystemConfiguration") {
        return Err("ImportBuffer is not a system configuration".to_string());
    }
    let device = scp_attribute(buffer, "ServerBoot.1#FirstBootDevice")
        .ok_or("no ServerBoot.1#FirstBootDevice in the configuration")?;
    let once = match scp_attribute(buffer, "ServerBoot.1#BootOnce") {
        Some("Enabled") | None => true,
        Some("Disabled") => false,
        Some(other) => return Err(format!("BootOnce value {other} is not valid")),
    };
    if !matches!(
        device,
        "VCD-DVD" | "VFDD" | "PXE" | "HDD" | "Normal" | "BIOS"
    ) {
        return Err(format!("FirstBootDevice value {device} is not valid"));
    }
    Ok(DellBoot {
        device: device.to_string(),
        once,
    })
}

/// The CD-capable virtual-media slots a system can boot: its own, then the managers'.
fn cd_slots(resources: &Resources, system: &str) -> Vec<String> {
    let own = format!("{system}/virtualmedia/");
    let mut slots: Vec<String> = resources
        .iter()
        .filter(|(k, v)| {
            (k.starts_with(&own)
                || (k.starts_with("/redfish/v1/managers/") && k.contains("/virtualmedia/")))
                && v.get("MediaTypes")
                    .and_then(Value::as_array)
                    .is_some_and(|t| t.iter().any(|m| m == "CD" || m == "DVD"))
        })
        .map(|(k, _)| k.clone())
        .collect();
    // System slots first, then by path: the same choice every time.
    slots.sort_by_key(|k| (!k.starts_with(&own), k.clone()));
    slots
}

/// Every inserted image in a slot the system at `system` (a key) sees: its own slots,
/// then the managers', by path.
pub(crate) fn attached_media(
    resources: &Resources,
    system: &str,
) -> Vec<crate::redfish::AttachedMedia> {
    let own = format!("{system}/virtualmedia/");
    let mut slots: Vec<(&String, &Value)> = resources
        .iter()
        .filter(|(k, v)| {
            (k.starts_with(&own)
                || (k.starts_with("/redfish/v1/managers/") && k.contains("/virtualmedia/")))
                && v.get("MediaTypes").is_some()
        })
        .collect();
    slots.sort_by_key(|(k, _)| (!k.starts_with(&own), (*k).clone()));
    slots
        .into_iter()
        .filter_map(|(k, v)| {
            Some(crate::redfish::AttachedMedia {
                slot: v["@odata.id"].as_str().unwrap_or(k).to_string(),
                media_types: v["MediaTypes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                image: inserted_image(v)?,
            })
        })
        .collect()
}

fn inserted_image(slot: &Value) -> Option<String> {
    (slot.get("Inserted") == Some(&json!(true)))
        .then(|| {
            slot.get("Image")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .flatten()
        .filter(|i| !i.is_empty())
}

fn virtual_cd(resources: &Resources, system: &str) -> Option<BootSource> {
    cd_slots(resources, system).into_iter().find_map(|slot| {
        let image = resources.get(&slot).and_then(inserted_image)?;
        Some(BootSource::VirtualCd { slot, image })
    })
}

/// Decides what the system at `system` (a key) boots now, and consumes one-time settings
/// (a `Once` override, Dell's BootOnce, HPE's BootOnNextServerReset) as the BMC would.
pub fn boot(
    vendor: SimVendor,
    resources: &mut Resources,
    dell_boot: &mut Option<DellBoot>,
    system: &str,
) -> BootSource {
    if let SimVendor::Hpe = vendor {
        let flagged = cd_slots(resources, system).into_iter().find(|s| {
            resources
                .get(s)
                .is_some_and(|v| v["Oem"]["Hpe"]["BootOnNextServerReset"] == json!(true))
        });
        if let Some(slot) = flagged {
            let image = resources.get(&slot).and_then(inserted_image);
            if let Some(v) = resources.get_mut(&slot) {
                v["Oem"]["Hpe"]["BootOnNextServerReset"] = json!(false);
            }
            if let Some(image) = image {
                return BootSource::VirtualCd { slot, image };
            }
        }
    }
    if let Some(pending) = dell_boot.take() {
        if !pending.once {
            *dell_boot = Some(pending.clone());
        }
        if let Some(s) = resources.get_mut(system) {
            if pending.once {
                s["Boot"]["BootSourceOverrideEnabled"] = json!("Disabled");
            }
        }
        return match pending.device.as_str() {
            "VCD-DVD" => {
                virtual_cd(resources, system).unwrap_or(BootSource::Device("Cd".to_string()))
            }
            "PXE" => BootSource::Device("Pxe".to_string()),
            "HDD" => BootSource::Device("Hdd".to_string()),
            other => BootSource::Device(other.to_string()),
        };
    }
    let Some(sys) = resources.get_mut(system) else {
        return BootSource::BootOrder;
    };
    let enabled = sys["Boot"]["BootSourceOverrideEnabled"]
        .as_str()
        .unwrap_or("Disabled")
        .to_string();
    let target = sys["Boot"]["BootSourceOverrideTarget"]
        .as_str()
        .unwrap_or("None")
        .to_string();
    if enabled == "Disabled" || target == "None" {
        return BootSource::BootOrder;
    }
    if enabled == "Once" {
        sys["Boot"]["BootSourceOverrideEnabled"] = json!("Disabled");
    }
    match (target.as_str(), vendor) {
        (
            "Cd",
            SimVendor::Dell {
                cd_boots_virtual_media: false,
            },
        ) => BootSource::Device("PhysicalCd".to_string()),
        ("Cd" | "UsbCd", _) => {
            virtual_cd(resources, system).unwrap_or(BootSource::Device("Cd".to_string()))
        }
        _ => BootSource::Device(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dell_import_bodies_are_read_or_refused_with_a_reason() {
        let xml = "<SystemConfiguration><Component FQDD=\"iDRAC.Embedded.1\"><Attribute Name=\"ServerBoot.1#BootOnce\">Disabled</Attribute><Attribute Name=\"ServerBoot.1#FirstBootDevice\">VCD-DVD</Attribute></Component></SystemConfiguration>";
        let boot = parse_dell_import(&json!({"ImportBuffer": xml})).unwrap_or_else(|e| {
            unreachable!("{e}");
        });
        assert_eq!(
            boot,
            DellBoot {
                device: "VCD-DVD".into(),
                once: false
            }
        );
        assert!(parse_dell_import(&json!({})).is_err());
        assert!(parse_dell_import(&json!({"ImportBuffer": "<x/>"})).is_err());
        let bad = xml.replace("VCD-DVD", "Floppy9");
        assert!(parse_dell_import(&json!({"ImportBuffer": bad})).is_err());
    }
}
