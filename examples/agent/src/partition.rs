//! Partition tables as an image leaves them, read and extended: the protective or legacy
//! MBR and GPT (both copies, CRCs checked). After a whole-disk image is written the GPT's
//! backup sits at the image's end, not the disk's; adding the config drive partition moves
//! it to the disk's end first (as `sgdisk -e` does) and then adds the partition in the
//! free space at the end of the disk, as Ironic does with its config drive.
//!
//! ```
//! use metal3_agent::partition::read_table;
//! let disk = vec![0u8; 1 << 20];
//! assert!(read_table(&disk[..], 512).unwrap().partitions().is_empty());
//! ```

use std::io;

/// What can be read at an offset: a file, a block device, or bytes in memory.
pub trait ReadAt {
    /// Reads `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The size in bytes.
    fn len_bytes(&self) -> io::Result<u64>;
}

impl ReadAt for std::fs::File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
    fn len_bytes(&self) -> io::Result<u64> {
        use std::io::Seek;
        // A block device's size is where it ends, not its metadata's length.
        let mut f = self;
        f.seek(io::SeekFrom::End(0))
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let at = usize::try_from(offset).map_err(io::Error::other)?;
        let src = at
            .checked_add(buf.len())
            .and_then(|end| self.get(at..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

/// What can be written at an offset.
pub trait WriteAt {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
}

impl WriteAt for std::fs::File {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }
}

impl WriteAt for Vec<u8> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let at = usize::try_from(offset).map_err(io::Error::other)?;
        let dst = at
            .checked_add(buf.len())
            .and_then(|end| self.get_mut(at..end))
            .ok_or_else(|| io::Error::other("write past the end of the disk"))?;
        dst.copy_from_slice(buf);
        Ok(())
    }
}

/// A partition, in bytes from the start of the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based number, as the kernel names it (`sda3`).
    pub number: u32,
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// The GPT partition name, if any.
    pub name: Option<String>,
}

/// A disk's partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    /// No MBR signature: a blank disk, or a file system on the whole disk.
    None,
    /// A legacy MBR (primary partitions only; extended ones are listed as they are).
    Mbr(Vec<Partition>),
    /// A GPT.
    Gpt(Gpt),
}

impl Table {
    /// The partitions.
    pub fn partitions(&self) -> Vec<Partition> {
        match self {
            Table::None => Vec::new(),
            Table::Mbr(p) => p.clone(),
            Table::Gpt(g) => g.partitions(),
        }
    }
}

/// A GPT as read from the primary header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// Bytes per logical block.
    pub sector: u64,
    /// The primary header (`sector` bytes).
    header: Vec<u8>,
    /// The partition entry array.
    entries: Vec<u8>,
    entry_size: usize,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | (u64::from(le32(b, at + 4)) << 32)
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Gpt {
    /// The header's size field (92 in every GPT written today).
    fn header_size(&self) -> usize {
        le32(&self.header, 12) as usize
    }

    fn entries_lba(&self) -> u64 {
        le64(&self.header, 72)
    }

    fn entry_count(&self) -> usize {
        le32(&self.header, 80) as usize
    }

    /// The last block partitions may use.
    pub fn last_usable(&self) -> u64 {
        le64(&self.header, 48)
    }

    /// Where the backup header is.
    pub fn backup_lba(&self) -> u64 {
        le64(&self.header, 32)
    }

    fn entry(&self, n: usize) -> &[u8] {
        &self.entries[n * self.entry_size..(n + 1) * self.entry_size]
    }

    /// The partitions in use.
    pub fn partitions(&self) -> Vec<Partition> {
        (0..self.entry_count())
            .filter_map(|n| {
                let e = self.entry(n);
                if e[..16].iter().all(|b| *b == 0) {
                    return None;
                }
                let first = le64(e, 32);
                let last = le64(e, 40);
                let units: Vec<u16> = e[56..128]
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|u| *u != 0)
                    .collect();
                let name = String::from_utf16_lossy(&units);
                Some(Partition {
                    number: n as u32 + 1,
                    start: first * self.sector,
                    len: (last + 1 - first) * self.sector,
                    name: (!name.is_empty()).then_some(name),
                })
            })
            .collect()
    }

    fn crcs(&mut self) {
        let entries_crc = crc32fast::hash(&self.entries);
        put32(&mut self.header, 88, entries_crc);
        put32(&mut self.header, 16, 0);
        let size = self.header_size();
        let crc = crc32fast::hash(&self.header[..size]);
        put32(&mut self.header, 16, crc);
    }
}

