//! The per-host config image and the config drive: small FAT file systems labelled
//! `config-2` in the OpenStack layout cloud-init and the agent read
//! (`openstack/latest/meta_data.json`, `user_data`, `network_data.json`). The conductor
//! builds a host's config image with [`agent_config_image`] (its network configuration and
//! the agent's own section, a few KiB) and serves it for a second virtual-media slot, so
//! one shared agent ISO boots every host; the agent writes a config drive with the same
//! builder after the image.
//!
//! ```
//! use metal3_agent_protocol::config_image::{AgentSection, agent_config_image};
//! let section = AgentSection { conductor_url: "https://10.0.0.1:6386".into(), ca_pem: None };
//! let image = agent_config_image(&section, Some(&serde_json::json!({"links": []}))).unwrap();
//! assert_eq!(&image[510..512], &[0x55, 0xaa]);
//! assert!(image.len() <= 8192);
//! ```

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ConfigDrive;

/// The label cloud-init and the agent look for.
pub const LABEL: &str = "config-2";

/// Where in a config image the agent's own section is.
pub const AGENT_SECTION: &str = "metal3/agent.json";

/// Where in a config image the network configuration is.
pub const NETWORK_DATA: &str = "openstack/latest/network_data.json";

/// The agent's own section of a config image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSection {
    /// The conductor's agent API.
    pub conductor_url: String,
    /// A CA (PEM) for the conductor and image servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

/// Where the agent ISO carries its config-image slot: a file of [`ISO_SLOT_BYTES`]
/// holding [`ISO_SLOT_MAGIC`] and zeros in the shared ISO. For a BMC with one
/// virtual-media slot the conductor streams the shared ISO with this file's bytes
/// replaced by the host's config image, so nothing per host is stored.
pub const ISO_SLOT_PATH: &str = "metal3/config.img";

/// The size of the ISO's config-image slot: the largest config image it takes.
pub const ISO_SLOT_BYTES: usize = 64 * 1024;

/// How the unfilled slot begins.
pub const ISO_SLOT_MAGIC: &[u8] = b"METAL3-CONFIG-IMAGE-SLOT\n";

/// The unfilled slot, as the agent image builder writes it.
pub fn iso_slot_placeholder() -> Vec<u8> {
    let mut slot = ISO_SLOT_MAGIC.to_vec();
    slot.resize(ISO_SLOT_BYTES, 0);
    slot
}

/// The slot filled with `image`, zero-padded; `Err` when it does not fit.
pub fn iso_slot_contents(image: &[u8]) -> io::Result<Vec<u8>> {
    if image.len() > ISO_SLOT_BYTES {
        return Err(io::Error::other(format!(
            "a config image of {} bytes does not fit the ISO's {ISO_SLOT_BYTES}-byte slot",
            image.len()
        )));
    }
    let mut slot = image.to_vec();
    slot.resize(ISO_SLOT_BYTES, 0);
    Ok(slot)
}

/// A host's config image: `network_data` (if any) at [`NETWORK_DATA`] and `section` at
/// [`AGENT_SECTION`], in a FAT image labelled [`LABEL`].
pub fn agent_config_image(
    section: &AgentSection,
    network_data: Option<&Value>,
) -> io::Result<Vec<u8>> {
    let mut files = ConfigFiles::new().with(
        AGENT_SECTION,
        serde_json::to_vec(section).map_err(io::Error::other)?,
    );
    if let Some(network) = network_data {
        files = files.with(
            NETWORK_DATA,
            serde_json::to_vec(network).map_err(io::Error::other)?,
        );
    }
    fat_image(&files, LABEL)
}

/// Files by their path inside the image (`/`-separated, no leading slash).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFiles(pub BTreeMap<String, Vec<u8>>);

impl ConfigFiles {
    /// No files.
    pub fn new() -> ConfigFiles {
        ConfigFiles::default()
    }

    /// With `path` holding `data`.
    pub fn with(mut self, path: &str, data: Vec<u8>) -> ConfigFiles {
        self.0
            .insert(path.trim_start_matches('/').to_string(), data);
        self
    }

