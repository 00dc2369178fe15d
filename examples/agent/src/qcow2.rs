//! qcow2 (versions 2 and 3) read as a stream and turned into the raw disk it describes,
//! without staging the file: bytes are fed as they arrive from the network and come out
//! as writes at their offsets in the virtual disk, plus the ranges that read as zeros.
//!
//! A qcow2 file is metadata (header, L1 table, L2 tables, refcounts) and data clusters in
//! any order; a data cluster can only be placed once the L2 table naming it has been read.
//! In files made by `qemu-img` an L2 table comes before its clusters, so nothing waits;
//! bytes whose meaning is not known yet (refcount blocks, or clusters before their L2
//! table) are kept up to a limit and given out when their table arrives, and dropped once
//! every table is read. A file that needs more than the limit fails with
//! [`Qcow2Error::BufferLimit`] rather than filling the memory.
//!
//! Compressed clusters (zlib) are inflated; zero and unallocated clusters become
//! [`Output::Zero`]. Backing files, encryption, external data files, extended L2 entries
//! and zstd compression are refused with the reason.
//!
//! ```
//! use metal3_agent::qcow2::{Output, Qcow2Stream};
//! let mut stream = Qcow2Stream::new(1 << 20);
//! // Not a qcow2 file: the header is refused once enough of it has arrived.
//! assert!(stream.feed(&[0u8; 512]).is_err());
//! # let _ = Output::Zero { offset: 0, len: 0 };
//! ```

use std::collections::BTreeMap;
use std::ops::Range;

/// The first four bytes of every qcow2 file.
pub const MAGIC: &[u8; 4] = b"QFI\xfb";

/// The header bytes read: the version 3 header with its compression type, which every
/// file has room for (the header sits in a cluster of at least 512 bytes).
const HEADER_BYTES: u64 = 112;
/// The largest L1 table taken (qemu's own limit).
const MAX_L1_BYTES: u64 = 32 << 20;
/// Bits of an L1 entry or standard L2 entry that hold the host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L2 entry flag: a compressed cluster.
const COMPRESSED: u64 = 1 << 62;
/// L2 entry flag (version 3): the cluster reads as zeros.
const ZERO: u64 = 1;

/// Why a qcow2 stream cannot be turned into a disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Qcow2Error {
    /// Not a qcow2 header, or one with values no image has.
    #[error("not a valid qcow2 image: {0}")]
    Invalid(String),
    /// A qcow2 feature this reader does not take.
    #[error("qcow2 image uses {0}, which the agent does not support")]
    Unsupported(String),
    /// The stream ended before everything the tables name had arrived.
    #[error("qcow2 image ends at byte {at} before {what}")]
    Truncated {
        /// Bytes received.
        at: u64,
        /// What was still missing.
        what: String,
    },
    /// A table names bytes that went by before it and were not kept.
    #[error("qcow2 {what} at byte {offset} is named by a table that comes after it")]
    Lost {
        /// What the bytes were.
        what: &'static str,
        /// Where they were in the file.
        offset: u64,
    },
    /// More bytes than the limit had to be kept waiting for their tables.
    #[error(
        "qcow2 layout needs more than {limit} bytes kept until its tables arrive (at byte {at}); convert it with qemu-img first"
    )]
    BufferLimit {
        /// The limit.
        limit: usize,
        /// Bytes received when it was reached.
        at: u64,
    },
    /// A compressed cluster that does not inflate to a cluster.
    #[error("qcow2 compressed cluster at byte {offset} is corrupt: {reason}")]
    Compressed {
        /// Where it was in the file.
        offset: u64,
        /// What inflating it said.
        reason: String,
    },
}

/// What the stream gives out, in the virtual disk's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `len` bytes of the chunk just fed, from `range`, belong at `offset`.
    Input {
        /// Offset in the virtual disk.
        offset: u64,
        /// The bytes' place in the chunk given to [`Qcow2Stream::feed`].
        range: Range<usize>,
    },
    /// These bytes (kept from earlier, or inflated) belong at `offset`.
    Owned {
        /// Offset in the virtual disk.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// `len` bytes at `offset` read as zeros.
    Zero {
        /// Offset in the virtual disk.
        offset: u64,
        /// Length.
        len: u64,
    },
}

