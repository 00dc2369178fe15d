//! Metal3's `metadata` cleaning, as Ironic's `erase_devices_metadata` does it: what makes
//! a disk look partitioned, formatted or part of an array is removed, the data itself is
//! left. That is the partition tables at both ends of the disk (MBR, GPT and its backup)
//! and, in the disk and in every partition its table named, the places file systems and
//! RAID members keep their signatures: the first and last MiB (ext2/3/4, XFS, swap, LVM,
//! ISO9660, FAT, md 1.1/1.2 at the start; md 0.90/1.0 and DDF at the end) and the
//! btrfs superblock copy at 64 MiB.
//!
//! ```
//! use metal3_agent::erase::erase_metadata;
//! let mut disk = vec![0xAAu8; 4 << 20];
//! let erased = erase_metadata(&mut disk, 512).unwrap();
//! assert!(disk[..1 << 20].iter().all(|b| *b == 0));
//! assert!(disk[(1 << 20)..(3 << 20)].iter().all(|b| *b == 0xAA));
//! assert_eq!(erased.partitions, 0);
//! ```

use std::io;
use std::ops::Range;

use crate::partition::{ReadAt, WriteAt, read_table};

/// Bytes zeroed at each end of the disk and of each partition.
const END_BYTES: u64 = 1 << 20;
/// Where btrfs keeps its first superblock copy, and how much of it is zeroed.
const BTRFS_MIRROR: u64 = 64 << 20;
const BTRFS_MIRROR_BYTES: u64 = 4096;

/// What was erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    /// Partitions the table named (each erased too).
    pub partitions: usize,
    /// Byte ranges zeroed, in order.
    pub ranges: Vec<Range<u64>>,
}

/// The ranges to zero in a region `[start, start + len)`.
fn signature_ranges(start: u64, len: u64) -> Vec<Range<u64>> {
    let end = start + len;
    let mut ranges = Vec::with_capacity(3);
    ranges.push(start..(start + END_BYTES).min(end));
    if len > BTRFS_MIRROR + BTRFS_MIRROR_BYTES {
        ranges.push(start + BTRFS_MIRROR..start + BTRFS_MIRROR + BTRFS_MIRROR_BYTES);
    }
    ranges.push(end.saturating_sub(END_BYTES).max(start)..end);
    ranges
}

/// Erases `disk`'s metadata (logical blocks of `sector` bytes). A table that does not
/// read (a corrupt GPT, say) does not stop the disk's own ends from being erased.
pub fn erase_metadata<D: ReadAt + WriteAt + ?Sized>(
    disk: &mut D,
    sector: u64,
) -> io::Result<Erased> {
    let size = disk.len_bytes()?;
    let partitions = read_table(disk, sector)
        .map(|t| t.partitions())
        .unwrap_or_default();
    let mut ranges = signature_ranges(0, size);
    for p in &partitions {
        // A partition past the end of the disk (a table from a larger disk) is cut.
        let end = (p.start + p.len).min(size);
        if p.start < end {
            ranges.extend(signature_ranges(p.start, end - p.start));
        }
    }
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    let zeros = vec![0u8; END_BYTES as usize];
    for r in &merged {
        let mut at = r.start;
        while at < r.end {
            let n = (r.end - at).min(END_BYTES) as usize;
            disk.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
    }
    Ok(Erased {
        partitions: partitions.len(),
        ranges: merged,
    })
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}