    /// The files of a config drive, as Ironic lays them out.
    pub fn from_config_drive(drive: &ConfigDrive) -> ConfigFiles {
        let mut files = ConfigFiles::new().with(
            "openstack/latest/meta_data.json",
            serde_json::to_vec(&drive.meta_data).unwrap_or_default(),
        );
        if let Some(user_data) = &drive.user_data {
            files = files.with("openstack/latest/user_data", user_data.as_bytes().to_vec());
        }
        if let Some(network) = &drive.network_data {
            files = files.with(
                "openstack/latest/network_data.json",
                serde_json::to_vec(network).unwrap_or_default(),
            );
        }
        files
    }
}

/// Bytes per sector of the images made.
const SECTOR: usize = 512;
/// A CD's block size: config images are padded to it, to be served as a second CD.
const CD_SECTOR: usize = 2048;
/// Root directory entries (two sectors' worth: a label and a few names).
const ROOT_ENTRIES: usize = 32;
/// FAT12 holds fewer clusters than this; more take larger clusters.
const FAT12_CLUSTERS: usize = 4084;

/// A directory of the image being laid out: its children and, once placed, its clusters.
#[derive(Default)]
struct DirNode {
    dirs: BTreeMap<String, DirNode>,
    /// Each file's bytes and first cluster (0 when empty).
    files: BTreeMap<String, (Vec<u8>, u16)>,
    first_cluster: u16,
    clusters: usize,
}

impl DirNode {
    /// Directory entries: `.` and `..`, then each name's long-name entries and short one.
    fn entries(&self) -> usize {
        let names = self.dirs.keys().chain(self.files.keys());
        2 + names
            .map(|n| n.encode_utf16().count().div_ceil(13) + 1)
            .sum::<usize>()
    }

    /// Sectors of data this directory and everything below need, at `per` bytes a cluster.
    fn clusters_needed(&self, per: usize, is_root: bool) -> usize {
        let own = if is_root {
            0
        } else {
            (self.entries() * 32).div_ceil(per)
        };
        let files: usize = self
            .files
            .values()
            .map(|(d, _)| d.len().div_ceil(per))
            .sum();
        own + files
            + self
                .dirs
                .values()
                .map(|d| d.clusters_needed(per, false))
                .sum::<usize>()
    }

    /// Gives this directory (the root has its own area) and everything below contiguous
    /// clusters from `next`; each chain goes to `chains`.
    fn place(
        &mut self,
        per: usize,
        next: &mut usize,
        chains: &mut Vec<(usize, usize)>,
        is_root: bool,
    ) {
        if !is_root {
            self.clusters = (self.entries() * 32).div_ceil(per);
            self.first_cluster = *next as u16;
            chains.push((*next, self.clusters));
            *next += self.clusters;
        }
        for (data, first) in self.files.values_mut() {
            let count = data.len().div_ceil(per);
            *first = if count == 0 { 0 } else { *next as u16 };
            if count > 0 {
                chains.push((*next, count));
            }
            *next += count;
        }
        for d in self.dirs.values_mut() {
            d.place(per, next, chains, false);
        }
    }
}

