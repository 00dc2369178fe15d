//! Where the agent learns its conductor: the config image (a FAT volume labelled
//! `config-2` in a second virtual-media slot, holding `metal3/agent.json` beside the
//! OpenStack files), else the kernel command line (`metal3.conductor=URL`). One shared
//! agent ISO thus serves every host: what differs per host travels in a few KiB.
//!
//! ```
//! use metal3_agent::config::{AgentSection, from_cmdline};
//! let section = from_cmdline("console=ttyS0 metal3.conductor=https://10.0.0.1:6385 quiet");
//! assert_eq!(section, Some(AgentSection { conductor_url: "https://10.0.0.1:6385".into(), ca_pem: None }));
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::configdrive::{LABEL, read_fat_image};
use crate::inspect::sorted_names;

pub use metal3_agent_protocol::config_image::{AGENT_SECTION, AgentSection, NETWORK_DATA};

/// The agent's section from a config image's files; `Err` if it is there but wrong.
pub fn from_config_files(
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<Option<AgentSection>, String> {
    match files.get(AGENT_SECTION) {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|e| format!("{AGENT_SECTION} in the config image: {e}")),
    }
}

/// The agent's section from a kernel command line (`metal3.conductor=URL`).
pub fn from_cmdline(cmdline: &str) -> Option<AgentSection> {
    cmdline.split_whitespace().find_map(|word| {
        word.strip_prefix("metal3.conductor=")
            .map(|url| AgentSection {
                conductor_url: url.to_string(),
                ca_pem: None,
            })
    })
}

/// Block devices under `root/sys/block` (whole disks and their partitions) whose first
/// sector is a FAT boot sector labelled `config-2`: the config image candidates, by
/// their device file in `dev`.
pub fn find_config_devices(root: &Path, dev: &Path) -> Vec<PathBuf> {
    let block = root.join("sys/block");
    let mut names = Vec::new();
    for disk in sorted_names(&block) {
        let partitions = sorted_names(&block.join(&disk)).into_iter().filter(|p| {
            p.starts_with(&disk) && block.join(&disk).join(p).join("partition").exists()
        });
        names.extend(partitions);
        names.push(disk);
    }
    names.sort();
    names
        .into_iter()
        .map(|n| dev.join(n))
        .filter(|path| is_config_image(path))
        .collect()
}

/// The config image inside the agent ISO's slot (the file
/// [`ISO_SLOT_PATH`](metal3_agent_protocol::config_image::ISO_SLOT_PATH)) on the first
/// ISO9660 device under `root/sys/block` whose slot is filled: how a host whose BMC has
/// one virtual-media slot gets its configuration (the conductor streams it the shared ISO
/// with the slot filled). The device and the image's files; `None` when no device has a
/// filled slot (the shared ISO as built has it empty).
pub fn find_iso_slot(root: &Path, dev: &Path) -> Option<(PathBuf, BTreeMap<String, Vec<u8>>)> {
    use metal3_agent_protocol::config_image::{ISO_SLOT_MAGIC, ISO_SLOT_PATH};
    // An agent ISO is tens of MiB: larger devices are not read whole.
    const MAX_ISO: u64 = 256 << 20;
    let block = root.join("sys/block");
    sorted_names(&block).into_iter().find_map(|name| {
        let sectors: u64 = std::fs::read_to_string(block.join(&name).join("size"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let path = dev.join(&name);
        if sectors * 512 > MAX_ISO || !is_iso(&path) {
            return None;
        }
        let bytes = std::fs::read(&path).ok()?;
        let (_, files) = crate::iso9660::read(&bytes).ok()?;
        let slot = files.get(ISO_SLOT_PATH)?;
        if slot.starts_with(ISO_SLOT_MAGIC) {
            return None;
        }
        match read_fat_image(slot) {
            Ok(files) => Some((path, files)),
            Err(e) => {
                tracing::warn!(device = %path.display(), error = %e, "the ISO's config-image slot does not read");
                None
            }
        }
    })
}

/// Whether the device or file at `path` starts an ISO9660 volume.
fn is_iso(path: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let mut descriptor = [0u8; 6];
    std::fs::File::open(path)
        .and_then(|f| f.read_exact_at(&mut descriptor, 16 * 2048))
        .is_ok_and(|()| descriptor[0] == 1 && &descriptor[1..6] == b"CD001")
}

/// Whether the device or file at `path` holds a volume labelled `config-2`.
pub fn is_config_image(path: &Path) -> bool {
    label_of(path).is_some_and(|l| l.eq_ignore_ascii_case(LABEL))
}

/// The label of a FAT or ISO9660 volume on a device or in a file.
fn label_of(path: &Path) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).ok()?;
    let mut sector = [0u8; 512];
    file.read_exact_at(&mut sector, 0).ok()?;
    if let Some(label) = fat_label(&sector) {
        return Some(label);
    }
    // ISO9660: the primary volume descriptor at block 16, its label at byte 40.
    let mut descriptor = [0u8; 72];
    file.read_exact_at(&mut descriptor, 16 * 2048).ok()?;
    (descriptor[0] == 1 && &descriptor[1..6] == b"CD001").then(|| {
        String::from_utf8_lossy(&descriptor[40..72])
            .trim()
            .to_string()
    })
}

