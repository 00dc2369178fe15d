//! Chassis and application answers the driver reads: Get Chassis Status, the boot-flags
//! parameter (5) of Get/Set System Boot Options, Get Device ID and Get System GUID.
//! Decoders take the response data after the completion code.

use super::CodecError;

fn need(what: &'static str, data: &[u8], n: usize) -> Result<(), CodecError> {
    if data.len() < n {
        return Err(CodecError::Truncated {
            what,
            have: data.len(),
            need: n,
        });
    }
    Ok(())
}

/// Get Chassis Status (netfn chassis, cmd 0x01), the current power state byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChassisStatus {
    /// System power is on.
    pub power_on: bool,
    /// A power overload was detected.
    pub overload: bool,
    /// A power interlock is active.
    pub interlock: bool,
    /// The main power subsystem reports a fault.
    pub power_fault: bool,
    /// The power control failed to change the power state.
    pub control_fault: bool,
}

impl ChassisStatus {
    /// Decodes the answer (at least the current-power-state byte).
    pub fn decode(data: &[u8]) -> Result<ChassisStatus, CodecError> {
        need("Get Chassis Status", data, 1)?;
        let b = data[0];
        Ok(ChassisStatus {
            power_on: b & 0x01 != 0,
            overload: b & 0x02 != 0,
            interlock: b & 0x04 != 0,
            power_fault: b & 0x08 != 0,
            control_fault: b & 0x10 != 0,
        })
    }
}

/// The boot device selector of the boot flags (bits 5:2 of data byte 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootSelector {
    /// No override.
    NoOverride,
    /// PXE.
    Pxe,
    /// Default hard drive.
    Disk,
    /// Default CD/DVD.
    Cd,
    /// BIOS setup.
    BiosSetup,
    /// Any other selector value (diagnostics, floppy, remote media, …).
    Other(u8),
}

impl BootSelector {
    fn code(self) -> u8 {
        match self {
            BootSelector::NoOverride => 0x00,
            BootSelector::Pxe => 0x01,
            BootSelector::Disk => 0x02,
            BootSelector::Cd => 0x05,
            BootSelector::BiosSetup => 0x06,
            BootSelector::Other(c) => c & 0x0f,
        }
    }

    fn from_code(c: u8) -> BootSelector {
        match c & 0x0f {
            0x00 => BootSelector::NoOverride,
            0x01 => BootSelector::Pxe,
            0x02 => BootSelector::Disk,
            0x05 => BootSelector::Cd,
            0x06 => BootSelector::BiosSetup,
            other => BootSelector::Other(other),
        }
    }
}

/// Boot options parameter 5, the boot flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootFlags {
    /// The flags are valid (the override is in force).
    pub valid: bool,
    /// Applies to all future boots, not only the next.
    pub persistent: bool,
    /// EFI boot rather than legacy.
    pub uefi: bool,
    /// The device.
    pub device: BootSelector,
}

/// The parameter selector of the boot flags.
pub const BOOT_FLAGS_PARAMETER: u8 = 0x05;

impl BootFlags {
    /// Decodes a Get System Boot Options answer for parameter 5:
    /// `[version, parameter, flags, device, …]`.
    pub fn decode(data: &[u8]) -> Result<BootFlags, CodecError> {
        need("Get System Boot Options (5)", data, 4)?;
        let parameter = data[1] & 0x7f;
        if parameter != BOOT_FLAGS_PARAMETER {
            return Err(CodecError::Unexpected {
                what: "boot options parameter",
                value: u32::from(parameter),
            });
        }
        let flags = data[2];
        Ok(BootFlags {
            valid: flags & 0x80 != 0,
            persistent: flags & 0x40 != 0,
            uefi: flags & 0x20 != 0,
            device: BootSelector::from_code(data[3] >> 2),
        })
    }