/// The header fields the reader uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// The virtual disk's size in bytes.
    pub size: u64,
    /// Entries in the L1 table.
    pub l1_size: u32,
    /// Where the L1 table is.
    pub l1_table_offset: u64,
}

impl Header {
    /// Parses and checks the first [`HEADER_BYTES`] bytes of a file.
    fn parse(b: &[u8]) -> Result<Header, Qcow2Error> {
        let u32_at = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| (u64::from(u32_at(at)) << 32) | u64::from(u32_at(at + 4));
        if &b[..4] != MAGIC {
            return Err(Qcow2Error::Invalid("no qcow2 magic".into()));
        }
        let version = u32_at(4);
        if version != 2 && version != 3 {
            return Err(Qcow2Error::Unsupported(format!("version {version}")));
        }
        if u64_at(8) != 0 {
            return Err(Qcow2Error::Unsupported(
                "a backing file (the agent writes standalone images only)".into(),
            ));
        }
        let cluster_bits = u32_at(20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(Qcow2Error::Invalid(format!("cluster_bits {cluster_bits}")));
        }
        if u32_at(32) != 0 {
            return Err(Qcow2Error::Unsupported("encryption".into()));
        }
        let header = Header {
            version,
            cluster_bits,
            size: u64_at(24),
            l1_size: u32_at(36),
            l1_table_offset: u64_at(40),
        };
        if version == 3 {
            let incompatible = u64_at(72);
            if incompatible & 2 != 0 {
                return Err(Qcow2Error::Invalid("the image is marked corrupt".into()));
            }
            if incompatible & 4 != 0 {
                return Err(Qcow2Error::Unsupported("an external data file".into()));
            }
            if incompatible & 16 != 0 {
                return Err(Qcow2Error::Unsupported("extended L2 entries".into()));
            }
            let unknown = incompatible & !(1 | 2 | 4 | 8 | 16);
            if unknown != 0 {
                return Err(Qcow2Error::Unsupported(format!(
                    "incompatible features {unknown:#x}"
                )));
            }
            let header_length = u32_at(100);
            if header_length > 104 && b[104] != 0 {
                return Err(Qcow2Error::Unsupported(format!(
                    "compression type {} (zstd)",
                    b[104]
                )));
            }
        }
        let cluster = header.cluster_size();
        if header.l1_table_offset % cluster != 0 || header.l1_table_offset == 0 {
            return Err(Qcow2Error::Invalid(format!(
                "L1 table offset {}",
                header.l1_table_offset
            )));
        }
        if u64::from(header.l1_size) * 8 > MAX_L1_BYTES {
            return Err(Qcow2Error::Invalid(format!("L1 size {}", header.l1_size)));
        }
        let covered = u64::from(header.l1_size)
            .checked_mul(header.l2_coverage())
            .ok_or_else(|| Qcow2Error::Invalid("L1 size".into()))?;
        if covered < header.size {
            return Err(Qcow2Error::Invalid(format!(
                "L1 table of {} entries cannot map {} bytes",
                header.l1_size, header.size
            )));
        }
        Ok(header)
    }

    /// Bytes per cluster.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Virtual bytes one L2 table maps.
    fn l2_coverage(&self) -> u64 {
        self.cluster_size() / 8 * self.cluster_size()
    }
}

/// What a range of the file is wanted for.
#[derive(Debug)]
enum Want {
    Header(Vec<u8>),
    L1(Vec<u8>),
    /// The L2 table mapping the virtual disk from `guest`.
    L2 {
        guest: u64,
        buf: Vec<u8>,
    },
    /// A standard cluster, at `guest` in the virtual disk.
    Data {
        guest: u64,
    },
    /// A compressed cluster's bytes, inflated to the cluster at `guest`.
    Compressed {
        guest: u64,
        buf: Vec<u8>,
    },
}

