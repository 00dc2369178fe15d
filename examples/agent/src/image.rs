//! An image written to a disk as it arrives: the format told by its first bytes (and
//! checked against the one declared), the checksum computed over every byte received,
//! raw bytes written in place and qcow2 turned into raw by [`crate::qcow2`], so memory
//! stays flat whatever the image's size. Ranges that read as zeros are zeroed on the disk
//! (by `fallocate` where the disk can, by writing zeros where not), so the disk ends up
//! equal byte for byte to what `qemu-img convert -O raw` makes of the image.
//!
//! ```
//! use metal3_agent::image::{ImageWriter, MemoryDisk};
//! let mut writer = ImageWriter::new(MemoryDisk::new(4096), None, None).unwrap();
//! writer.write(b"raw bytes").unwrap();
//! let (disk, written) = writer.finish().unwrap();
//! assert_eq!(&disk.bytes[..9], b"raw bytes");
//! assert_eq!(written.disk_bytes, 9);
//! ```

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use md5::Md5;
use provision_fsm::{ChecksumType, ImageFormat};
use sha2::{Digest, Sha256, Sha512};

use crate::qcow2::{self, Output, Qcow2Stream};

/// Bytes a qcow2 stream may keep waiting for its tables (see [`crate::qcow2`]).
pub const QCOW2_KEEP_LIMIT: usize = 64 << 20;

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The disk refused a write or a zeroing.
    #[error("writing the disk at byte {offset}: {source}")]
    Disk {
        /// Where on the disk.
        offset: u64,
        /// What the kernel said.
        source: io::Error,
    },
    /// The image does not fit the disk.
    #[error("the image needs {needed} bytes, the disk has {disk}")]
    TooLarge {
        /// Bytes the image's disk has.
        needed: u64,
        /// Bytes the target disk has.
        disk: u64,
    },
    /// The image is not in the format declared, or in one the agent does not write.
    #[error("{0}")]
    Format(String),
    /// The qcow2 stream could not be turned into a disk.
    #[error(transparent)]
    Qcow2(#[from] qcow2::Qcow2Error),
    /// The bytes received do not have the checksum expected.
    #[error("checksum mismatch: expected {expected}, got {actual}")]
    Checksum {
        /// The checksum given.
        expected: String,
        /// The checksum of the bytes received.
        actual: String,
    },
}