/// Reads the partition table of `disk`, whose logical blocks are `sector` bytes.
pub fn read_table<D: ReadAt + ?Sized>(disk: &D, sector: u64) -> io::Result<Table> {
    let mut mbr = [0u8; 512];
    disk.read_exact_at(&mut mbr, 0)?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Ok(Table::None);
    }
    let protective = (0..4).any(|i| mbr[446 + i * 16 + 4] == 0xEE);
    if !protective {
        let partitions = (0..4)
            .filter_map(|i| {
                let e = &mbr[446 + i * 16..446 + (i + 1) * 16];
                let (kind, start, count) = (e[4], le32(e, 8), le32(e, 12));
                (kind != 0 && count != 0).then_some(Partition {
                    number: i as u32 + 1,
                    start: u64::from(start) * sector,
                    len: u64::from(count) * sector,
                    name: None,
                })
            })
            .collect();
        return Ok(Table::Mbr(partitions));
    }
    let mut header = vec![0u8; sector as usize];
    disk.read_exact_at(&mut header, sector)?;
    if &header[..8] != b"EFI PART" {
        return Err(invalid("protective MBR without a GPT header at block 1"));
    }
    let size = le32(&header, 12) as usize;
    if !(92..=sector as usize).contains(&size) {
        return Err(invalid(format!("GPT header size {size}")));
    }
    let stored = le32(&header, 16);
    let mut check = header[..size].to_vec();
    put32(&mut check, 16, 0);
    if crc32fast::hash(&check) != stored {
        return Err(invalid("GPT header CRC mismatch"));
    }
    let count = le32(&header, 80) as usize;
    let entry_size = le32(&header, 84) as usize;
    if entry_size < 128 || entry_size % 8 != 0 || count > 1024 {
        return Err(invalid(format!(
            "GPT of {count} entries of {entry_size} bytes"
        )));
    }
    let mut entries = vec![0u8; count * entry_size];
    disk.read_exact_at(&mut entries, le64(&header, 72) * sector)?;
    if crc32fast::hash(&entries) != le32(&header, 88) {
        return Err(invalid("GPT partition entries CRC mismatch"));
    }
    Ok(Table::Gpt(Gpt {
        sector,
        header,
        entries,
        entry_size,
    }))
}

/// Linux filesystem data, the partition type Ironic gives its config drive.
const LINUX_DATA: [u8; 16] = guid_bytes(
    0x0FC6_3DAF,
    0x8483,
    0x4772,
    [0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4],
);