impl Want {
    fn what(&self) -> &'static str {
        match self {
            Want::Header(_) => "header",
            Want::L1(_) => "L1 table",
            Want::L2 { .. } => "L2 table",
            Want::Data { .. } => "data cluster",
            Want::Compressed { .. } => "compressed cluster",
        }
    }

    /// Bytes of this range may be wanted by another range too (compressed clusters share
    /// sectors), so they are kept as if unclaimed.
    fn shared(&self) -> bool {
        matches!(self, Want::Compressed { .. })
    }
}

/// A range of the file wanted, from `start` for `len` bytes.
#[derive(Debug)]
struct Interest {
    start: u64,
    len: u64,
    want: Want,
}

impl Interest {
    fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// A qcow2 file fed in order, giving out the raw disk (see the [module](self) docs).
#[derive(Debug)]
pub struct Qcow2Stream {
    /// Bytes received so far.
    pos: u64,
    header: Option<Header>,
    /// Ranges wanted, keyed by the next byte each still needs.
    interests: BTreeMap<u64, Vec<Interest>>,
    /// Bytes nobody claimed yet, kept until every table is read: (start, bytes).
    kept: Vec<(u64, Vec<u8>)>,
    kept_bytes: usize,
    peak_kept: usize,
    limit: usize,
    /// L1 read and no L2 table outstanding: unclaimed bytes are of no use.
    l2_outstanding: usize,
    l1_read: bool,
}

impl Qcow2Stream {
    /// A stream that keeps at most `limit` bytes waiting for their tables.
    pub fn new(limit: usize) -> Qcow2Stream {
        let mut interests = BTreeMap::new();
        interests.insert(
            0,
            vec![Interest {
                start: 0,
                len: HEADER_BYTES,
                want: Want::Header(Vec::new()),
            }],
        );
        Qcow2Stream {
            pos: 0,
            header: None,
            interests,
            kept: Vec::new(),
            kept_bytes: 0,
            peak_kept: 0,
            limit,
            l2_outstanding: 0,
            l1_read: false,
        }
    }

    /// The header, once read.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// The virtual disk's size, once the header is read.
    pub fn virtual_size(&self) -> Option<u64> {
        self.header.as_ref().map(|h| h.size)
    }

    /// Bytes received so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Bytes kept waiting for their tables right now.
    pub fn kept_bytes(&self) -> usize {
        self.kept_bytes
    }

    /// The most bytes kept waiting at once so far.
    pub fn peak_kept_bytes(&self) -> usize {
        self.peak_kept
    }

    fn all_mapped(&self) -> bool {
        self.l1_read && self.l2_outstanding == 0
    }

    /// Takes the next bytes of the file; what they make of the disk.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Output>, Qcow2Error> {
        let mut out = Vec::new();
        let base = self.pos;
        let end = base + chunk.len() as u64;
        let mut c = base;
        while c < end {
            let next_start = self
                .interests
                .range(c + 1..end)
                .next()
                .map_or(end, |(k, _)| *k);
            let active: Vec<u64> = self.interests.range(..=c).map(|(k, _)| *k).collect();
            let mut b = next_start;
            for k in &active {
                for i in &self.interests[k] {
                    b = b.min(i.end());
                }
            }
            let slice = &chunk[(c - base) as usize..(b - base) as usize];
            let mut claimed = false;
            let mut done = Vec::new();
            for k in active {
                let Some(list) = self.interests.remove(&k) else {
                    continue;
                };
                for mut i in list {
                    let within = c - i.start;
                    match &mut i.want {
                        Want::Data { guest } => {
                            out.push(Output::Input {
                                offset: *guest + within,
                                range: (c - base) as usize..(b - base) as usize,
                            });
                        }
                        Want::Header(buf)
                        | Want::L1(buf)
                        | Want::L2 { buf, .. }
                        | Want::Compressed { buf, .. } => buf.extend_from_slice(slice),
                    }
                    claimed |= !i.want.shared();
                    if i.end() == b {
                        done.push(i);
                    } else {
                        self.interests.entry(b).or_default().push(i);
                    }
                }
            }
            if !claimed && !self.all_mapped() {
                self.keep(c, slice)?;
            }
            for i in done {
                self.complete(i, b, &mut out)?;
            }
            c = b;
        }
        self.pos = end;
        if self.all_mapped() && !self.kept.is_empty() {
            self.kept.clear();
            self.kept_bytes = 0;
        }
        Ok(out)
    }

