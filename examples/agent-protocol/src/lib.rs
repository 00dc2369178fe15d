//! The agent protocol (modelled on Ironic's): the agent on a booted host looks its node
//! up by MAC addresses (`GET /v1/lookup?addresses=…`), then heartbeats
//! (`POST /v1/heartbeat/{node}`); each answer may carry a command, and the heartbeat after
//! it carries the result. Agent and conductor share these types, the inventory included.
//!
//! Delivery is at least once, as a conductor may be killed between committing an answer
//! and sending it: the command comes with every heartbeat until its result arrives (an
//! agent runs a command it already runs once), an agent sends its result until the
//! conductor takes it, and a token never used may be looked up again.
//!
//! A crate of its own, without I/O, so the agent takes the very types the conductor does
//! without linking the conductor (its HTTP server, BMC drivers and their TLS stack);
//! the conductor re-exports it as `metal3_conductor::agent_protocol`.
//!
//! ```
//! use metal3_agent_protocol::{AgentCommand, HeartbeatReply};
//! let reply: HeartbeatReply = serde_json::from_str(r#"{"command": {"command": "inspect"}}"#).unwrap();
//! assert_eq!(reply.command, Some(AgentCommand::Inspect));
//! ```

pub mod config_image;

use md5::Md5;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use bmc_core::{Cpu, Disk, DiskKind, HardwareInventory, Nic, SystemIdentity};
use provision_fsm::{ChecksumType, Image};

/// The header carrying the correlation id of a piece of work (`x-correlation-id`): sent
/// with admin requests and with the agent's heartbeats.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// A name as one segment of a URL path (`/` and `%` escaped): node names hold a
/// namespace and a slash.
pub fn path_segment(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

/// The look-up path for these MAC addresses.
pub fn lookup_path(macs: &[String]) -> String {
    format!("/v1/lookup?addresses={}", macs.join(","))
}

/// The heartbeat path of `node`.
pub fn heartbeat_path(node: &str) -> String {
    format!("/v1/heartbeat/{}", path_segment(node))
}

/// `GET /v1/lookup?addresses=mac,mac` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lookup {
    /// The node.
    pub node: String,
    /// The token for the node's heartbeats (random, for this boot of the agent only).
    pub agent_token: String,
    /// The correlation id of the work that booted the agent: the agent logs it and
    /// sends it back as the `x-correlation-id` header of its heartbeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// `POST /v1/heartbeat/{node}` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The token from the look-up.
    pub agent_token: String,
    /// The result of the last command, once it finished.
    pub command_result: Option<AgentResult>,
    /// What the agent logged since its last heartbeat, oldest first: kept in the node's
    /// history (at most [`MAX_LOG_LINES`] lines of [`MAX_LOG_LINE`] bytes each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log: Vec<String>,
}

/// The most log lines one heartbeat may carry into the node's history.
pub const MAX_LOG_LINES: usize = 50;
/// The longest log line kept; longer ones are cut.
pub const MAX_LOG_LINE: usize = 512;

/// `POST /v1/heartbeat/{node}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The next command, if any.
    pub command: Option<AgentCommand>,
}

/// The config drive the agent writes after the image (cloud-init's OpenStack layout).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDrive {
    /// `user_data`, as the host's Secret holds it.
    pub user_data: Option<String>,
    /// `network_data.json`.
    pub network_data: Option<Value>,
    /// `meta_data.json`.
    pub meta_data: Value,
}

/// What the agent is told to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AgentCommand {
    /// Download, check, write the image and then the config drive.
    InstallImage {
        /// The image.
        image: Image,
        /// The config drive.
        config_drive: ConfigDrive,
        /// The host's root device hints: the disk to write (boxed: most commands are
        /// small).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root_device_hints: Option<Box<RootDeviceHints>>,
    },
    /// Report the hardware inventory.
    Inspect,
    /// Erase the disks' metadata (partition tables, filesystem signatures): Metal3's
    /// `metadata` cleaning.
    EraseMetadata,
    /// Sync the disks and power the host off: the answer to a result that ends the
    /// agent's part (the conductor then checks by the BMC that the host is off).
    PowerOff,
    /// Sync the disks and restart the host.
    Reboot,
}