/// A GUID's on-disk bytes (the first three fields little-endian).
const fn guid_bytes(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// Partitions start on 1 MiB boundaries, as every partitioning tool aligns them.
const ALIGN: u64 = 1 << 20;

/// Adds a partition of `len` bytes at the end of `disk` (named `name` on GPT) and returns
/// it: on GPT after moving the backup table to the disk's end, on MBR in a free primary
/// slot. A disk without a table, with no free slot, or without `len` bytes free after its
/// last partition is refused with the reason.
pub fn add_partition_at_end<D: ReadAt + WriteAt + ?Sized>(
    disk: &mut D,
    sector: u64,
    len: u64,
    name: &str,
) -> io::Result<Partition> {
    let size = disk.len_bytes()?;
    let blocks = size / sector;
    match read_table(disk, sector)? {
        Table::None => Err(invalid(
            "the image has no partition table to add the config drive to",
        )),
        Table::Mbr(parts) => {
            let used: Vec<u32> = parts.iter().map(|p| p.number).collect();
            let slot = (1..=4u32)
                .find(|n| !used.contains(n))
                .ok_or_else(|| invalid("the MBR has no free primary slot for the config drive"))?;
            let end_of_last = parts.iter().map(|p| p.start + p.len).max().unwrap_or(ALIGN);
            let end = (size.min(u64::from(u32::MAX) * sector)) / ALIGN * ALIGN;
            let start = end.saturating_sub(len) / ALIGN * ALIGN;
            if start < end_of_last || start == 0 {
                return Err(invalid(format!(
                    "no {len} bytes free after the last partition (ends at byte {end_of_last}, disk {size})"
                )));
            }
            let mut mbr = [0u8; 512];
            disk.read_exact_at(&mut mbr, 0)?;
            let e = 446 + (slot as usize - 1) * 16;
            mbr[e..e + 16].fill(0);
            // No CHS addressing (0xFE 0xFF 0xFF: "use LBA"), type 0x83 (Linux).
            mbr[e + 1..e + 4].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
            mbr[e + 4] = 0x83;
            mbr[e + 5..e + 8].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
            put32(&mut mbr, e + 8, (start / sector) as u32);
            put32(&mut mbr, e + 12, ((end - start) / sector) as u32);
            disk.write_all_at(&mbr, 0)?;
            Ok(Partition {
                number: slot,
                start,
                len: end - start,
                name: None,
            })
        }
        Table::Gpt(mut gpt) => {
            let entry_blocks = (gpt.entries.len() as u64).div_ceil(sector);
            let last_lba = blocks - 1;
            let old_backup = gpt.backup_lba();
            let last_usable = last_lba - entry_blocks - 1;
            let slot = (0..gpt.entry_count())
                .find(|n| gpt.entry(*n)[..16].iter().all(|b| *b == 0))
                .ok_or_else(|| invalid("the GPT has no free entry for the config drive"))?;
            let end_of_last = gpt
                .partitions()
                .iter()
                .map(|p| p.start + p.len)
                .max()
                .unwrap_or(ALIGN);
            let end = (last_usable + 1) * sector / ALIGN * ALIGN;
            let start = end.saturating_sub(len) / ALIGN * ALIGN;
            if start < end_of_last {
                return Err(invalid(format!(
                    "no {len} bytes free after the last partition (ends at byte {end_of_last}, disk {size})"
                )));
            }
            let unique = random_guid_bytes()?;
            // A random (version 4) GUID.
            let mut unique = unique;
            unique[7] = (unique[7] & 0x0F) | 0x40;
            unique[8] = (unique[8] & 0x3F) | 0x80;
            let at = slot * gpt.entry_size;
            let e = &mut gpt.entries[at..at + gpt.entry_size];
            e.fill(0);
            e[..16].copy_from_slice(&LINUX_DATA);
            e[16..32].copy_from_slice(&unique);
            put64(e, 32, start / sector);
            put64(e, 40, end / sector - 1);
            for (i, u) in name.encode_utf16().take(36).enumerate() {
                e[56 + i * 2..58 + i * 2].copy_from_slice(&u.to_le_bytes());
            }
            // The primary header: backup and last usable block at the disk's end.
            put64(&mut gpt.header, 32, last_lba);
            put64(&mut gpt.header, 48, last_usable);
            gpt.crcs();
            disk.write_all_at(&gpt.entries, gpt.entries_lba() * sector)?;
            disk.write_all_at(&gpt.header, sector)?;
            // The backup: entries just before the last block, the header in it.
            let mut backup = gpt.clone();
            put64(&mut backup.header, 24, last_lba);
            put64(&mut backup.header, 32, 1);
            put64(&mut backup.header, 72, last_lba - entry_blocks);
            backup.crcs();
            disk.write_all_at(&backup.entries, (last_lba - entry_blocks) * sector)?;
            disk.write_all_at(&backup.header, last_lba * sector)?;
            // The old backup header, left at the image's end, would be a second GPT to
            // any tool that finds it.
            if old_backup != last_lba && old_backup > 1 && old_backup * sector < start {
                disk.write_all_at(&vec![0u8; sector as usize], old_backup * sector)?;
            }
            // The protective MBR covers the whole disk (up to what 32 bits say).
            let mut mbr = [0u8; 512];
            disk.read_exact_at(&mut mbr, 0)?;
            for i in 0..4 {
                let p = 446 + i * 16;
                if mbr[p + 4] == 0xEE {
                    put32(
                        &mut mbr,
                        p + 12,
                        (blocks - 1).min(u64::from(u32::MAX)) as u32,
                    );
                }
            }
            disk.write_all_at(&mbr, 0)?;
            Ok(Partition {
                number: slot as u32 + 1,
                start,
                len: end - start,
                name: Some(name.to_string()),
            })
        }
    }
}

/// 16 random bytes for a partition's GUID, which must be unique, not secret: from the
/// kernel's generator without waiting for it to be seeded (`GRND_INSECURE`). A seeded
/// read blocks a freshly booted ramdisk until the kernel has gathered entropy, which on
/// a guest under emulation without RDRAND or virtio-rng took 8 minutes; kernels before
/// 5.6 know no such flag, and get the seeded read.
fn random_guid_bytes() -> io::Result<[u8; 16]> {
    use rustix::rand::{GetRandomFlags, getrandom};
    let mut unique = [0u8; 16];
    match getrandom(&mut unique[..], GetRandomFlags::INSECURE) {
        Ok(16) => Ok(unique),
        _ => {
            getrandom::fill(&mut unique).map_err(|e| io::Error::other(e.to_string()))?;
            Ok(unique)
        }
    }
}