/// A FAT12 image labelled `label` holding `files`, as small as they allow (a few KiB for
/// a config image) and the same bytes for the same files.
pub fn fat_image(files: &ConfigFiles, label: &str) -> io::Result<Vec<u8>> {
    if label.is_empty() || label.len() > 11 || !label.is_ascii() {
        return Err(io::Error::other(format!(
            "FAT label {label:?} is not 1 to 11 ASCII bytes"
        )));
    }
    let mut root = DirNode::default();
    for (path, data) in &files.0 {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some((file, dirs)) = parts.split_last() else {
            continue;
        };
        let mut node = &mut root;
        for d in dirs {
            node = node.dirs.entry((*d).to_string()).or_default();
        }
        node.files.insert((*file).to_string(), (data.clone(), 0));
    }
    if root.entries() - 2 + 1 > ROOT_ENTRIES {
        return Err(io::Error::other(
            "too many names at the top of the config image",
        ));
    }
    // Cluster size: the smallest that keeps the count within FAT12.
    let mut per_cluster = 1usize;
    while root.clusters_needed(per_cluster * SECTOR, true) + 1 > FAT12_CLUSTERS {
        per_cluster *= 2;
        if per_cluster > 64 {
            return Err(io::Error::other("config files too large for a FAT12 image"));
        }
    }
    let cluster_bytes = per_cluster * SECTOR;
    let mut next = 2usize;
    let mut chains = Vec::new();
    root.place(cluster_bytes, &mut next, &mut chains, true);
    let clusters = next - 2;
    let fat_sectors = ((clusters + 2) * 3).div_ceil(2).div_ceil(SECTOR);
    let root_sectors = ROOT_ENTRIES * 32 / SECTOR;
    let data_start = 1 + 2 * fat_sectors + root_sectors;
    let total_sectors = data_start + clusters * per_cluster;
    let mut image = vec![0u8; total_sectors * SECTOR];
    let volume_id = crc32fast::hash(&serde_json::to_vec(&files.0).unwrap_or_default());

    // Boot sector with its BIOS parameter block.
    let b = &mut image[..SECTOR];
    b[..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
    b[3..11].copy_from_slice(b"METAL3  ");
    b[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    b[13] = per_cluster as u8;
    b[14..16].copy_from_slice(&1u16.to_le_bytes());
    b[16] = 2;
    b[17..19].copy_from_slice(&(ROOT_ENTRIES as u16).to_le_bytes());
    if total_sectors < 65536 {
        b[19..21].copy_from_slice(&(total_sectors as u16).to_le_bytes());
    } else {
        b[32..36].copy_from_slice(&(total_sectors as u32).to_le_bytes());
    }
    b[21] = 0xF8;
    b[22..24].copy_from_slice(&(fat_sectors as u16).to_le_bytes());
    b[24..26].copy_from_slice(&32u16.to_le_bytes());
    b[26..28].copy_from_slice(&64u16.to_le_bytes());
    b[36] = 0x80;
    b[38] = 0x29;
    b[39..43].copy_from_slice(&volume_id.to_le_bytes());
    let mut label_bytes = [b' '; 11];
    label_bytes[..label.len()].copy_from_slice(label.as_bytes());
    b[43..54].copy_from_slice(&label_bytes);
    b[54..62].copy_from_slice(b"FAT12   ");
    b[510] = 0x55;
    b[511] = 0xAA;

    // The FAT: two reserved entries, then each chain of contiguous clusters.
    let mut fat = vec![0u8; fat_sectors * SECTOR];
    let mut set = |n: usize, v: u16| {
        let off = n * 3 / 2;
        if n % 2 == 0 {
            fat[off] = v as u8;
            fat[off + 1] = (fat[off + 1] & 0xF0) | ((v >> 8) as u8 & 0x0F);
        } else {
            fat[off] = (fat[off] & 0x0F) | ((v as u8 & 0x0F) << 4);
            fat[off + 1] = (v >> 4) as u8;
        }
    };
    set(0, 0xFF8);
    set(1, 0xFFF);
    for (first, count) in &chains {
        for i in 0..*count {
            let c = first + i;
            set(
                c,
                if i + 1 == *count {
                    0xFFF
                } else {
                    (c + 1) as u16
                },
            );
        }
    }
    for copy in 0..2 {
        let at = (1 + copy * fat_sectors) * SECTOR;
        image[at..at + fat.len()].copy_from_slice(&fat);
    }

    // The root directory (the label first), every other directory and the files' data.
    let mut label_entry = [0u8; 32];
    label_entry[..11].copy_from_slice(&label_bytes);
    label_entry[11] = 0x08;
    let mut root_dir = label_entry.to_vec();
    let cluster_at = |c: u16| (data_start + (c as usize - 2) * per_cluster) * SECTOR;
    write_dir(&root, 0, true, &mut image, &cluster_at, &mut root_dir);
    let at = (1 + 2 * fat_sectors) * SECTOR;
    image[at..at + root_dir.len()].copy_from_slice(&root_dir);
    // A whole number of CD sectors: a drive shows only whole 2 KiB blocks of an image.
    image.resize(image.len().div_ceil(CD_SECTOR) * CD_SECTOR, 0);
    Ok(image)
}

/// Writes `n`'s entries into `out` and its children's into the image.
fn write_dir(
    n: &DirNode,
    parent: u16,
    is_root: bool,
    image: &mut [u8],
    cluster_at: &dyn Fn(u16) -> usize,
    out: &mut Vec<u8>,
) {
    if !is_root {
        out.extend_from_slice(&short_entry(*b".          ", 0x10, n.first_cluster, 0));
        out.extend_from_slice(&short_entry(*b"..         ", 0x10, parent, 0));
    }
    let mut taken = std::collections::BTreeSet::new();
    for (name, d) in &n.dirs {
        named_entries(name, 0x10, d.first_cluster, 0, &mut taken, out);
        let mut sub = Vec::new();
        write_dir(d, n.first_cluster, false, image, cluster_at, &mut sub);
        let at = cluster_at(d.first_cluster);
        image[at..at + sub.len()].copy_from_slice(&sub);
    }
    for (name, (data, first)) in &n.files {
        named_entries(name, 0x20, *first, data.len() as u32, &mut taken, out);
        if *first != 0 {
            let at = cluster_at(*first);
            image[at..at + data.len()].copy_from_slice(data);
        }
    }
}

/// A short (8.3) directory entry.
fn short_entry(name: [u8; 11], attr: u8, cluster: u16, size: u32) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[..11].copy_from_slice(&name);
    e[11] = attr;
    // 1980-01-01, the FAT epoch: the same bytes for the same files.
    e[16..18].copy_from_slice(&0x0021u16.to_le_bytes());
    e[24..26].copy_from_slice(&0x0021u16.to_le_bytes());
    e[18..20].copy_from_slice(&0x0021u16.to_le_bytes());
    e[26..28].copy_from_slice(&cluster.to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

/// A name's long-name entries and its short entry (`BASIS~N.EXT`).
fn named_entries(
    name: &str,
    attr: u8,
    cluster: u16,
    size: u32,
    taken: &mut std::collections::BTreeSet<[u8; 11]>,
    out: &mut Vec<u8>,
) {
    let clean = |s: &str| -> Vec<u8> {
        s.bytes()
            .filter(|b| b.is_ascii_alphanumeric() || b"_-$%'@~!(){}^#&".contains(b))
            .map(|b| b.to_ascii_uppercase())
            .collect()
    };
    let (base, ext) = match name.rsplit_once('.') {
        Some((b, e)) if !b.is_empty() => (clean(b), clean(e)),
        _ => (clean(name), Vec::new()),
    };
    let mut short = [b' '; 11];
    for n in 1.. {
        let tail = format!("~{n}");
        let keep = 8 - tail.len();
        let mut basis: Vec<u8> = base.iter().copied().take(keep).collect();
        if basis.is_empty() {
            basis.push(b'_');
        }
        basis.extend_from_slice(tail.as_bytes());
        short = [b' '; 11];
        short[..basis.len()].copy_from_slice(&basis);
        for (i, b) in ext.iter().take(3).enumerate() {
            short[8 + i] = *b;
        }
        if taken.insert(short) {
            break;
        }
    }
    let sum = short.iter().fold(0u8, |s, c| {
        ((s & 1) << 7).wrapping_add(s >> 1).wrapping_add(*c)
    });
    let mut units: Vec<u16> = name.encode_utf16().collect();
    let count = units.len().div_ceil(13);
    if units.len() % 13 != 0 {
        units.push(0);
    }
    units.resize(count * 13, 0xFFFF);
    for seq in (1..=count).rev() {
        let part = &units[(seq - 1) * 13..seq * 13];
        let mut e = [0u8; 32];
        e[0] = seq as u8 | if seq == count { 0x40 } else { 0 };
        e[11] = 0x0F;
        e[13] = sum;
        for (i, u) in part.iter().enumerate() {
            let at = match i {
                0..=4 => 1 + i * 2,
                5..=10 => 14 + (i - 5) * 2,
                _ => 28 + (i - 11) * 2,
            };
            e[at..at + 2].copy_from_slice(&u.to_le_bytes());
        }
        out.extend_from_slice(&e);
    }
    out.extend_from_slice(&short_entry(short, attr, cluster, size));
}
