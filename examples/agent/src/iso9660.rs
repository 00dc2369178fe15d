//! Config images as ISO9660 (what Ironic builds per node today, `genisoimage -J -r -V
//! config-2`): the volume label and every file by its long name, from Joliet names when
//! the image has them, else Rock Ridge `NM` names, else the plain names lower-cased.
//!
//! ```
//! assert!(metal3_agent::iso9660::is_iso9660(&[0u8; 4096]) == false);
//! ```

use std::collections::BTreeMap;

const BLOCK: usize = 2048;

/// Whether `image` starts like an ISO9660 volume (`CD001` in the descriptor at block 16).
pub fn is_iso9660(image: &[u8]) -> bool {
    image.get(16 * BLOCK + 1..16 * BLOCK + 6) == Some(b"CD001")
}

fn le32(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// The label and files of an ISO9660 image; an error names what does not read.
pub fn read(image: &[u8]) -> Result<(String, BTreeMap<String, Vec<u8>>), String> {
    let mut label = None;
    let mut primary_root = None;
    let mut joliet_root = None;
    for n in 16..64 {
        let d = image
            .get(n * BLOCK..(n + 1) * BLOCK)
            .ok_or("the ISO ends inside its volume descriptors")?;
        if &d[1..6] != b"CD001" {
            return Err(format!("volume descriptor {n} is not ISO9660"));
        }
        match d[0] {
            1 => {
                label = Some(String::from_utf8_lossy(&d[40..72]).trim().to_string());
                primary_root = Some(d[156..190].to_vec());
            }
            2 if matches!(&d[88..91], b"%/@" | b"%/C" | b"%/E") => {
                joliet_root = Some(d[156..190].to_vec());
            }
            255 => break,
            _ => {}
        }
    }
    let label = label.ok_or("no primary volume descriptor")?;
    let (root, joliet) = match (joliet_root, primary_root) {
        (Some(j), _) => (j, true),
        (None, Some(p)) => (p, false),
        (None, None) => return Err("no root directory".into()),
    };
    let mut files = BTreeMap::new();
    let mut stack = vec![(String::new(), root, 0usize)];
    while let Some((prefix, record, depth)) = stack.pop() {
        if depth > 16 {
            return Err("directories nested too deep".into());
        }
        let extent = le32(&record, 2).ok_or("short directory record")? * BLOCK;
        let len = le32(&record, 10).ok_or("short directory record")?;
        let dir = image
            .get(extent..extent + len)
            .ok_or("a directory lies outside the image")?;
        let mut at = 0;
        while at < dir.len() {
            let size = dir[at] as usize;
            if size == 0 {
                // Records do not cross blocks: the rest of this one is padding.
                at = (at / BLOCK + 1) * BLOCK;
                continue;
            }
            let r = dir
                .get(at..at + size)
                .ok_or("a directory record runs past its directory")?;
            at += size;
            let name_len = *r.get(32).ok_or("short directory record")? as usize;
            let raw = r.get(33..33 + name_len).ok_or("short directory record")?;
            if raw == [0] || raw == [1] {
                continue; // `.` and `..`
            }
            let name = if joliet {
                let units: Vec<u16> = raw
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
                String::from_utf16_lossy(&units)
            } else {
                rock_ridge_name(r, 33 + name_len + (1 - name_len % 2))
                    .unwrap_or_else(|| String::from_utf8_lossy(raw).to_lowercase())
            };
            let name = name
                .split(';')
                .next()
                .unwrap_or_default()
                .trim_end_matches('.')
                .to_string();
            let path = format!("{prefix}{name}");
            if r[25] & 2 != 0 {
                stack.push((format!("{path}/"), r.to_vec(), depth + 1));
            } else {
                let start = le32(r, 2).ok_or("short directory record")? * BLOCK;
                let flen = le32(r, 10).ok_or("short directory record")?;
                let data = image
                    .get(start..start + flen)
                    .ok_or_else(|| format!("{path} lies outside the image"))?;
                files.insert(path, data.to_vec());
            }
        }
    }
    Ok((label, files))
}

/// The Rock Ridge `NM` name in a record's system use area, from `from`.
fn rock_ridge_name(record: &[u8], from: usize) -> Option<String> {
    let mut at = from;
    let mut name = String::new();
    while at + 4 <= record.len() {
        let (sig, len) = (&record[at..at + 2], record[at + 2] as usize);
        if len < 4 || at + len > record.len() {
            break;
        }
        if sig == b"NM" && len > 5 {
            name.push_str(&String::from_utf8_lossy(&record[at + 5..at + len]));
        }
        at += len;
    }
    (!name.is_empty()).then_some(name)
}