    /// Ends the stream: an error if anything the tables name never arrived.
    pub fn finish(&self) -> Result<&Header, Qcow2Error> {
        let missing = self.interests.values().flatten().next();
        match (&self.header, missing) {
            (Some(h), None) => Ok(h),
            (_, Some(i)) => Err(Qcow2Error::Truncated {
                at: self.pos,
                what: format!("its {} at byte {}", i.want.what(), i.start),
            }),
            (None, None) => Err(Qcow2Error::Truncated {
                at: self.pos,
                what: "its header".into(),
            }),
        }
    }

    fn keep(&mut self, at: u64, bytes: &[u8]) -> Result<(), Qcow2Error> {
        self.kept_bytes += bytes.len();
        self.peak_kept = self.peak_kept.max(self.kept_bytes);
        if self.kept_bytes > self.limit {
            return Err(Qcow2Error::BufferLimit {
                limit: self.limit,
                at: at + bytes.len() as u64,
            });
        }
        match self.kept.last_mut() {
            Some((start, data)) if *start + data.len() as u64 == at => {
                data.extend_from_slice(bytes)
            }
            _ => self.kept.push((at, bytes.to_vec())),
        }
        Ok(())
    }

    /// Kept bytes `[from, to)`, if all of them were kept.
    fn kept_range(&self, from: u64, to: u64) -> Option<Vec<u8>> {
        let idx = self
            .kept
            .partition_point(|(s, d)| s + d.len() as u64 <= from);
        let mut result = Vec::with_capacity((to - from) as usize);
        let mut at = from;
        for (s, d) in &self.kept[idx..] {
            if at >= to {
                break;
            }
            if *s > at {
                return None;
            }
            let a = (at - s) as usize;
            let b = ((to - s) as usize).min(d.len());
            result.extend_from_slice(&d[a..b]);
            at = s + b as u64;
        }
        (at >= to).then_some(result)
    }

    /// A new range wanted, found in a table read up to `cursor`: bytes before the cursor
    /// come from what was kept.
    fn want(
        &mut self,
        mut i: Interest,
        cursor: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), Qcow2Error> {
        if i.start >= cursor {
            self.interests.entry(i.start).or_default().push(i);
            return Ok(());
        }
        let upto = i.end().min(cursor);
        let bytes = self.kept_range(i.start, upto).ok_or(Qcow2Error::Lost {
            what: i.want.what(),
            offset: i.start,
        })?;
        match &mut i.want {
            Want::Data { guest } => out.push(Output::Owned {
                offset: *guest,
                data: bytes,
            }),
            Want::Header(buf)
            | Want::L1(buf)
            | Want::L2 { buf, .. }
            | Want::Compressed { buf, .. } => buf.extend_from_slice(&bytes),
        }
        if upto == i.end() {
            return self.complete(i, cursor, out);
        }
        if let Want::Data { guest } = &mut i.want {
            // The rest of the cluster arrives later, at its own place in the disk.
            *guest += upto - i.start;
            i.len -= upto - i.start;
            i.start = upto;
        }
        self.interests.entry(upto).or_default().push(i);
        Ok(())
    }

