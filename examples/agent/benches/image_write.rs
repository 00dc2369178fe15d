//! Image write throughput: the agent's streaming writer against `qemu-img convert` of the
//! same image to the same kind of target (a fresh file of the disk's size, synced), for
//! a raw and a qcow2 image of 512 MiB (half data, half zeros). Prints MiB/s, the ratio,
//! and the bench's peak resident memory (flat: chunks of 1 MiB, nothing staged).
//! `cargo bench -p metal3-agent --bench image_write [-- ROUNDS]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use metal3_agent::image::{FileDisk, ImageWriter};
use test_peers::tool_ok;

const SIZE: u64 = 512 << 20;

fn fresh(target: &Path) {
    let _ = std::fs::remove_file(target);
    std::fs::File::create(target)
        .unwrap()
        .set_len(SIZE)
        .unwrap();
}

fn ours(image: &Path, target: &Path) -> f64 {
    fresh(target);
    let start = Instant::now();
    let mut w = ImageWriter::new(FileDisk::open(target).unwrap(), None, None).unwrap();
    let mut f = std::fs::File::open(image).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        w.write(&buf[..n]).unwrap();
    }
    w.finish().map_err(|(_, e)| e).unwrap();
    start.elapsed().as_secs_f64()
}

fn theirs(image: &Path, format: &str, target: &Path) -> f64 {
    fresh(target);
    let start = Instant::now();
    qemu_img(&[
        "convert",
        "-n",
        "-f",
        format,
        "-O",
        "raw",
        image.to_str().unwrap(),
        target.to_str().unwrap(),
    ]);
    // Ours syncs before it reports done; so does this.
    let status = Command::new("sync").arg(target).status().unwrap();
    assert!(status.success());
    start.elapsed().as_secs_f64()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-write-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let raw = dir.join("source.raw");
    {
        let mut data = vec![0u8; SIZE as usize];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for (n, chunk) in data.chunks_mut(1 << 20).enumerate() {
            if n % 2 == 0 {
                for b in chunk.iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
            }
        }
        std::fs::write(&raw, data).unwrap();
    }
    let qcow = dir.join("source.qcow2");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        qcow.to_str().unwrap(),
    ]);
    let target = dir.join("target.raw");
    // Making the source took memory; the peak measured is the writers' (5: reset VmHWM).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mib = SIZE as f64 / f64::from(1 << 20);
    println!(
        "image write, {mib:.0} MiB disk, best of {rounds} rounds, target a fresh file, synced"
    );
    for (name, image, format) in [("raw", &raw, "raw"), ("qcow2", &qcow, "qcow2")] {
        let best = |f: &dyn Fn() -> f64| (0..rounds).map(|_| f()).fold(f64::MAX, f64::min);
        let a = best(&|| ours(image, &target));
        let b = best(&|| theirs(image, format, &target));
        println!(
            "{name:>6}: agent {:7.1} MiB/s ({a:.2} s), qemu-img convert {:7.1} MiB/s ({b:.2} s): {:.0} %",
            mib / a,
            mib / b,
            100.0 * b / a
        );
    }
    println!(
        "peak resident memory of this bench: {} MiB",
        peak_rss_kib() / 1024
    );
    for f in [&raw, &qcow, &target] {
        let _ = std::fs::remove_file(f);
    }
}

fn qemu_img(args: &[&str]) {
    tool_ok("qemu-img", args, None);
}