impl AgentCommand {
    /// The command's name (`install_image`, `inspect`, `erase_metadata`, `power_off`,
    /// `reboot`).
    pub fn name(&self) -> &'static str {
        match self {
            AgentCommand::InstallImage { .. } => "install_image",
            AgentCommand::Inspect => "inspect",
            AgentCommand::EraseMetadata => "erase_metadata",
            AgentCommand::PowerOff => "power_off",
            AgentCommand::Reboot => "reboot",
        }
    }
}

/// What the agent reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentResult {
    /// Success, or why not.
    pub error: Option<String>,
    /// Bytes written.
    pub bytes: u64,
    /// The inventory, answering `inspect`.
    #[serde(default)]
    pub inventory: Option<AgentInventory>,
    /// The config drive written, answering `install_image`.
    #[serde(default)]
    pub config_drive: Option<ConfigDrive>,
}

impl AgentResult {
    /// A failure with this reason.
    pub fn failed(error: impl Into<String>) -> AgentResult {
        AgentResult {
            error: Some(error.into()),
            ..AgentResult::default()
        }
    }
}

/// The hardware inventory the agent reports, in ironic-python-agent's layout (the fields
/// Metal3 reads). Every field may be missing: agents on odd hardware leave things out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInventory {
    /// `system_vendor`.
    #[serde(default)]
    pub system_vendor: AgentSystemVendor,
    /// `cpu`.
    #[serde(default)]
    pub cpu: AgentCpu,
    /// `memory`.
    #[serde(default)]
    pub memory: AgentMemory,
    /// `interfaces`.
    #[serde(default)]
    pub interfaces: Vec<AgentInterface>,
    /// `disks`.
    #[serde(default)]
    pub disks: Vec<AgentDisk>,
    /// `boot`.
    #[serde(default)]
    pub boot: AgentBoot,
}

/// `boot` of an agent inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentBoot {
    /// `uefi` or `bios`.
    #[serde(default)]
    pub current_boot_mode: Option<String>,
}

/// `system_vendor` of an agent inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSystemVendor {
    /// Manufacturer.
    #[serde(default)]
    pub manufacturer: Option<String>,
    /// Product name.
    #[serde(default)]
    pub product_name: Option<String>,
    /// Serial number.
    #[serde(default)]
    pub serial_number: Option<String>,
}

/// `cpu` of an agent inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCpu {
    /// Logical CPUs.
    #[serde(default)]
    pub count: Option<u32>,
    /// Model name.
    #[serde(default)]
    pub model_name: Option<String>,
    /// Architecture (`x86_64`).
    #[serde(default)]
    pub architecture: Option<String>,
    /// CPU flags (`vmx`, `svm`, `avx2`…).
    #[serde(default)]
    pub flags: Vec<String>,
}

/// `memory` of an agent inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMemory {
    /// Physical memory in MiB.
    #[serde(default)]
    pub physical_mb: Option<u64>,
    /// Memory the kernel can use, in bytes.
    #[serde(default)]
    pub total: Option<u64>,
}

/// One of `interfaces` of an agent inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInterface {
    /// Kernel name (`enp1s0`).
    #[serde(default)]
    pub name: String,
    /// MAC address.
    #[serde(default)]
    pub mac_address: Option<String>,
    /// Link speed.
    #[serde(default)]
    pub speed_mbps: Option<u32>,
    /// A cable is in and the link is up.
    #[serde(default)]
    pub has_carrier: Option<bool>,
    /// The kernel driver (`e1000e`, `virtio_net`).
    #[serde(default)]
    pub driver: Option<String>,
    /// The first IPv4 address.
    #[serde(default)]
    pub ipv4_address: Option<String>,
    /// The first global IPv6 address.
    #[serde(default)]
    pub ipv6_address: Option<String>,
}

