//! The running host read into the protocol's inventory, from the kernel's own files:
//! `/proc/cpuinfo` and `/proc/meminfo`, `/sys/devices/system/memory`, `/sys/class/net`,
//! `/sys/block`, `/dev/disk/by-path`, `/sys/class/dmi/id` and `/sys/firmware/efi`. All
//! paths are under a root given by the caller (`/` on a host, a fake tree in tests), so
//! nothing here needs the hardware it describes. Addresses come from `ip -o addr`'s
//! output (iproute2 and busybox print the same), parsed by [`addresses_from_ip`].
//!
//! ```
//! let inventory = metal3_agent::inspect::inspect(std::path::Path::new("/nonexistent"), &Default::default());
//! assert!(inventory.disks.is_empty());
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use metal3_agent_protocol::{
    AgentBoot, AgentCpu, AgentDisk, AgentInterface, AgentInventory, AgentMemory, AgentSystemVendor,
};

/// An interface's first IPv4 and first global IPv6 address, by interface name.
pub type Addresses = BTreeMap<String, (Option<String>, Option<String>)>;

/// Block devices that are never installation targets: RAM disks, compressed swap,
/// device-mapper and md volumes, optical and floppy drives.
const NOT_DISKS: [&str; 7] = ["ram", "zram", "dm-", "md", "sr", "fd", "nbd"];

/// What to count as a disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InspectOptions {
    /// Count loop devices as disks (tests on loop devices; never on hosts).
    pub loop_devices: bool,
}

fn read(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// The names in a folder, sorted (none when it cannot be read): the same order every time.
pub(crate) fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn link_name(path: &Path) -> Option<String> {
    let target = std::fs::read_link(path).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// The host under `root`, with `addresses` from [`addresses_from_ip`].
pub fn inspect(root: &Path, options: &InspectOptions) -> AgentInventory {
    inspect_with(root, options, &Addresses::new())
}

/// The disks only (what choosing and erasing a disk needs).
pub fn inspect_disks(root: &Path, options: &InspectOptions) -> Vec<AgentDisk> {
    disks(root, options)
}

/// [`inspect`] with the interfaces' addresses.
pub fn inspect_with(
    root: &Path,
    options: &InspectOptions,
    addresses: &Addresses,
) -> AgentInventory {
    AgentInventory {
        system_vendor: system_vendor(root),
        cpu: cpu(root),
        memory: memory(root),
        interfaces: interfaces(root, addresses),
        disks: disks(root, options),
        boot: AgentBoot {
            current_boot_mode: Some(
                if root.join("sys/firmware/efi").is_dir() {
                    "uefi"
                } else {
                    "bios"
                }
                .to_string(),
            ),
        },
    }
}

fn system_vendor(root: &Path) -> AgentSystemVendor {
    let dmi = root.join("sys/class/dmi/id");
    AgentSystemVendor {
        manufacturer: read(&dmi.join("sys_vendor")),
        product_name: read(&dmi.join("product_name")),
        serial_number: read(&dmi.join("product_serial")),
    }
}

fn cpu(root: &Path) -> AgentCpu {
    let text = std::fs::read_to_string(root.join("proc/cpuinfo")).unwrap_or_default();
    let mut cpu = AgentCpu {
        architecture: Some(std::env::consts::ARCH.to_string()),
        ..AgentCpu::default()
    };
    let mut count = 0u32;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "processor" => count += 1,
            // x86 says "model name"; arm64 and others say less, and "CPU part".
            "model name" | "cpu model" if cpu.model_name.is_none() => {
                cpu.model_name = Some(value.to_string())
            }
            "flags" | "Features" if cpu.flags.is_empty() => {
                cpu.flags = value.split_whitespace().map(str::to_string).collect()
            }
            _ => {}
        }
    }
    cpu.count = (count > 0).then_some(count);
    cpu
}

