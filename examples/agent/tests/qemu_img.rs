//! qcow2 images made by `qemu-img` in every layout it makes (versions 2 and 3, cluster
//! sizes from 512 bytes to 2 MiB, compressed, preallocated metadata, lazy refcounts),
//! streamed by the agent onto a disk full of garbage, equal byte for byte to what
//! `qemu-img convert -O raw` makes of them; once onto a loop device too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use metal3_agent::image::{Checksum, FileDisk, ImageWriter};
use provision_fsm::{ChecksumType, ImageFormat};
use sha2::Digest;
use test_peers::tool_ok;

fn work(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("agent-qemu-img")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A 12 MiB raw disk with text, random-looking data, runs of zeros and a partial last
/// cluster for every cluster size: what an OS image looks like to the converter.
fn source_disk(path: &Path) {
    let size = 12 * 1024 * 1024 + 3 * 512;
    let mut disk = vec![0u8; size];
    let mut x: u32 = 0x1234_5678;
    for (n, chunk) in disk.chunks_mut(64 * 1024).enumerate() {
        match n % 4 {
            0 => {
                for b in chunk.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    *b = x as u8;
                }
            }
            1 => chunk.fill(0),
            2 => {
                for (i, b) in chunk.iter_mut().enumerate() {
                    *b = b"metal3 agent "[i % 13];
                }
            }
            _ => {
                // Mostly zeros with a few bytes set: a cluster qemu keeps.
                chunk[100] = 1;
                chunk[chunk.len() - 1] = 2;
            }
        }
    }
    let last = disk.len() - 700;
    disk[last..].fill(0x5a);
    std::fs::write(path, disk).unwrap();
}

/// Streams `image` in uneven chunks onto `target` (already of the disk's size).
fn stream(image: &Path, target: &Path, checksum: Option<Checksum>) -> metal3_agent::image::Written {
    let disk = FileDisk::open(target).unwrap();
    let mut w = ImageWriter::new(disk, Some(ImageFormat::Qcow2), checksum).unwrap();
    let mut file = std::fs::File::open(image).unwrap();
    let mut buf = vec![0u8; 65_537];
    let mut n = 0usize;
    loop {
        // Chunk sizes change as the network's would.
        let want = [65_537, 1, 4096, 31_000][n % 4];
        n += 1;
        let got = file.read(&mut buf[..want]).unwrap();
        if got == 0 {
            break;
        }
        w.write(&buf[..got])
            .unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    }
    match w.finish() {
        Ok((_, written)) => written,
        Err((_, e)) => panic!("{}: {e}", image.display()),
    }
}

fn garbage(path: &Path, size: u64) {
    std::fs::write(path, vec![0xEEu8; size as usize]).unwrap();
}

#[test]
fn every_qemu_img_layout_streams_to_the_same_disk_as_qemu_img_convert() {
    let dir = work("layouts");
    let raw = dir.join("source.raw");
    source_disk(&raw);
    let size = std::fs::metadata(&raw).unwrap().len();
    let layouts: [(&str, &[&str]); 8] = [
        ("v3-64k", &["-o", "compat=1.1"]),
        ("v2-64k", &["-o", "compat=0.10"]),
        ("v3-512", &["-o", "cluster_size=512"]),
        ("v3-2m", &["-o", "cluster_size=2M"]),
        ("v3-compressed", &["-c"]),
        (
            "v2-compressed-4k",
            &["-c", "-o", "compat=0.10,cluster_size=4096"],
        ),
        ("v3-prealloc", &["-o", "preallocation=metadata"]),
        ("v3-lazy", &["-o", "lazy_refcounts=on"]),
    ];
    for (name, options) in layouts {
        let qcow = dir.join(format!("{name}.qcow2"));
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend_from_slice(options);
        args.extend([raw.to_str().unwrap(), qcow.to_str().unwrap()]);
        qemu_img(&args);
        let reference = dir.join(format!("{name}.ref.raw"));
        qemu_img(&[
            "convert",
            "-f",
            "qcow2",
            "-O",
            "raw",
            qcow.to_str().unwrap(),
            reference.to_str().unwrap(),
        ]);
        let ours = dir.join(format!("{name}.ours.raw"));
        garbage(&ours, size);
        let sum = format!("{:x}", sha2::Sha256::digest(std::fs::read(&qcow).unwrap()));
        let written = stream(
            &qcow,
            &ours,
            Some(Checksum::new(&sum, &ChecksumType::Sha256).unwrap()),
        );
        assert_eq!(written.disk_bytes, size, "{name}");
        // Only metadata waits for its tables (header, refcounts): 4 clusters or 64 KiB at most.
        let cluster = match name {
            "v3-512" => 512,
            "v3-2m" => 2 << 20,
            "v2-compressed-4k" => 4096,
            _ => 64 << 10,
        };
        assert!(
            written.peak_kept_bytes <= (4 * cluster).max(64 << 10),
            "{name}: {} bytes kept",
            written.peak_kept_bytes
        );
        assert_eq!(written.checksum.as_deref(), Some(sum.as_str()), "{name}");
        let (a, b) = (
            std::fs::read(&reference).unwrap(),
            std::fs::read(&ours).unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{name}");
        let first = a.iter().zip(&b).position(|(x, y)| x != y);
        assert_eq!(first, None, "{name}: first differing byte");
        println!(
            "{name}: {} image bytes -> {} disk bytes, equal to qemu-img convert; {} bytes kept at most",
            written.image_bytes, written.disk_bytes, written.peak_kept_bytes
        );
        for f in [&qcow, &reference, &ours] {
            std::fs::remove_file(f).unwrap();
        }
    }
}

/// The same onto a loop device (a block device: zeroing by fallocate or by writes).
#[test]
fn a_qcow2_image_streams_onto_a_loop_device() {
    if !nix_root() {
        eprintln!("skipped: loop devices need root");
        return;
    }
    let dir = work("loop");
    let raw = dir.join("source.raw");
    source_disk(&raw);
    let size = std::fs::metadata(&raw).unwrap().len();
    let qcow = dir.join("image.qcow2");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        qcow.to_str().unwrap(),
    ]);
    // A backing file one MiB larger than the image, full of garbage.
    let backing = dir.join("disk.img");
    garbage(&backing, size + (1 << 20));
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&backing)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let device = String::from_utf8(out.stdout).unwrap().trim().to_string();
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = Command::new("losetup").args(["-d", &self.0]).output();
        }
    }
    let _detach = Detach(device.clone());
    let written = stream(&qcow, Path::new(&device), None);
    assert_eq!(written.disk_bytes, size);
    let mut on_disk = vec![0u8; size as usize];
    std::fs::File::open(&device)
        .unwrap()
        .read_exact(&mut on_disk)
        .unwrap();
    assert!(
        on_disk == std::fs::read(&raw).unwrap(),
        "the loop device holds the image"
    );
}

fn nix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

fn qemu_img(args: &[&str]) {
    tool_ok("qemu-img", args, None);
}