/// One of `disks` of an agent inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentDisk {
    /// Device name (`/dev/sda`).
    #[serde(default)]
    pub name: String,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Serial number.
    #[serde(default)]
    pub serial: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// A spinning disk.
    #[serde(default)]
    pub rotational: Option<bool>,
    /// Vendor.
    #[serde(default)]
    pub vendor: Option<String>,
    /// World Wide Name (`0x5000c500…`).
    #[serde(default)]
    pub wwn: Option<String>,
    /// The WWN with its vendor extension.
    #[serde(default)]
    pub wwn_with_extension: Option<String>,
    /// The WWN's vendor extension.
    #[serde(default)]
    pub wwn_vendor_extension: Option<String>,
    /// SCSI host:channel:target:lun.
    #[serde(default)]
    pub hctl: Option<String>,
    /// `/dev/disk/by-path/…`.
    #[serde(default)]
    pub by_path: Option<String>,
}

/// A BareMetalHost's `rootDeviceHints` (Metal3's field names): the disk to install on
/// is the first one matching all hints given. As Metal3 turns them into Ironic's:
/// `model` and `vendor` match a substring, `minSizeGigabytes` a size at least that many
/// GiB, the others exactly; `deviceName` is a kernel name or a `/dev/disk/by-path` link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RootDeviceHints {
    /// `deviceName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// `hctl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hctl: Option<String>,
    /// `model` (a substring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// `vendor` (a substring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// `serialNumber`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// `minSizeGigabytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size_gigabytes: Option<u64>,
    /// `wwn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
    /// `wwnWithExtension`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn_with_extension: Option<String>,
    /// `wwnVendorExtension`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn_vendor_extension: Option<String>,
    /// `rotational`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotational: Option<bool>,
}

/// The smallest disk Ironic's agent installs on when no hint is given (4 GiB).
pub const MIN_ROOT_DISK_BYTES: u64 = 4 << 30;

impl RootDeviceHints {
    /// No hint given.
    pub fn is_empty(&self) -> bool {
        *self == RootDeviceHints::default()
    }

    /// Whether `disk` matches every hint given.
    pub fn matches(&self, disk: &AgentDisk) -> bool {
        let exact = |hint: &Option<String>, value: &Option<String>| {
            hint.as_ref()
                .is_none_or(|h| value.as_deref().is_some_and(|v| v.trim() == h.trim()))
        };
        let within = |hint: &Option<String>, value: &Option<String>| {
            hint.as_ref().is_none_or(|h| {
                value
                    .as_deref()
                    .is_some_and(|v| v.to_lowercase().contains(&h.trim().to_lowercase()))
            })
        };
        let name = self.device_name.as_ref().is_none_or(|h| {
            let short = |s: &str| s.trim_start_matches("/dev/").to_string();
            short(h) == short(&disk.name) || disk.by_path.as_deref() == Some(h.as_str())
        });
        name && exact(&self.hctl, &disk.hctl)
            && within(&self.model, &disk.model)
            && within(&self.vendor, &disk.vendor)
            && exact(&self.serial_number, &disk.serial)
            && exact(&self.wwn, &disk.wwn)
            && exact(&self.wwn_with_extension, &disk.wwn_with_extension)
            && exact(&self.wwn_vendor_extension, &disk.wwn_vendor_extension)
            && self.rotational.is_none_or(|r| disk.rotational == Some(r))
            && self
                .min_size_gigabytes
                .is_none_or(|g| disk.size.is_some_and(|s| s >> 30 >= g))
    }

    /// The disk to install on: the first matching every hint, or, with no hint, the
    /// smallest of at least [`MIN_ROOT_DISK_BYTES`] (as Ironic's agent chooses). `Err`
    /// says what was looked for among which disks.
    pub fn choose<'a>(&self, disks: &'a [AgentDisk]) -> Result<&'a AgentDisk, String> {
        let found = if self.is_empty() {
            disks
                .iter()
                .filter(|d| d.size.is_some_and(|s| s >= MIN_ROOT_DISK_BYTES))
                .min_by_key(|d| d.size)
        } else {
            disks.iter().find(|d| self.matches(d))
        };
        found.ok_or_else(|| {
            let names: Vec<&str> = disks.iter().map(|d| d.name.as_str()).collect();
            if self.is_empty() {
                format!("no disk of at least 4 GiB among {names:?}")
            } else {
                format!(
                    "no disk matches the root device hints {} among {names:?}",
                    serde_json::to_string(self).unwrap_or_default()
                )
            }
        })
    }
}