fn memory(root: &Path) -> AgentMemory {
    let meminfo = std::fs::read_to_string(root.join("proc/meminfo")).unwrap_or_default();
    let total = meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    });
    // Physical memory: the online memory blocks times their size (the kernel's own
    // reserve is not in MemTotal); else MemTotal rounded up to a MiB.
    let blocks = root.join("sys/devices/system/memory");
    let block_size =
        read(&blocks.join("block_size_bytes")).and_then(|h| u64::from_str_radix(&h, 16).ok());
    let online = std::fs::read_dir(&blocks)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("memory"))
                .filter(|e| read(&e.path().join("online")).as_deref() == Some("1"))
                .count() as u64
        })
        .unwrap_or(0);
    let physical = match block_size {
        Some(size) if online > 0 => Some(size * online),
        _ => total,
    };
    AgentMemory {
        physical_mb: physical.map(|b| b.div_ceil(1 << 20)),
        total,
    }
}

fn interfaces(root: &Path, addresses: &Addresses) -> Vec<AgentInterface> {
    let net = root.join("sys/class/net");
    sorted_names(&net)
        .into_iter()
        // Physical interfaces have a device; lo, bridges, bonds and VLANs do not.
        .filter(|name| net.join(name).join("device").exists())
        .map(|name| {
            let dir = net.join(&name);
            let (ipv4, ipv6) = addresses.get(&name).cloned().unwrap_or_default();
            AgentInterface {
                mac_address: read(&dir.join("address")),
                // Reading `speed` or `carrier` of a down link fails, or says -1.
                speed_mbps: read(&dir.join("speed")).and_then(|s| s.parse().ok()),
                has_carrier: read(&dir.join("carrier")).map(|c| c == "1"),
                driver: link_name(&dir.join("device/driver")),
                ipv4_address: ipv4,
                ipv6_address: ipv6,
                name,
            }
        })
        .collect()
}

fn disks(root: &Path, options: &InspectOptions) -> Vec<AgentDisk> {
    let block = root.join("sys/block");
    let by_path = by_path(root);
    sorted_names(&block)
        .into_iter()
        .filter(|n| !NOT_DISKS.iter().any(|p| n.starts_with(p)))
        .filter(|n| options.loop_devices || !n.starts_with("loop"))
        .filter_map(|name| {
            let dir = block.join(&name);
            let sectors: u64 = read(&dir.join("size"))?.parse().ok()?;
            if sectors == 0 {
                // An empty card reader or an unbound loop device.
                return None;
            }
            let device = dir.join("device");
            let wwid = read(&device.join("wwid")).or_else(|| read(&dir.join("wwid")));
            let (wwn, with_extension, vendor_extension) = wwn(wwid.as_deref());
            Some(AgentDisk {
                size: Some(sectors * 512),
                model: read(&device.join("model")),
                vendor: read(&device.join("vendor")),
                serial: read(&device.join("serial")).or_else(|| vpd_serial(&device)),
                rotational: read(&dir.join("queue/rotational")).map(|r| r == "1"),
                wwn,
                wwn_with_extension: with_extension,
                wwn_vendor_extension: vendor_extension,
                hctl: link_name(&device).filter(|h| is_hctl(h)),
                by_path: by_path.get(&name).cloned(),
                name: format!("/dev/{name}"),
            })
        })
        .collect()
}

/// `/dev/disk/by-path` links, by the device they name.
fn by_path(root: &Path) -> BTreeMap<String, String> {
    let dir = root.join("dev/disk/by-path");
    let mut links: Vec<(String, String)> = std::fs::read_dir(&dir)
        .map(|e| {
            e.flatten()
                .filter_map(|e| {
                    let target = link_name(&e.path())?;
                    let link = format!("/dev/disk/by-path/{}", e.file_name().to_string_lossy());
                    Some((target, link))
                })
                .collect()
        })
        .unwrap_or_default();
    // One link per device, the same every time (a disk may have several paths).
    links.sort();
    let mut map = BTreeMap::new();
    for (target, link) in links {
        map.entry(target).or_insert(link);
    }
    map
}

