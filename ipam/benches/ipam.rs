//! IPAM benchmarks: fill a /16 and a /12 one claim at a time, release and re-claim 10% of
//! each once full, and (printed before the timings) resident memory and serialized size per
//! allocation for a full /12.
//!
//! Run: `cargo bench -p ipam`.
#![allow(clippy::panic)] // a benchmark whose setup fails must stop loudly

use std::hint::black_box;
use std::time::Instant;

use criterion::{BatchSize, Criterion};
use ipam::{IpPool, IpPoolSpec};

fn subnet_pool(cidr: &str) -> IpPool {
    let spec: IpPoolSpec = serde_json::from_str(&format!(
        r#"{{"namePrefix":"bench","pools":[{{"subnet":"{cidr}"}}]}}"#
    ))
    .unwrap_or_else(|e| panic!("bench spec: {e}"));
    IpPool::new(&spec).unwrap_or_else(|e| panic!("bench pool: {e}"))
}

/// Claim names as an operator would make them (`<namespace>-<host>`), built outside the
/// timed loops.
fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("metal3-worker-{i:07}")).collect()
}

fn fill(pool: &mut IpPool, names: &[String]) {
    for name in names {
        black_box(pool.claim(name).unwrap_or_else(|e| panic!("{e}")));
    }
}

/// Resident set size in bytes, from /proc/self/status.
fn rss_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn report_memory_and_size() {
    let names12 = names(1_048_574);
    let name_bytes: usize = names12.iter().map(String::len).sum();
    let before = rss_bytes("VmRSS:").unwrap_or(0);
    let started = Instant::now();
    let mut pool = subnet_pool("10.0.0.0/12");
    fill(&mut pool, &names12);
    let took = started.elapsed();
    let after = rss_bytes("VmRSS:").unwrap_or(0);
    let peak = rss_bytes("VmHWM:").unwrap_or(0);
    assert_eq!(pool.len(), 1_048_574);
    assert_eq!(pool.free_count(), 0);
    let n = pool.len() as f64;
    let json = serde_json::to_vec(&pool.state()).unwrap_or_default();
    println!(
        "ipam /12: {} allocations filled in {:.1} ms (single run)",
        pool.len(),
        took.as_secs_f64() * 1e3
    );
    println!(
        "ipam /12: resident memory {:.1} bytes per allocation ({:.1} MiB for the pool; claim names average {:.1} bytes); process peak {:.1} MiB",
        (after.saturating_sub(before)) as f64 / n,
        (after.saturating_sub(before)) as f64 / 1048576.0,
        name_bytes as f64 / n,
        peak as f64 / 1048576.0
    );
    println!(
        "ipam /12: serialized state (JSON) {:.1} bytes per allocation ({:.1} MiB)",
        json.len() as f64 / n,
        json.len() as f64 / 1048576.0
    );
    println!(
        "ipam /12: allocator bookkeeping entries after fill: {}",
        pool.bookkeeping_entries()
    );
}

fn benches(c: &mut Criterion) {
    let names16 = names(65_534);
    let names12 = names(1_048_574);

    c.bench_function("fill /16 (65,534 claims)", |b| {
        b.iter_batched(
            || subnet_pool("10.0.0.0/16"),
            |mut pool| {
                fill(&mut pool, &names16);
                pool
            },
            BatchSize::PerIteration,
        )
    });

    let mut g = c.benchmark_group("large");
    g.sample_size(10);
    g.bench_function("fill /12 (1,048,574 claims)", |b| {
        b.iter_batched(
            || subnet_pool("10.0.0.0/12"),
            |mut pool| {
                fill(&mut pool, &names12);
                pool
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut full16 = subnet_pool("10.0.0.0/16");
    fill(&mut full16, &names16);
    let churn: Vec<&String> = names16.iter().step_by(10).collect();
    c.bench_function("churn /16: release and re-claim 10% (6,554)", |b| {
        b.iter_batched(
            || full16.clone(),
            |mut pool| {
                for name in &churn {
                    black_box(pool.release(name));
                }
                for name in &churn {
                    black_box(pool.claim(name).unwrap_or_else(|e| panic!("{e}")));
                }
                pool
            },
            BatchSize::PerIteration,
        )
    });

    let mut full12 = subnet_pool("10.0.0.0/12");
    fill(&mut full12, &names12);
    let churn12: Vec<&String> = names12.iter().step_by(10).collect();
    let mut g = c.benchmark_group("large");
    g.sample_size(10);
    g.bench_function("churn /12: release and re-claim 10% (104,858)", |b| {
        b.iter_batched(
            || full12.clone(),
            |mut pool| {
                for name in &churn12 {
                    black_box(pool.release(name));
                }
                for name in &churn12 {
                    black_box(pool.claim(name).unwrap_or_else(|e| panic!("{e}")));
                }
                pool
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn main() {
    report_memory_and_size();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