/// The volume label in a FAT boot sector (FAT12/16 or FAT32 layout).
fn fat_label(sector: &[u8; 512]) -> Option<String> {
    if sector[510..512] != [0x55, 0xAA] {
        return None;
    }
    let at = if sector[38] == 0x29 {
        43
    } else if sector[66] == 0x29 {
        71
    } else {
        return None;
    };
    Some(
        String::from_utf8_lossy(&sector[at..at + 11])
            .trim()
            .to_string(),
    )
}

/// Reads a config image from a device or file (FAT, or ISO9660 as Ironic makes them),
/// labelled `config-2`: its files.
pub fn read_config_image(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if crate::iso9660::is_iso9660(&bytes) {
        let (label, files) =
            crate::iso9660::read(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        if !label.eq_ignore_ascii_case(LABEL) {
            return Err(format!(
                "{}: the ISO is labelled {label:?}, not {LABEL}",
                path.display()
            ));
        }
        return Ok(files);
    }
    read_fat_image(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Where the agent's configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A config image (the device or file named).
    ConfigImage(PathBuf),
    /// The config-image slot of the ISO the host booted (the device named).
    IsoSlot(PathBuf),
    /// The kernel command line.
    KernelCommandLine,
    /// The agent's own command line (`--conductor`).
    CommandLine,
}

/// The agent's configuration as found at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// Its own section: the conductor and the CA.
    pub section: AgentSection,
    /// Where the section came from.
    pub source: ConfigSource,
    /// The config image's `network_data.json`, to apply before calling the conductor
    /// (none: no config image, or one without network data).
    pub network_data: Option<Vec<u8>>,
}

/// Finds the agent's configuration: the config image at `config_image`, else the first
/// device labelled `config-2` under `root`/`dev`, else the booted ISO's filled
/// config-image slot ([`find_iso_slot`]), else `metal3.conductor=` on
/// `root/proc/cmdline`, else `fallback_conductor`. A config image without the agent's
/// section still gives its network data; a broken one is an error, not skipped.
pub fn discover(
    config_image: Option<&Path>,
    root: &Path,
    dev: &Path,
    fallback_conductor: Option<&str>,
) -> Result<Discovered, String> {
    let image = match config_image {
        Some(path) => Some(path.to_path_buf()),
        None => find_config_devices(root, dev).into_iter().next(),
    };
    let found = match image {
        Some(path) => Some((read_config_image(&path)?, ConfigSource::ConfigImage(path))),
        None => find_iso_slot(root, dev).map(|(path, files)| (files, ConfigSource::IsoSlot(path))),
    };
    let mut network_data = None;
    if let Some((mut files, source)) = found {
        network_data = files.remove(NETWORK_DATA);
        if let Some(section) = from_config_files(&files)? {
            return Ok(Discovered {
                section,
                source,
                network_data,
            });
        }
    }
    let cmdline = std::fs::read_to_string(root.join("proc/cmdline")).unwrap_or_default();
    if let Some(section) = from_cmdline(&cmdline) {
        return Ok(Discovered {
            section,
            source: ConfigSource::KernelCommandLine,
            network_data,
        });
    }
    match fallback_conductor {
        Some(url) => Ok(Discovered {
            section: AgentSection {
                conductor_url: url.to_string(),
                ca_pem: None,
            },
            source: ConfigSource::CommandLine,
            network_data,
        }),
        None => Err(
            "no conductor: no config image, no metal3.conductor= on the kernel \
                     command line, no --conductor"
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configdrive::{ConfigFiles, fat_image};

    #[test]
    fn the_agent_section_comes_from_the_config_image_or_the_command_line() {
        let section = AgentSection {
            conductor_url: "https://192.0.2.1:6385".into(),
            ca_pem: Some("-----BEGIN CERTIFICATE-----\n…".into()),
        };
        let files = ConfigFiles::new().with(
            AGENT_SECTION,
            serde_json::to_vec(&section).unwrap_or_default(),
        );
        assert_eq!(from_config_files(&files.0), Ok(Some(section)));
        let broken = ConfigFiles::new().with(AGENT_SECTION, b"{".to_vec());
        assert!(from_config_files(&broken.0).is_err_and(|e| e.contains(AGENT_SECTION)));
        assert_eq!(from_config_files(&BTreeMap::new()), Ok(None));
        assert_eq!(from_cmdline("ro quiet"), None);
        let image = fat_image(&files, LABEL).unwrap_or_default();
        let mut sector = [0u8; 512];
        sector.copy_from_slice(&image[..512]);
        assert_eq!(fat_label(&sector).as_deref(), Some("config-2"));
    }
}