fn is_hctl(name: &str) -> bool {
    let parts: Vec<&str> = name.split(':').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The unit serial number page (SCSI VPD 0x80): a 4-byte header, then the serial.
fn vpd_serial(device: &Path) -> Option<String> {
    let page = std::fs::read(device.join("vpd_pg80")).ok()?;
    let serial = String::from_utf8_lossy(page.get(4..)?)
        .trim()
        .trim_matches('\0')
        .to_string();
    (!serial.is_empty()).then_some(serial)
}

/// udev's `ID_WWN`, `ID_WWN_WITH_EXTENSION` and `ID_WWN_VENDOR_EXTENSION` from the kernel's
/// `wwid`: an NAA name of 16 hex digits is the WWN; of 32, the WWN and its extension.
fn wwn(wwid: Option<&str>) -> (Option<String>, Option<String>, Option<String>) {
    let Some(hex) = wwid.and_then(|w| w.strip_prefix("naa.")) else {
        return (None, None, None);
    };
    let hex = hex.to_ascii_lowercase();
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (None, None, None);
    }
    match hex.len() {
        16 => (Some(format!("0x{hex}")), Some(format!("0x{hex}")), None),
        32 => (
            Some(format!("0x{}", &hex[..16])),
            Some(format!("0x{hex}")),
            Some(format!("0x{}", &hex[16..])),
        ),
        _ => (None, None, None),
    }
}

/// Addresses from `ip -o addr show` (iproute2 or busybox): each interface's first IPv4
/// address and first global IPv6 address, without prefix lengths.
pub fn addresses_from_ip(output: &str) -> Addresses {
    let mut map = Addresses::new();
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // `2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\   valid_lft …`
        let (Some(name), Some(family), Some(address)) = (words.get(1), words.get(2), words.get(3))
        else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name).to_string();
        let address = address.split('/').next().unwrap_or(address).to_string();
        let global = words
            .windows(2)
            .any(|w| w[0] == "scope" && w[1] == "global");
        let entry = map.entry(name).or_default();
        match *family {
            "inet" if entry.0.is_none() => entry.0 = Some(address),
            "inet6" if entry.1.is_none() && global => entry.1 = Some(address),
            _ => {}
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addr_output_gives_first_ipv4_and_global_ipv6() {
        let out = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eno1    inet 10.20.0.5/24 brd 10.20.0.255 scope global eno1\\       valid_lft forever
2: eno1    inet 10.20.0.6/24 brd 10.20.0.255 scope global secondary eno1\\       valid_lft forever
2: eno1    inet6 fe80::1/64 scope link \\       valid_lft forever preferred_lft forever
2: eno1    inet6 2001:db8::5/64 scope global \\       valid_lft forever preferred_lft forever
3: eno2.10@eno2    inet 192.0.2.7/24 scope global eno2.10
";
        let a = addresses_from_ip(out);
        assert_eq!(
            a["eno1"],
            (
                Some("10.20.0.5".to_string()),
                Some("2001:db8::5".to_string())
            )
        );
        assert_eq!(a["eno2.10"].0.as_deref(), Some("192.0.2.7"));
        assert_eq!(a["lo"].1, None);
    }

    #[test]
    fn wwids_split_into_udevs_three_names() {
        assert_eq!(
            wwn(Some("naa.5000C500A1B2C3D4")),
            (
                Some("0x5000c500a1b2c3d4".into()),
                Some("0x5000c500a1b2c3d4".into()),
                None
            )
        );
        let (w, e, v) = wwn(Some("naa.600508b1001c4d5e6f7a8b9c0d1e2f30"));
        assert_eq!(w.as_deref(), Some("0x600508b1001c4d5e"));
        assert_eq!(e.as_deref(), Some("0x600508b1001c4d5e6f7a8b9c0d1e2f30"));
        assert_eq!(v.as_deref(), Some("0x6f7a8b9c0d1e2f30"));
        assert_eq!(wwn(Some("eui.0025388b91b2c3d4")), (None, None, None));
        assert!(is_hctl("0:0:1:0") && !is_hctl("nvme0") && !is_hctl("0:0:0"));
    }
}