/// Where the image goes: a block device, a file, or memory in tests.
pub trait Disk {
    /// The disk's size in bytes.
    fn size(&self) -> u64;
    /// Writes `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes `len` bytes at `offset` read as zeros.
    fn zero(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// Makes everything written durable.
    fn sync(&mut self) -> io::Result<()>;
}

/// A disk in memory (for tests and examples).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryDisk {
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl MemoryDisk {
    /// A disk of `size` bytes, all 0xEE (so a range never written or zeroed shows).
    pub fn new(size: usize) -> MemoryDisk {
        MemoryDisk {
            bytes: vec![0xEE; size],
        }
    }
}

impl Disk for MemoryDisk {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let at = usize::try_from(offset).map_err(io::Error::other)?;
        let end = at
            .checked_add(data.len())
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| io::Error::other("write past the end of the disk"))?;
        self.bytes[at..end].copy_from_slice(data);
        Ok(())
    }
    fn zero(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let at = usize::try_from(offset).map_err(io::Error::other)?;
        let end = usize::try_from(offset + len).map_err(io::Error::other)?;
        self.bytes
            .get_mut(at..end)
            .ok_or_else(|| io::Error::other("zeroing past the end of the disk"))?
            .fill(0);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A block device or a file, opened for writing.
#[derive(Debug)]
pub struct FileDisk {
    file: File,
    size: u64,
    /// The `fallocate` modes not to try again: the disk refused them once.
    refused: Vec<rustix::fs::FallocateFlags>,
}

impl FileDisk {
    /// Opens `path` (a block device, or a file of the disk's size).
    pub fn open(path: &std::path::Path) -> io::Result<FileDisk> {
        use std::io::Seek;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        // A block device's length is where its end is, not its metadata's.
        let size = file.seek(io::SeekFrom::End(0))?;
        Ok(FileDisk {
            file,
            size,
            refused: Vec::new(),
        })
    }
}

/// The zeros written at a time where the disk cannot zero a range itself.
const ZEROS: usize = 1 << 20;

impl Disk for FileDisk {
    fn size(&self) -> u64 {
        self.size
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }
    fn zero(&mut self, offset: u64, len: u64) -> io::Result<()> {
        use rustix::fs::{FallocateFlags, fallocate};
        // Zeroing in place keeps the blocks allocated, as a written zero would; punching
        // a hole is the next best (files on tmpfs), writing zeros the last resort.
        // A mode the disk refused once is not asked again (a zero range per cluster).
        for flags in [
            FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        ] {
            if self.refused.contains(&flags) {
                continue;
            }
            match fallocate(&self.file, flags, offset, len) {
                Ok(()) => return Ok(()),
                Err(
                    rustix::io::Errno::OPNOTSUPP
                    | rustix::io::Errno::NOSYS
                    | rustix::io::Errno::INVAL,
                ) => self.refused.push(flags),
                Err(_) => {}
            }
        }
        let zeros = vec![0u8; ZEROS];
        let mut at = offset;
        while at < offset + len {
            let n = (offset + len - at).min(ZEROS as u64) as usize;
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

/// The format an image's first bytes say it has: `qcow2`, `vmdk`, `vdi` or `vhdx` by
/// their magic, else raw.
pub fn detect(first: &[u8]) -> ImageFormat {
    if first.starts_with(qcow2::MAGIC) {
        ImageFormat::Qcow2
    } else if first.starts_with(b"KDMV") || first.starts_with(b"# Disk DescriptorFile") {
        ImageFormat::Vmdk
    } else if first.len() >= 68 && first[64..68] == [0x7f, 0x10, 0xda, 0xbe] {
        ImageFormat::Vdi
    } else if first.starts_with(b"vhdxfile") {
        ImageFormat::Other("vhdx".into())
    } else {
        ImageFormat::Raw
    }
}

/// Raw images are looked at in blocks of this size: an all-zero block is zeroed on the
/// disk (cheap on files and thin disks) instead of written, as `qemu-img convert` does.
const ZERO_BLOCK: u64 = 64 << 10;

/// Writes `chunk` at `start`, its all-zero blocks as zeroed ranges; adjacent runs of
/// either kind go to the disk as one call.
fn write_sparse<D: Disk>(disk: &mut D, start: u64, chunk: &[u8]) -> Result<(), ImageError> {
    let mut runs: Vec<(u64, usize, usize, bool)> = Vec::new();
    let mut at = 0usize;
    while at < chunk.len() {
        // Blocks are aligned to the disk, not to the chunk.
        let offset = start + at as u64;
        let block_end = ((offset / ZERO_BLOCK + 1) * ZERO_BLOCK - start) as usize;
        let end = block_end.min(chunk.len());
        let zero = all_zero(&chunk[at..end]);
        match runs.last_mut() {
            Some((_, _, e, z)) if *z == zero => *e = end,
            _ => runs.push((offset, at, end, zero)),
        }
        at = end;
    }
    for (offset, a, b, zero) in runs {
        let result = if zero {
            disk.zero(offset, (b - a) as u64)
        } else {
            disk.write_at(offset, &chunk[a..b])
        };
        result.map_err(|source| ImageError::Disk { offset, source })?;
    }
    Ok(())
}

/// Whether every byte is zero: data usually shows in its first bytes; a zero block is
/// scanned whole with an OR the compiler vectorises.
fn all_zero(block: &[u8]) -> bool {
    block.iter().take(16).all(|b| *b == 0) && block.iter().fold(0u8, |a, b| a | b) == 0
}

/// Bytes [`detect`] needs.
const DETECT_BYTES: usize = 68;

/// A running digest of one of the types Metal3 allows.
enum Hasher {
    Md5(Md5),
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }
    fn hex(self) -> String {
        let bytes = match self {
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The checksum an image must have: its hex digest and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// Lower-case hex.
    pub hex: String,
    /// md5, sha256 or sha512 (resolved from `auto`).
    pub kind: ChecksumType,
}

impl Checksum {
    /// `hex` of type `kind` (`auto` resolved by its length); an error names what is wrong.
    pub fn new(hex: &str, kind: &ChecksumType) -> Result<Checksum, String> {
        let hex = hex.trim().to_ascii_lowercase();
        let kind = kind.resolve(&hex)?;
        let want = match kind {
            ChecksumType::Md5 => 32,
            ChecksumType::Sha256 => 64,
            _ => 128,
        };
        if hex.len() != want || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{hex:?} is not a {} checksum", kind.name()));
        }
        Ok(Checksum { hex, kind })
    }

    fn hasher(&self) -> Hasher {
        match self.kind {
            ChecksumType::Md5 => Hasher::Md5(Md5::new()),
            ChecksumType::Sha256 => Hasher::Sha256(Sha256::new()),
            _ => Hasher::Sha512(Sha512::new()),
        }
    }
}

/// The checksum for `image_url` in a checksum file (`sha256sum` output, one line per
/// file, or a lone digest), as Metal3 allows `checksum` to be the URL of one.
pub fn checksum_in_file(text: &str, image_url: &str) -> Result<String, String> {
    let name = image_url
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let lines: Vec<(&str, Option<&str>)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((sum, file)) => (sum, Some(file.trim().trim_start_matches('*'))),
            None => (l, None),
        })
        .collect();
    if let [(sum, _)] = lines.as_slice() {
        return Ok(sum.to_string());
    }
    lines
        .iter()
        .find(|(_, file)| file.is_some_and(|f| f == name || f.ends_with(&format!("/{name}"))))
        .map(|(sum, _)| sum.to_string())
        .ok_or_else(|| format!("the checksum file has no line for {name}"))
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The format the image had.
    pub format: ImageFormat,
    /// Bytes received.
    pub image_bytes: u64,
    /// Bytes of disk the image describes (its virtual size for qcow2).
    pub disk_bytes: u64,
    /// The checksum of the bytes received, when one was expected (and matched).
    pub checksum: Option<String>,
    /// The most bytes a qcow2 image kept waiting for its tables at once (0 for raw).
    pub peak_kept_bytes: usize,
}

enum Decoder {
    /// Not enough bytes yet to tell the format.
    Unknown(Vec<u8>),
    Raw,
    Qcow2(Box<Qcow2Stream>),
}

/// An image written to a [`Disk`] chunk by chunk (see the [module](self) docs).
pub struct ImageWriter<D: Disk> {
    disk: D,
    declared: Option<ImageFormat>,
    checksum: Option<(Checksum, Hasher)>,
    decoder: Decoder,
    received: u64,
    format: ImageFormat,
}

impl<D: Disk> ImageWriter<D> {
    /// Writes to `disk` an image declared to be `declared` (none: whatever it is), to be
    /// checked against `checksum`. A declared format the agent cannot write is refused
    /// here, before any byte is written.
    pub fn new(
        disk: D,
        declared: Option<ImageFormat>,
        checksum: Option<Checksum>,
    ) -> Result<ImageWriter<D>, ImageError> {
        if let Some(f) = &declared {
            if !matches!(f, ImageFormat::Raw | ImageFormat::Qcow2) {
                return Err(ImageError::Format(format!(
                    "image format {} cannot be written to disk (raw and qcow2 can)",
                    f.name()
                )));
            }
        }
        Ok(ImageWriter {
            disk,
            declared,
            checksum: checksum.map(|c| {
                let h = c.hasher();
                (c, h)
            }),
            decoder: Decoder::Unknown(Vec::new()),
            received: 0,
            format: ImageFormat::Raw,
        })
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Takes the next bytes of the image.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), ImageError> {
        if let Some((_, h)) = &mut self.checksum {
            h.update(chunk);
        }
        let start = self.received;
        self.received += chunk.len() as u64;
        if let Decoder::Unknown(head) = &mut self.decoder {
            head.extend_from_slice(chunk);
            if head.len() < DETECT_BYTES {
                return Ok(());
            }
            let head = std::mem::take(head);
            self.start(&head)?;
            return self.decode(0, &head);
        }
        self.decode(start, chunk)
    }

    /// Chooses the decoder from the image's first bytes.
    fn start(&mut self, head: &[u8]) -> Result<(), ImageError> {
        let found = detect(head);
        if let Some(declared) = &self.declared {
            if *declared != found {
                return Err(ImageError::Format(format!(
                    "the image is declared {} but its content is {}",
                    declared.name(),
                    found.name()
                )));
            }
        }
        self.decoder = match &found {
            ImageFormat::Raw => Decoder::Raw,
            ImageFormat::Qcow2 => Decoder::Qcow2(Box::new(Qcow2Stream::new(QCOW2_KEEP_LIMIT))),
            other => {
                return Err(ImageError::Format(format!(
                    "image format {} cannot be written to disk (raw and qcow2 can)",
                    other.name()
                )));
            }
        };
        self.format = found;
        Ok(())
    }

    fn decode(&mut self, start: u64, chunk: &[u8]) -> Result<(), ImageError> {
        let disk_size = self.disk.size();
        match &mut self.decoder {
            Decoder::Unknown(_) => Ok(()),
            Decoder::Raw => {
                let end = start + chunk.len() as u64;
                if end > disk_size {
                    return Err(ImageError::TooLarge {
                        needed: end,
                        disk: disk_size,
                    });
                }
                write_sparse(&mut self.disk, start, chunk)
            }
            Decoder::Qcow2(stream) => {
                let had_size = stream.virtual_size().is_some();
                let outputs = stream.feed(chunk)?;
                if let (false, Some(size)) = (had_size, stream.virtual_size()) {
                    if size > disk_size {
                        return Err(ImageError::TooLarge {
                            needed: size,
                            disk: disk_size,
                        });
                    }
                }
                for o in outputs {
                    let (offset, result) = match o {
                        Output::Input { offset, range } => {
                            (offset, self.disk.write_at(offset, &chunk[range]))
                        }
                        Output::Owned { offset, data } => {
                            (offset, self.disk.write_at(offset, &data))
                        }
                        Output::Zero { offset, len } => (offset, self.disk.zero(offset, len)),
                    };
                    result.map_err(|source| ImageError::Disk { offset, source })?;
                }
                Ok(())
            }
        }
    }

    /// Ends the image: checks it was whole and had the checksum expected, and syncs the
    /// disk. The disk is given back either way, so a failed image can be erased.
    pub fn finish(mut self) -> Result<(D, Written), (D, ImageError)> {
        let result = self.end();
        match result {
            Ok(written) => Ok((self.disk, written)),
            Err(e) => Err((self.disk, e)),
        }
    }

    fn end(&mut self) -> Result<Written, ImageError> {
        if let Decoder::Unknown(head) = &mut self.decoder {
            // A raw image shorter than the bytes format detection looks at.
            let head = std::mem::take(head);
            self.start(&head)?;
            self.decode(0, &head)?;
        }
        let (disk_bytes, peak_kept_bytes) = match &self.decoder {
            Decoder::Qcow2(stream) => (stream.finish()?.size, stream.peak_kept_bytes()),
            _ => (self.received, 0),
        };
        let checksum = match self.checksum.take() {
            Some((expected, hasher)) => {
                let actual = hasher.hex();
                if actual != expected.hex {
                    return Err(ImageError::Checksum {
                        expected: expected.hex,
                        actual,
                    });
                }
                Some(actual)
            }
            None => None,
        };
        self.disk
            .sync()
            .map_err(|source| ImageError::Disk { offset: 0, source })?;
        Ok(Written {
            format: self.format.clone(),
            image_bytes: self.received,
            disk_bytes,
            checksum,
            peak_kept_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_image_is_written_in_place_and_its_checksum_checked() {
        let sum = Checksum::new(
            "2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
            &ChecksumType::Auto,
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let mut w = ImageWriter::new(
            MemoryDisk::new(16),
            Some(ImageFormat::Raw),
            Some(sum.clone()),
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        w.write(b"hel").unwrap_or_else(|e| unreachable!("{e}"));
        w.write(b"lo").unwrap_or_else(|e| unreachable!("{e}"));
        let (disk, written) = w.finish().unwrap_or_else(|(_, e)| unreachable!("{e}"));
        assert_eq!(&disk.bytes[..6], b"hello\xee");
        assert_eq!(written.checksum.as_deref(), Some(sum.hex.as_str()));

        let mut w = ImageWriter::new(MemoryDisk::new(16), None, Some(sum))
            .unwrap_or_else(|e| unreachable!("{e}"));
        w.write(b"hellO").unwrap_or_else(|e| unreachable!("{e}"));
        let Err((_, err)) = w.finish() else {
            unreachable!("a wrong checksum is an error")
        };
        assert!(matches!(err, ImageError::Checksum { .. }), "{err}");
    }

    #[test]
    fn zero_blocks_of_a_raw_image_are_zeroed_not_skipped() {
        // 200 KiB: data, a 64 KiB-aligned zero block, data, a zero tail; fed unaligned.
        let mut image = vec![7u8; 200 << 10];
        image[64 << 10..128 << 10].fill(0);
        image[190 << 10..].fill(0);
        let mut w = ImageWriter::new(MemoryDisk::new(256 << 10), None, None)
            .unwrap_or_else(|e| unreachable!("{e}"));
        for part in image.chunks(3000) {
            w.write(part).unwrap_or_else(|e| unreachable!("{e}"));
        }
        let (disk, _) = w.finish().unwrap_or_else(|(_, e)| unreachable!("{e}"));
        assert!(disk.bytes[..image.len()] == image[..]);
        assert!(
            disk.bytes[image.len()..].iter().all(|b| *b == 0xEE),
            "nothing past the image"
        );
    }

    #[test]
    fn an_image_larger_than_the_disk_or_of_another_format_is_refused() {
        let mut w = ImageWriter::new(MemoryDisk::new(100), None, None)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let err = w.write(&[1u8; 101]).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::TooLarge {
                    needed: 101,
                    disk: 100
                }
            ),
            "{err}"
        );

        let mut w = ImageWriter::new(MemoryDisk::new(4096), Some(ImageFormat::Raw), None)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let mut qcow = b"QFI\xfb".to_vec();
        qcow.resize(512, 0);
        let err = w.write(&qcow).unwrap_err();
        assert!(
            err.to_string()
                .contains("declared raw but its content is qcow2"),
            "{err}"
        );

        let mut vmdk = b"KDMV".to_vec();
        vmdk.resize(512, 0);
        let mut w = ImageWriter::new(MemoryDisk::new(4096), None, None)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(w.write(&vmdk).unwrap_err().to_string().contains("vmdk"));
        assert!(ImageWriter::new(MemoryDisk::new(1), Some(ImageFormat::Vdi), None).is_err());
    }

    #[test]
    fn a_checksum_file_gives_the_line_of_the_image() {
        let file = "abc123  other.img\n0123abcd *images/os.qcow2\n";
        assert_eq!(
            checksum_in_file(file, "http://h/images/os.qcow2?x=1").as_deref(),
            Ok("0123abcd")
        );
        assert_eq!(
            checksum_in_file("feed\n", "http://h/a.img").as_deref(),
            Ok("feed")
        );
        assert!(checksum_in_file(file, "http://h/missing.img").is_err());
        assert!(Checksum::new("xyz", &ChecksumType::Md5).is_err());
        assert!(Checksum::new(&"g".repeat(32), &ChecksumType::Md5).is_err());
    }
}