    /// The Set System Boot Options request data: `[5, flags, device, 0, 0, 0]`.
    pub fn encode(&self) -> [u8; 6] {
        let mut flags = 0;
        if self.valid {
            flags |= 0x80;
        }
        if self.persistent {
            flags |= 0x40;
        }
        if self.uefi {
            flags |= 0x20;
        }
        [
            BOOT_FLAGS_PARAMETER,
            flags,
            self.device.code() << 2,
            0,
            0,
            0,
        ]
    }
}

/// Get Device ID (netfn app, cmd 0x01).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceId {
    /// Device ID.
    pub device_id: u8,
    /// Device revision (low nibble).
    pub revision: u8,
    /// Firmware major revision (7 bits).
    pub firmware_major: u8,
    /// Firmware minor revision (BCD).
    pub firmware_minor: u8,
    /// IANA manufacturer id (20 bits), when sent.
    pub manufacturer: Option<u32>,
    /// Product id, when sent.
    pub product: Option<u16>,
}

impl DeviceId {
    /// Decodes the answer (the first 6 bytes are required, manufacturer and product are
    /// optional as some BMCs cut the answer short).
    pub fn decode(data: &[u8]) -> Result<DeviceId, CodecError> {
        need("Get Device ID", data, 6)?;
        let manufacturer = data
            .get(6..9)
            .map(|m| u32::from_le_bytes([m[0], m[1], m[2] & 0x0f, 0]));
        let product = data.get(9..11).map(|p| u16::from_le_bytes([p[0], p[1]]));
        Ok(DeviceId {
            device_id: data[0],
            revision: data[1] & 0x0f,
            firmware_major: data[2] & 0x7f,
            firmware_minor: data[3],
            manufacturer,
            product,
        })
    }

    /// The firmware version as ipmitool prints it (`1.05`).
    pub fn firmware(&self) -> String {
        format!("{}.{:02x}", self.firmware_major, self.firmware_minor)
    }
}

/// Decodes Get System GUID (16 bytes, least significant first, SMBIOS order) into the
/// canonical UUID text.
pub fn decode_guid(data: &[u8]) -> Result<String, CodecError> {
    need("Get System GUID", data, 16)?;
    let h: String = data[..16]
        .iter()
        .rev()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_flags_round_trip_and_short_answers_are_errors() {
        let flags = BootFlags {
            valid: true,
            persistent: false,
            uefi: true,
            device: BootSelector::Pxe,
        };
        let req = flags.encode();
        assert_eq!(req, [0x05, 0xa0, 0x04, 0, 0, 0]);
        // An answer echoes version and parameter before the same two bytes.
        let answer = [0x01, 0x05, req[1], req[2], 0, 0, 0];
        assert_eq!(BootFlags::decode(&answer), Ok(flags));
        assert!(BootFlags::decode(&[0x01, 0x05, 0x80]).is_err());
        assert!(BootFlags::decode(&[0x01, 0x04, 0x80, 0x04]).is_err());
        assert_eq!(
            BootFlags::decode(&[0x01, 0x85, 0x00, 0x3c]).map(|f| f.device),
            Ok(BootSelector::Other(0x0f))
        );
    }

    #[test]
    fn device_id_and_guid_decode_as_ipmitool_prints_them() {
        let id = DeviceId::decode(&[
            0x20, 0x01, 0x02, 0x05, 0x02, 0xbf, 0x57, 0x01, 0x00, 0x34, 0x12,
        ])
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(id.firmware(), "2.05");
        assert_eq!(id.manufacturer, Some(343));
        assert_eq!(id.product, Some(0x1234));
        let short = DeviceId::decode(&[0x20, 0x01, 0x02, 0x05, 0x02, 0xbf]);
        assert_eq!(short.map(|d| d.manufacturer), Ok(None));
        let guid: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            decode_guid(&guid).as_deref(),
            Ok("0f0e0d0c-0b0a-0908-0706-050403020100")
        );
        assert!(decode_guid(&guid[..15]).is_err());
        assert!(ChassisStatus::decode(&[]).is_err());
        assert!(ChassisStatus::decode(&[0x09]).is_ok_and(|s| s.power_on && s.power_fault));
    }
}
