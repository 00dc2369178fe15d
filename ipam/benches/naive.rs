//! Growth rates side by side: this crate's `IpPool::claim` against a naive
//! re-implementation of the upstream IP Address Manager's allocation (every claim gathers
//! every existing allocation into a set, then walks the range from its start to the first
//! address not in it), at 1k, 10k and 65k allocations, in one run.
//!
//! Run: `cargo bench -p ipam --bench naive`. Prints one table; no criterion, as the naive
//! fill of a /16 alone takes tens of seconds.
#![allow(clippy::panic)] // a benchmark whose setup fails must stop loudly

use std::collections::HashSet;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use ipam::{IpPool, IpPoolSpec};

/// The upstream scheme: allocations kept as a list; a claim scans them all.
struct NaivePool {
    start: u32,
    end: u32,
    allocations: Vec<(String, u32)>,
}

impl NaivePool {
    fn new(start: Ipv4Addr, end: Ipv4Addr) -> NaivePool {
        NaivePool {
            start: u32::from(start),
            end: u32::from(end),
            allocations: Vec::new(),
        }
    }

    fn claim(&mut self, name: &str) -> Option<u32> {
        // Idempotent by name, as upstream's claim lookup is.
        if let Some((_, a)) = self.allocations.iter().find(|(n, _)| n == name) {
            return Some(*a);
        }
        let taken: HashSet<u32> = self.allocations.iter().map(|(_, a)| *a).collect();
        let free = (self.start..=self.end).find(|a| !taken.contains(a))?;
        self.allocations.push((name.to_string(), free));
        Some(free)
    }
}

fn pool() -> IpPool {
    let spec: IpPoolSpec = serde_json::from_str(
        r#"{"namePrefix":"bench","pools":[{"start":"10.0.0.1","end":"10.0.255.254"}],"prefix":16}"#,
    )
    .unwrap_or_else(|e| panic!("bench spec: {e}"));
    IpPool::new(&spec).unwrap_or_else(|e| panic!("bench pool: {e}"))
}

fn names(from: usize, to: usize) -> Vec<String> {
    (from..to)
        .map(|i| format!("metal3-worker-{i:07}"))
        .collect()
}

/// Microseconds per claim for `probe` claims made when `n` allocations exist.
fn per_claim_at(n: usize, probe: usize) -> (f64, f64) {
    let before = names(0, n);
    let after = names(n, n + probe);
    let mut ours = pool();
    for name in &before {
        black_box(ours.claim(name).unwrap_or_else(|e| panic!("{e}")));
    }
    let mut naive = NaivePool::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 255, 254));
    // Built directly: filling it claim by claim is what is being measured below.
    naive.allocations = before
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), u32::from(Ipv4Addr::new(10, 0, 0, 1)) + i as u32))
        .collect();
    let t = Instant::now();
    for name in &after {
        black_box(ours.claim(name).unwrap_or_else(|e| panic!("{e}")));
    }
    let ours_us = t.elapsed().as_secs_f64() * 1e6 / probe as f64;
    let t = Instant::now();
    for name in &after {
        black_box(
            naive
                .claim(name)
                .unwrap_or_else(|| panic!("naive pool full")),
        );
    }
    let naive_us = t.elapsed().as_secs_f64() * 1e6 / probe as f64;
    (ours_us, naive_us)
}

/// Milliseconds to fill `n` claims from empty, for both.
fn fill(n: usize) -> (f64, f64) {
    let all = names(0, n);
    let t = Instant::now();
    let mut ours = pool();
    for name in &all {
        black_box(ours.claim(name).unwrap_or_else(|e| panic!("{e}")));
    }
    let ours_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let mut naive = NaivePool::new(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 255, 254));
    for name in &all {
        black_box(
            naive
                .claim(name)
                .unwrap_or_else(|| panic!("naive pool full")),
        );
    }
    let naive_ms = t.elapsed().as_secs_f64() * 1e3;
    (ours_ms, naive_ms)
}

fn main() {
    println!("ipam vs naive scan-all-allocations, one run, single-threaded");
    println!(
        "{:>12} {:>16} {:>16} {:>10}",
        "allocations", "ours µs/claim", "naive µs/claim", "ratio"
    );
    for n in [1_000, 10_000, 65_000] {
        let (ours, naive) = per_claim_at(n, 200);
        println!(
            "{n:>12} {ours:>16.3} {naive:>16.1} {:>9.0}x",
            naive / ours.max(1e-9)
        );
    }
    println!(
        "{:>12} {:>16} {:>16} {:>10}",
        "fill from 0", "ours ms", "naive ms", "ratio"
    );
    for n in [1_000, 10_000] {
        let (ours, naive) = fill(n);
        println!(
            "{n:>12} {ours:>16.2} {naive:>16.1} {:>9.0}x",
            naive / ours.max(1e-9)
        );
    }
}
