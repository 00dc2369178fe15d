//! Server Configuration Profile (SCP) buffers for `ImportSystemConfiguration`: the one
//! OEM way to make an iDRAC boot its virtual CD (plain `Cd` boots the physical drive on
//! much of its firmware).

use bmc_core::BootPersistence;

/// The iDRAC one-time/persistent boot devices that an SCP import can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScpBootDevice {
    /// The virtual CD/DVD (`VCD-DVD`).
    VirtualCd,
    /// The virtual floppy (`VFDD`).
    VirtualFloppy,
}

impl ScpBootDevice {
    /// The `ServerBoot.1#FirstBootDevice` value.
    pub fn attribute_value(self) -> &'static str {
        match self {
            ScpBootDevice::VirtualCd => "VCD-DVD",
            ScpBootDevice::VirtualFloppy => "VFDD",
        }
    }
}

/// The `ImportBuffer` that sets the first boot device, once or persistently. iDRAC
/// wants it without insignificant whitespace.
///
/// ```
/// use bmc_core::BootPersistence;
/// use bmc_idrac::scp::{ScpBootDevice, boot_buffer};
///
/// let xml = boot_buffer("iDRAC.Embedded.1", ScpBootDevice::VirtualCd, BootPersistence::Once);
/// assert!(xml.contains(r#"<Attribute Name="ServerBoot.1#BootOnce">Enabled</Attribute>"#));
/// assert!(xml.contains(r#"<Attribute Name="ServerBoot.1#FirstBootDevice">VCD-DVD</Attribute>"#));
/// assert!(!xml.contains('\n'));
/// ```
pub fn boot_buffer(
    manager_id: &str,
    device: ScpBootDevice,
    persistence: BootPersistence,
) -> String {
    let once = match persistence {
        BootPersistence::Once => "Enabled",
        BootPersistence::Persistent => "Disabled",
    };
    format!(
        "<SystemConfiguration><Component FQDD=\"{}\"><Attribute Name=\"ServerBoot.1#BootOnce\">{once}</Attribute><Attribute Name=\"ServerBoot.1#FirstBootDevice\">{}</Attribute></Component></SystemConfiguration>",
        xml_escape(manager_id),
        device.attribute_value()
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole `ImportSystemConfiguration` request body for a boot-device change.
pub fn boot_import_body(
    manager_id: &str,
    device: ScpBootDevice,
    persistence: BootPersistence,
) -> serde_json::Value {
    serde_json::json!({
        "ShareParameters": {"Target": ["ALL"]},
        "ImportBuffer": boot_buffer(manager_id, device, persistence),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_boot_disables_boot_once_and_ids_are_escaped() {
        let xml = boot_buffer(
            "iDRAC\"<x>",
            ScpBootDevice::VirtualFloppy,
            BootPersistence::Persistent,
        );
        assert!(xml.contains(">Disabled<"));
        assert!(xml.contains(">VFDD<"));
        assert!(xml.contains("FQDD=\"iDRAC&quot;&lt;x&gt;\""));
        let body = boot_import_body(
            "iDRAC.Embedded.1",
            ScpBootDevice::VirtualCd,
            BootPersistence::Once,
        );
        assert_eq!(body["ShareParameters"]["Target"][0], "ALL");
    }
}