impl AgentInventory {
    /// The inventory in bmc-core's vocabulary (what out-of-band inspection gives too). A
    /// MAC address that does not parse is left out of its NIC, not taken as another.
    pub fn to_hardware(&self) -> HardwareInventory {
        let nics = self
            .interfaces
            .iter()
            .map(|n| Nic {
                id: n.name.clone(),
                mac: n.mac_address.as_deref().and_then(|m| m.parse().ok()),
                speed_mbps: n.speed_mbps,
                link_up: None,
            })
            .collect();
        let disks = self
            .disks
            .iter()
            .map(|d| Disk {
                id: d.name.clone(),
                model: d.model.clone(),
                serial_number: d.serial.clone(),
                size_bytes: d.size,
                kind: if d.rotational == Some(true) {
                    DiskKind::Hdd
                } else {
                    DiskKind::Unknown
                },
            })
            .collect();
        let mut inventory = HardwareInventory {
            system: SystemIdentity {
                manufacturer: self.system_vendor.manufacturer.clone(),
                model: self.system_vendor.product_name.clone(),
                serial_number: self.system_vendor.serial_number.clone(),
                ..SystemIdentity::default()
            },
            total_memory_mib: self.memory.physical_mb,
            nics,
            disks,
            ..HardwareInventory::default()
        };
        if self.cpu.count.is_some() || self.cpu.model_name.is_some() {
            inventory.cpus.push(Cpu {
                id: "agent".to_string(),
                model: self.cpu.model_name.clone(),
                architecture: self.cpu.architecture.clone(),
                cores: None,
                threads: self.cpu.count,
                max_speed_mhz: None,
            });
        }
        inventory
    }
}

/// The lower-case hex digest of `data` by `kind` (resolved from `auto` with `expected`'s
/// length).
pub fn checksum(data: &[u8], kind: &ChecksumType, expected: &str) -> Result<String, String> {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    Ok(match kind.resolve(expected)? {
        ChecksumType::Md5 => hex(&Md5::digest(data)),
        ChecksumType::Sha256 => hex(&Sha256::digest(data)),
        ChecksumType::Sha512 => hex(&Sha512::digest(data)),
        other => return Err(format!("checksum type {other} is not one Metal3 allows")),
    })
}