    /// A wanted range is complete, at `cursor` in the file.
    fn complete(
        &mut self,
        i: Interest,
        cursor: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), Qcow2Error> {
        match i.want {
            Want::Data { .. } => Ok(()),
            Want::Header(buf) => {
                let header = Header::parse(&buf)?;
                let l1 = Interest {
                    start: header.l1_table_offset,
                    len: u64::from(header.l1_size) * 8,
                    want: Want::L1(Vec::new()),
                };
                self.header = Some(header);
                if l1.len == 0 {
                    return self.complete(l1, cursor, out);
                }
                self.want(l1, cursor, out)
            }
            Want::L1(buf) => {
                let header = self.header_or_invalid()?;
                self.l1_read = true;
                let coverage = header.l2_coverage();
                let mut zeros = ZeroRun::default();
                let mut tables = Vec::new();
                for (n, entry) in buf.chunks_exact(8).enumerate() {
                    let guest = n as u64 * coverage;
                    if guest >= header.size {
                        break;
                    }
                    let offset = be64(entry) & OFFSET_MASK;
                    if offset == 0 {
                        zeros.add(guest, coverage.min(header.size - guest), out);
                        continue;
                    }
                    zeros.flush(out);
                    if offset % header.cluster_size() != 0 {
                        return Err(Qcow2Error::Invalid(format!(
                            "L2 table offset {offset} not cluster aligned"
                        )));
                    }
                    tables.push(Interest {
                        start: offset,
                        len: header.cluster_size(),
                        want: Want::L2 {
                            guest,
                            buf: Vec::new(),
                        },
                    });
                }
                zeros.flush(out);
                self.l2_outstanding += tables.len();
                for t in tables {
                    self.want(t, cursor, out)?;
                }
                Ok(())
            }
            Want::L2 { guest, buf } => {
                let header = self.header_or_invalid()?;
                let cluster = header.cluster_size();
                let mut zeros = ZeroRun::default();
                let mut wanted = Vec::new();
                for (n, entry) in buf.chunks_exact(8).enumerate() {
                    let at = guest + n as u64 * cluster;
                    if at >= header.size {
                        break;
                    }
                    let len = cluster.min(header.size - at);
                    let entry = be64(entry);
                    if entry & COMPRESSED != 0 {
                        zeros.flush(out);
                        let x = 62 - (header.cluster_bits - 8);
                        let host = entry & ((1 << x) - 1);
                        let sectors = (entry >> x) & ((1 << (header.cluster_bits - 8)) - 1);
                        wanted.push(Interest {
                            start: host,
                            len: (sectors + 1) * 512 - (host & 511),
                            want: Want::Compressed {
                                guest: at,
                                buf: Vec::new(),
                            },
                        });
                        continue;
                    }
                    let host = entry & OFFSET_MASK;
                    if (header.version == 3 && entry & ZERO != 0) || host == 0 {
                        zeros.add(at, len, out);
                        continue;
                    }
                    zeros.flush(out);
                    if host % cluster != 0 {
                        return Err(Qcow2Error::Invalid(format!(
                            "data cluster offset {host} not cluster aligned"
                        )));
                    }
                    wanted.push(Interest {
                        start: host,
                        len,
                        want: Want::Data { guest: at },
                    });
                }
                zeros.flush(out);
                self.l2_outstanding -= 1;
                for w in wanted {
                    self.want(w, cursor, out)?;
                }
                Ok(())
            }
            Want::Compressed { guest, buf } => {
                let header = self.header_or_invalid()?;
                let len = header.cluster_size().min(header.size - guest) as usize;
                let data = inflate(&buf, header.cluster_size() as usize).map_err(|reason| {
                    Qcow2Error::Compressed {
                        offset: i.start,
                        reason,
                    }
                })?;
                out.push(Output::Owned {
                    offset: guest,
                    data: data[..len].to_vec(),
                });
                Ok(())
            }
        }
    }

    fn header_or_invalid(&self) -> Result<Header, Qcow2Error> {
        self.header
            .clone()
            .ok_or_else(|| Qcow2Error::Invalid("a table before the header".into()))
    }
}

/// Adjacent zero ranges given out as one.
#[derive(Default)]
struct ZeroRun(Option<(u64, u64)>);

impl ZeroRun {
    fn add(&mut self, offset: u64, len: u64, out: &mut Vec<Output>) {
        match &mut self.0 {
            Some((o, l)) if *o + *l == offset => *l += len,
            _ => {
                self.flush(out);
                self.0 = Some((offset, len));
            }
        }
    }

