//! Per-host agent ISOs for BMCs with one virtual-media slot: the shared agent ISO streamed
//! with its config-image slot (a placeholder file the agent image carries, see
//! [`metal3_agent_protocol::config_image::ISO_SLOT_PATH`]) replaced by the host's config
//! image. Nothing per host is stored: each request reads the one shared file, and BMCs'
//! range requests (virtual media reads the ISO as the host does) are answered from it.
//!
//! ```
//! use metal3_conductor::agent_iso::{overlay, parse_range};
//! let mut chunk = vec![0u8; 8];
//! overlay(&mut chunk, 100, 104, b"ab");
//! assert_eq!(&chunk[4..6], b"ab");
//! assert_eq!(parse_range("bytes=2-", 10), Ok(Some((2, 9))));
//! ```

use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use metal3_agent_protocol::config_image::{ISO_SLOT_BYTES, ISO_SLOT_MAGIC};

/// The ISO's block size: files start on it.
const BLOCK: u64 = 2048;

/// Bytes read and sent at a time.
const CHUNK: usize = 256 * 1024;

/// The shared agent ISO and where its config-image slot is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedIso {
    path: PathBuf,
    len: u64,
    slot_offset: u64,
}

impl SharedIso {
    /// Opens the ISO at `path` and finds its slot: the one block-aligned run of
    /// [`ISO_SLOT_MAGIC`] (an ISO built without the slot, or with two, is refused).
    pub fn open(path: &Path) -> Result<SharedIso, String> {
        let what = |e: io::Error| format!("the agent ISO {}: {e}", path.display());
        let file = std::fs::File::open(path).map_err(what)?;
        let len = file.metadata().map_err(what)?.len();
        let mut found = Vec::new();
        let mut block = vec![0u8; CHUNK];
        let mut at = 0u64;
        while at < len {
            let n = file.read_at(&mut block, at).map_err(what)?;
            if n == 0 {
                break;
            }
            let mut i = 0;
            while i + ISO_SLOT_MAGIC.len() <= n {
                if block[i..].starts_with(ISO_SLOT_MAGIC) {
                    found.push(at + i as u64);
                }
                i += BLOCK as usize;
            }
            at += n as u64;
        }
        match found.as_slice() {
            [offset] if offset + ISO_SLOT_BYTES as u64 <= len => Ok(SharedIso {
                path: path.to_path_buf(),
                len,
                slot_offset: *offset,
            }),
            [] => Err(format!(
                "the agent ISO {} has no config-image slot (built by an older agent-image.sh?)",
                path.display()
            )),
            _ => Err(format!(
                "the agent ISO {} has {} config-image slots, not one",
                path.display(),
                found.len()
            )),
        }
    }

    /// The ISO's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the ISO is empty (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where the slot starts.
    pub fn slot_offset(&self) -> u64 {
        self.slot_offset
    }

    /// The bytes `first..=last` of the ISO with `slot` (the filled slot,
    /// [`ISO_SLOT_BYTES`] long) in place, as an HTTP body read as it is sent.
    pub fn body(&self, slot: Vec<u8>, first: u64, last: u64) -> IsoBody {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (path, slot_offset) = (self.path.clone(), self.slot_offset);
        tokio::task::spawn_blocking(move || {
            let send = |chunk: io::Result<Bytes>| tx.blocking_send(chunk).is_ok();
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    send(Err(e));
                    return;
                }
            };
            let mut at = first;
            while at <= last {
                let n = CHUNK.min((last - at + 1) as usize);
                let mut chunk = vec![0u8; n];
                if let Err(e) = file.read_exact_at(&mut chunk, at) {
                    send(Err(e));
                    return;
                }
                overlay(&mut chunk, at, slot_offset, &slot);
                // A receiver gone (the BMC closed, or a HEAD request) stops the reading.
                if !send(Ok(Bytes::from(chunk))) {
                    return;
                }
                at += n as u64;
            }
        });
        IsoBody {
            rx,
            remaining: last + 1 - first,
        }
    }
}

/// Writes the part of `slot` (placed at `slot_offset`) that falls in `chunk` (placed at
/// `chunk_offset`) over it.
pub fn overlay(chunk: &mut [u8], chunk_offset: u64, slot_offset: u64, slot: &[u8]) {
    let chunk_end = chunk_offset + chunk.len() as u64;
    let slot_end = slot_offset + slot.len() as u64;
    let (start, end) = (chunk_offset.max(slot_offset), chunk_end.min(slot_end));
    if start >= end {
        return;
    }
    let (c, s) = (
        (start - chunk_offset) as usize,
        (start - slot_offset) as usize,
    );
    let n = (end - start) as usize;
    chunk[c..c + n].copy_from_slice(&slot[s..s + n]);
}

/// The one range of a `Range` header over `len` bytes, inclusive: `Ok(None)` for the
/// whole (no header, or several ranges, which may be answered whole), `Err(())` when it
/// is unsatisfiable or not understood.
#[allow(clippy::result_unit_err)]
pub fn parse_range(header: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let spec = header.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.is_empty(), b.is_empty()) {
        // The last `b` bytes.
        (true, false) => {
            let n: u64 = b.parse().map_err(|_| ())?;
            if n == 0 || len == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len - 1)
        }
        (false, _) => {
            let first: u64 = a.parse().map_err(|_| ())?;
            let last: u64 = if b.is_empty() {
                len.saturating_sub(1)
            } else {
                b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
            };
            if first >= len || last < first {
                return Err(());
            }
            (first, last)
        }
        (true, true) => return Err(()),
    };
    Ok(Some(range))
}

/// A streamed ISO (or part of one), bounded in memory: a few chunks in flight.
#[derive(Debug)]
pub struct IsoBody {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    remaining: u64,
}

impl http_body::Body for IsoBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_rfc_9110_reads_them() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-200", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-200", 100), Ok(Some((0, 99))));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=5-4", 100), Err(()));
        assert_eq!(parse_range("items=0-1", 100), Err(()));
        assert_eq!(parse_range("bytes=-0", 100), Err(()));
        assert_eq!(parse_range("bytes=x-1", 100), Err(()));
    }

    #[test]
    fn the_overlay_lands_where_chunk_and_slot_meet() {
        let slot = [1u8, 2, 3, 4];
        let mut before = [0u8; 4];
        overlay(&mut before, 0, 4, &slot);
        assert_eq!(before, [0; 4]);
        let mut across = [0u8; 4];
        overlay(&mut across, 2, 4, &slot);
        assert_eq!(across, [0, 0, 1, 2]);
        let mut inside = [0u8; 2];
        overlay(&mut inside, 5, 4, &slot);
        assert_eq!(inside, [2, 3]);
        let mut over = [9u8; 8];
        overlay(&mut over, 2, 4, &slot);
        assert_eq!(over, [9, 9, 1, 2, 3, 4, 9, 9]);
    }
}