/// Checks downloaded image bytes against the image's checksum, when it has one.
pub fn verify_image(image: &Image, data: &[u8]) -> Result<(), String> {
    let Some(expected) = image.checksum.as_deref() else {
        return Ok(());
    };
    let kind = image.checksum_type.clone().unwrap_or(ChecksumType::Auto);
    let actual = checksum(data, &kind, expected)?;
    if actual.eq_ignore_ascii_case(expected.trim()) {
        Ok(())
    } else {
        Err(format!(
            "checksum mismatch for {}: expected {expected}, got {actual}",
            image.url
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_of_every_allowed_type_and_auto() {
        let md5 = "5d41402abc4b2a76b9719d911017c592";
        assert_eq!(
            checksum(b"hello", &ChecksumType::Md5, md5).as_deref(),
            Ok(md5)
        );
        let sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(
            checksum(b"hello", &ChecksumType::Auto, sha256).as_deref(),
            Ok(sha256)
        );
        assert_eq!(
            checksum(b"hello", &ChecksumType::Sha512, "").map(|s| s.len()),
            Ok(128)
        );
        assert!(checksum(b"hello", &ChecksumType::Other("crc32".into()), "x").is_err());
        assert!(checksum(b"hello", &ChecksumType::Auto, "abc").is_err());
        let mut image = Image::at("http://x/os.img");
        image.checksum = Some(sha256.to_uppercase());
        assert_eq!(verify_image(&image, b"hello"), Ok(()));
        assert!(verify_image(&image, b"hellO").is_err_and(|e| e.contains("mismatch")));
    }

    fn disk(name: &str, gib: u64) -> AgentDisk {
        AgentDisk {
            name: name.into(),
            size: Some(gib << 30),
            ..AgentDisk::default()
        }
    }

    #[test]
    fn root_device_hints_choose_as_metal3_and_ironic_do() {
        let mut sda = disk("/dev/sda", 480);
        sda.model = Some("SAMSUNG MZ7LH480".into());
        sda.vendor = Some("ATA".into());
        sda.serial = Some("S45NNE0M".into());
        sda.rotational = Some(false);
        sda.hctl = Some("0:0:0:0".into());
        sda.wwn = Some("0x5002538e00000001".into());
        let mut sdb = disk("/dev/sdb", 2000);
        sdb.rotational = Some(true);
        sdb.by_path = Some("/dev/disk/by-path/pci-0000:00:17.0-ata-2".into());
        let tiny = disk("/dev/sdc", 2);
        let disks = vec![sda, sdb, tiny];
        let hints = |json: serde_json::Value| -> RootDeviceHints {
            serde_json::from_value(json).unwrap_or_else(|e| unreachable!("{e}"))
        };
        let chosen = |h: RootDeviceHints| h.choose(&disks).map(|d| d.name.clone());
        // No hint: the smallest disk of at least 4 GiB.
        assert_eq!(
            chosen(RootDeviceHints::default()).as_deref(),
            Ok("/dev/sda")
        );
        assert_eq!(
            chosen(hints(serde_json::json!({"rotational": true}))).as_deref(),
            Ok("/dev/sdb")
        );
        assert_eq!(
            chosen(hints(serde_json::json!({"model": "mz7lh"}))).as_deref(),
            Ok("/dev/sda")
        );
        assert_eq!(
            chosen(hints(serde_json::json!({"minSizeGigabytes": 500}))).as_deref(),
            Ok("/dev/sdb")
        );
        assert_eq!(
            chosen(hints(serde_json::json!({"deviceName": "sdb"}))).as_deref(),
            Ok("/dev/sdb")
        );
        assert_eq!(
            chosen(hints(
                serde_json::json!({"deviceName": "/dev/disk/by-path/pci-0000:00:17.0-ata-2"})
            ))
            .as_deref(),
            Ok("/dev/sdb")
        );
        assert_eq!(
            chosen(hints(serde_json::json!({"hctl": "0:0:0:0", "wwn": "0x5002538e00000001", "serialNumber": "S45NNE0M"}))).as_deref(),
            Ok("/dev/sda")
        );
        // Every hint must match; the error names the hints and the disks.
        let err = chosen(hints(
            serde_json::json!({"model": "MZ7LH", "rotational": true}),
        ))
        .unwrap_err();
        assert!(
            err.contains("\"rotational\":true") && err.contains("/dev/sdc"),
            "{err}"
        );
        assert!(RootDeviceHints::default().choose(&disks[2..]).is_err());
    }

    #[test]
    fn an_ironic_python_agent_inventory_reads_and_maps_with_gaps_tolerated() {
        let inventory: AgentInventory = serde_json::from_value(serde_json::json!({
            "system_vendor": {"manufacturer": "Dell Inc.", "product_name": "PowerEdge R750"},
            "cpu": {"count": 64, "model_name": "Xeon", "architecture": "x86_64", "flags": ["vmx"]},
            "memory": {"physical_mb": 262144, "total": 274877906944u64},
            "interfaces": [{"name": "eno1", "mac_address": "B0:7B:25:00:00:01"},
                           {"name": "bad", "mac_address": "not-a-mac"}],
            "disks": [{"name": "/dev/sda", "size": 480103981056u64, "rotational": false}],
            "boot": {"current_boot_mode": "uefi"}
        }))
        .unwrap_or_else(|e| unreachable!("{e}"));
        let hw = inventory.to_hardware();
        assert_eq!(hw.system.model.as_deref(), Some("PowerEdge R750"));
        assert_eq!(hw.total_memory_mib, Some(262_144));
        assert_eq!(hw.cpus[0].threads, Some(64));
        assert_eq!(
            hw.nics[0].mac.as_ref().map(ToString::to_string).as_deref(),
            Some("b0:7b:25:00:00:01")
        );
        assert!(hw.nics[1].mac.is_none());
        assert_eq!(hw.disks[0].size_bytes, Some(480_103_981_056));
        let empty: AgentInventory =
            serde_json::from_str("{}").unwrap_or_else(|e| unreachable!("{e}"));
        assert!(empty.to_hardware().cpus.is_empty());
    }
}