    fn flush(&mut self, out: &mut Vec<Output>) {
        if let Some((offset, len)) = self.0.take() {
            out.push(Output::Zero { offset, len });
        }
    }
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Inflates a raw deflate stream to exactly `size` bytes.
fn inflate(input: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(size);
    let mut d = flate2::Decompress::new(false);
    d.decompress_vec(input, &mut out, flate2::FlushDecompress::Finish)
        .map_err(|e| e.to_string())?;
    if out.len() != size {
        return Err(format!("inflated to {} bytes, not {size}", out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: u64 = 512;

    /// A version 3 image of 512-byte clusters built by hand: header, L1 at cluster 1,
    /// then `clusters` placed where the test says.
    struct Builder {
        file: Vec<u8>,
        size: u64,
    }

    impl Builder {
        fn new(size: u64, l1_entries: u32) -> Builder {
            let mut file = vec![0u8; 2 * CLUSTER as usize];
            file[..4].copy_from_slice(MAGIC);
            file[4..8].copy_from_slice(&3u32.to_be_bytes());
            file[20..24].copy_from_slice(&9u32.to_be_bytes());
            file[24..32].copy_from_slice(&size.to_be_bytes());
            file[36..40].copy_from_slice(&l1_entries.to_be_bytes());
            file[40..48].copy_from_slice(&CLUSTER.to_be_bytes());
            file[96..100].copy_from_slice(&4u32.to_be_bytes());
            file[100..104].copy_from_slice(&104u32.to_be_bytes());
            Builder { file, size }
        }

        /// Appends a cluster; its offset.
        fn cluster(&mut self, bytes: &[u8]) -> u64 {
            let at = self.file.len() as u64;
            let mut c = bytes.to_vec();
            c.resize(CLUSTER as usize, 0);
            self.file.extend_from_slice(&c);
            at
        }

        fn set(&mut self, at: u64, value: u64) {
            self.file[at as usize..at as usize + 8].copy_from_slice(&value.to_be_bytes());
        }
    }

    /// Feeds `file` in chunks of `chunk` bytes; the disk it makes.
    fn convert(file: &[u8], chunk: usize, limit: usize) -> Result<Vec<u8>, Qcow2Error> {
        let mut s = Qcow2Stream::new(limit);
        let mut disk = Vec::new();
        for part in file.chunks(chunk) {
            for o in s.feed(part)? {
                let (offset, data) = match o {
                    Output::Input { offset, range } => (offset, part[range].to_vec()),
                    Output::Owned { offset, data } => (offset, data),
                    Output::Zero { offset, len } => (offset, vec![0; len as usize]),
                };
                let end = offset as usize + data.len();
                if disk.len() < end {
                    disk.resize(end, 0xAA);
                }
                disk[offset as usize..end].copy_from_slice(&data);
            }
        }
        let h = s.finish()?;
        assert_eq!(
            disk.len() as u64,
            h.size,
            "every byte of the disk given out"
        );
        Ok(disk)
    }

    fn expected(size: u64, clusters: &[(u64, u8)]) -> Vec<u8> {
        let mut disk = vec![0u8; size as usize];
        for (n, fill) in clusters {
            let a = (n * CLUSTER) as usize;
            let b = (a + CLUSTER as usize).min(disk.len());
            disk[a..b].fill(*fill);
        }
        disk
    }

    #[test]
    fn an_l2_table_before_its_clusters_keeps_only_metadata_waiting() {
        // 64 clusters per L2 table; a disk of 3 clusters + a partial one.
        let size = 3 * CLUSTER + 100;
        let mut b = Builder::new(size, 1);
        let l2 = b.cluster(&[]);
        let d0 = b.cluster(&[7; 512]);
        let d3 = b.cluster(&[9; 512]);
        b.set(CLUSTER, l2);
        b.set(l2, d0);
        b.set(l2 + 8, ZERO);
        b.set(l2 + 24, d3);
        for chunk in [1, 7, 512, 4096] {
            let disk = convert(&b.file, chunk, 1024).unwrap_or_else(|e| unreachable!("{e}"));
            assert_eq!(disk, expected(size, &[(0, 7), (3, 9)]), "chunk {chunk}");
        }
    }

    #[test]
    fn clusters_before_their_l2_table_are_kept_until_it_arrives() {
        let size = 4 * CLUSTER;
        let mut b = Builder::new(size, 1);
        let d1 = b.cluster(&[1; 512]);
        let d2 = b.cluster(&[2; 512]);
        let l2 = b.cluster(&[]);
        b.set(CLUSTER, l2);
        b.set(l2 + 8, d1);
        b.set(l2 + 16, d2);
        let disk = convert(&b.file, 100, 4096).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(disk, expected(size, &[(1, 1), (2, 2)]));
        // With room for only one cluster kept, the layout is refused, not guessed.
        let err = convert(&b.file, 100, 1500).unwrap_err();
        assert!(matches!(err, Qcow2Error::BufferLimit { .. }), "{err}");
    }

    #[test]
    fn compressed_clusters_sharing_a_sector_both_inflate() {
        use std::io::Write;
        let size = 2 * CLUSTER;
        let mut b = Builder::new(size, 1);
        let l2 = b.cluster(&[]);
        let deflate = |fill: u8| {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(&[fill; 512])
                .unwrap_or_else(|e| unreachable!("{e}"));
            e.finish().unwrap_or_else(|e| unreachable!("{e}"))
        };
        let (a, c) = (deflate(3), deflate(4));
        let start = b.file.len() as u64;
        b.file.extend_from_slice(&a);
        let second = b.file.len() as u64;
        b.file.extend_from_slice(&c);
        b.file.resize(b.file.len().div_ceil(512) * 512, 0);
        // 512-byte clusters: x = 62 - 1, one bit of sector count.
        let descriptor = |host: u64| COMPRESSED | host;
        b.set(CLUSTER, l2);
        b.set(l2, descriptor(start));
        b.set(l2 + 8, descriptor(second));
        assert_eq!(start / 512, second / 512, "both in one sector");
        let disk = convert(&b.file, 3, 4096).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(disk, expected(size, &[(0, 3), (1, 4)]));
    }

    #[test]
    fn a_stream_cut_short_or_a_refused_feature_is_an_error_naming_it() {
        let size = 2 * CLUSTER;
        let mut b = Builder::new(size, 1);
        let l2 = b.cluster(&[]);
        let d0 = b.cluster(&[5; 512]);
        b.set(CLUSTER, l2);
        b.set(l2, d0);
        let err = convert(&b.file[..b.file.len() - 10], 512, 1024).unwrap_err();
        assert!(err.to_string().contains("data cluster"), "{err}");
        let mut backed = b.file.clone();
        backed[8..16].copy_from_slice(&4096u64.to_be_bytes());
        assert!(matches!(
            convert(&backed, 512, 0),
            Err(Qcow2Error::Unsupported(_))
        ));
        let mut zstd = b.file.clone();
        zstd[72..80].copy_from_slice(&8u64.to_be_bytes());
        zstd[100..104].copy_from_slice(&112u32.to_be_bytes());
        zstd[104] = 1;
        let err = convert(&zstd, 512, 0).unwrap_err();
        assert!(err.to_string().contains("zstd"), "{err}");
        assert!(matches!(
            convert(&[0u8; 1024], 512, 0),
            Err(Qcow2Error::Invalid(_))
        ));
    }

    #[test]
    fn an_empty_l1_entry_is_zeros_for_its_whole_range() {
        // Two L2 ranges (64 clusters each); only the second is mapped.
        let size = 100 * CLUSTER;
        let mut b = Builder::new(size, 2);
        let l2 = b.cluster(&[]);
        let d = b.cluster(&[6; 512]);
        b.set(CLUSTER + 8, l2);
        b.set(l2 + 8 * 10, d);
        let disk = convert(&b.file, 333, 1024).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(disk, expected(size, &[(74, 6)]));
        let _ = b.size;
    }
}
