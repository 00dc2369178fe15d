//! Property tests: random claim/release/restore sequences on random pools agree with a
//! naive set-based reference allocator, and never break the pool's invariants.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipam::{AllocationStrategy, ClaimError, IpPool, IpPoolSpec, PoolRange};
use proptest::prelude::*;

/// The naive allocator: scans every address of every range on each claim.
struct Model {
    ranges: Vec<(u128, u128)>,
    reserved: BTreeSet<u128>,
    pre: BTreeMap<String, u128>,
    strategy: AllocationStrategy,
    held: BTreeMap<String, u128>,
    ever_used: BTreeSet<u128>,
    released: VecDeque<u128>,
}

impl Model {
    fn is_free(&self, v: u128) -> bool {
        !self.reserved.contains(&v)
            && !self.pre.values().any(|p| *p == v)
            && !self.held.values().any(|h| *h == v)
    }

    fn in_range(&self, v: u128) -> bool {
        self.ranges.iter().any(|(f, l)| (*f..=*l).contains(&v))
    }

    fn claim(&mut self, name: &str) -> Option<u128> {
        if let Some(v) = self.held.get(name) {
            return Some(*v);
        }
        let v = if let Some(p) = self.pre.get(name) {
            *p
        } else {
            let fresh = self.ranges.iter().flat_map(|(f, l)| *f..=*l).find(|v| {
                self.is_free(*v)
                    && (self.strategy == AllocationStrategy::Sequential
                        || !self.ever_used.contains(v))
            });
            match fresh {
                Some(v) => v,
                None => {
                    let pos = self.released.iter().position(|v| self.is_free(*v))?;
                    self.released.remove(pos)?
                }
            }
        };
        self.ever_used.insert(v);
        self.held.insert(name.to_string(), v);
        Some(v)
    }

    fn claim_address(&mut self, name: &str, v: u128) -> bool {
        if let Some(h) = self.held.get(name) {
            return *h == v;
        }
        if let Some(p) = self.pre.get(name) {
            if *p != v {
                return false;
            }
        } else if !self.in_range(v) || !self.is_free(v) {
            return false;
        }
        self.released.retain(|r| *r != v);
        self.ever_used.insert(v);
        self.held.insert(name.to_string(), v);
        true
    }

    fn release(&mut self, name: &str) -> Option<u128> {
        let v = self.held.remove(name)?;
        if !self.pre.contains_key(name) && self.strategy == AllocationStrategy::ReuseLast {
            self.released.push_back(v);
        }
        Some(v)
    }

    fn free_count(&self) -> u128 {
        let mut n = 0;
        for v in self.ranges.iter().flat_map(|(f, l)| *f..=*l) {
            if self.is_free(v) {
                n += 1;
            }
        }
        n
    }
}

#[derive(Debug, Clone)]
enum Op {
    Claim(u8),
    ClaimAddress(u8, u16),
    Release(u8),
    Restore,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..14).prop_map(Op::Claim),
        2 => (0u8..14, 0u16..300).prop_map(|(n, a)| Op::ClaimAddress(n, a)),
        3 => (0u8..14).prop_map(Op::Release),
        1 => Just(Op::Restore),
    ]
}

/// A pool description: family, ranges as (network index, first offset, length), gateway
/// offset, pre-allocations as (claim, offset into the flattened ranges), strategy.
#[derive(Debug, Clone)]
struct PoolDesc {
    v6_top: bool,
    ranges: Vec<(u8, u8, u8)>,
    gateway: Option<u8>,
    pre: Vec<(u8, u16)>,
    reuse_last: bool,
    allow_reserved: bool,
}

fn pool_desc() -> impl Strategy<Value = PoolDesc> {
    (
        any::<bool>(),
        prop::collection::vec((0u8..3, prop_oneof![0u8..20, 244u8..=255], 1u8..12), 1..4),
        prop::option::of(0u8..20),
        prop::collection::vec((0u8..14, 0u16..40), 0..3),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(v6_top, ranges, gateway, pre, reuse_last, allow_reserved)| PoolDesc {
                v6_top,
                ranges,
                gateway,
                pre,
                reuse_last,
                allow_reserved,
            },
        )
}

/// Builds the pool's address for (network index, offset).
fn addr(desc: &PoolDesc, net: u8, offset: u8) -> IpAddr {
    if desc.v6_top {
        // Networks at the very top of the IPv6 space: ffff:…:ff<net>:0/120.
        let v = u128::MAX - (u128::from(2 - net) << 8) - 255 + u128::from(offset);
        IpAddr::V6(Ipv6Addr::from(v))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, net, offset))
    }
}

fn value(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(*a)),
        IpAddr::V6(a) => u128::from(*a),
    }
}

/// The spec, and the model for it; `None` when the spec is invalid (overlaps, duplicate
/// pre-allocations...), which `IpPool::new` must also reject.
fn build(desc: &PoolDesc) -> (IpPoolSpec, Option<Model>) {
    let prefix = if desc.v6_top { 120 } else { 24 };
    let mut spec = IpPoolSpec {
        name_prefix: "p".into(),
        prefix: Some(prefix),
        allocation_strategy: if desc.reuse_last {
            AllocationStrategy::ReuseLast
        } else {
            AllocationStrategy::Sequential
        },
        allocate_reserved_addresses: desc.allow_reserved,
        ..IpPoolSpec::default()
    };
    let mut ranges = Vec::new();
    for (net, first, len) in &desc.ranges {
        let (s, e) = (
            addr(desc, *net, *first),
            addr(desc, *net, first.saturating_add(len - 1)),
        );
        spec.pools.push(PoolRange::from_to(s, e));
        ranges.push((value(&s), value(&e)));
    }
    // The gateway goes in the first range's network.
    let net0 = desc.ranges[0].0;
    spec.gateway = desc.gateway.map(|g| addr(desc, net0, g));
    let flat: Vec<u128> = ranges.iter().flat_map(|(f, l)| *f..=*l).collect();
    for (claim, off) in &desc.pre {
        let v = flat[usize::from(*off) % flat.len()];
        let ip = if desc.v6_top {
            IpAddr::V6(Ipv6Addr::from(v))
        } else {
            IpAddr::V4(Ipv4Addr::from(v as u32))
        };
        spec.pre_allocations.insert(format!("c{claim}"), ip);
    }

    let mut sorted = ranges.clone();
    sorted.sort();
    let overlap = sorted.windows(2).any(|w| w[1].0 <= w[0].1);
    let gateway_ok = spec.gateway.is_none() || desc.ranges.iter().all(|(net, _, _)| *net == net0);
    let pre_values: Vec<u128> = spec.pre_allocations.values().map(value).collect();
    let pre_dup = pre_values.iter().collect::<BTreeSet<_>>().len() != pre_values.len();
    let mut reserved = BTreeSet::new();
    if !desc.allow_reserved {
        if let Some(g) = spec.gateway {
            reserved.insert(value(&g));
        }
        if !desc.v6_top {
            for (net, _, _) in &desc.ranges {
                reserved.insert(value(&addr(desc, *net, 0)));
                reserved.insert(value(&addr(desc, *net, 255)));
            }
        }
    }
    let in_ranges = |v: &u128| ranges.iter().any(|(f, l)| (*f..=*l).contains(v));
    reserved.retain(in_ranges);
    let pre_reserved = pre_values.iter().any(|v| reserved.contains(v));
    if overlap || !gateway_ok || pre_dup || pre_reserved {
        return (spec, None);
    }
    let model = Model {
        ranges,
        reserved,
        pre: spec
            .pre_allocations
            .iter()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect(),
        strategy: spec.allocation_strategy,
        held: BTreeMap::new(),
        ever_used: BTreeSet::new(),
        released: VecDeque::new(),
    };
    (spec, Some(model))
}

fn check_invariants(pool: &IpPool, model: &Model) -> Result<(), TestCaseError> {
    let held: BTreeMap<String, u128> = pool
        .allocations()
        .map(|(k, v)| (k.to_string(), value(&v)))
        .collect();
    prop_assert_eq!(&held, &model.held);
    let distinct: BTreeSet<u128> = held.values().copied().collect();
    prop_assert_eq!(distinct.len(), held.len(), "an address is held twice");
    for (claim, v) in &held {
        prop_assert!(model.in_range(*v), "{} outside the ranges", claim);
        match model.pre.get(claim) {
            Some(p) => prop_assert_eq!(p, v),
            None => {
                prop_assert!(!model.reserved.contains(v), "reserved address handed out");
                prop_assert!(
                    !model.pre.values().any(|p| p == v),
                    "pre-allocation handed to another"
                );
            }
        }
    }
    prop_assert_eq!(pool.free_count(), model.free_count());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn pool_agrees_with_the_reference_model(desc in pool_desc(), ops in prop::collection::vec(op(), 1..80)) {
        let (spec, model) = build(&desc);
        let Some(mut model) = model else {
            prop_assert!(IpPool::new(&spec).is_err(), "invalid spec accepted: {:?}", spec);
            return Ok(());
        };
        let mut pool = IpPool::new(&spec).unwrap();
        let flat: Vec<u128> = model.ranges.iter().flat_map(|(f, l)| *f..=*l).collect();
        for op in ops {
            match op {
                Op::Claim(n) => {
                    let name = format!("c{n}");
                    let got = pool.claim(&name);
                    match model.claim(&name) {
                        Some(v) => prop_assert_eq!(value(&got.unwrap().address), v),
                        None => prop_assert!(matches!(got, Err(ClaimError::Exhausted { .. })), "{:?}", got),
                    }
                    // Idempotent.
                    if let Some(v) = model.held.get(&name) {
                        prop_assert_eq!(value(&pool.claim(&name).unwrap().address), *v);
                    }
                }
                Op::ClaimAddress(n, a) => {
                    let name = format!("c{n}");
                    // Mostly addresses in the ranges, sometimes just outside.
                    let v = flat[usize::from(a) % flat.len()].wrapping_add(u128::from(a >= 280));
                    let ip = match pool.family() {
                        ipam::Family::V4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
                        ipam::Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
                    };
                    let got = pool.claim_address(&name, ip);
                    prop_assert_eq!(got.is_ok(), model.claim_address(&name, v), "{:?}", got);
                }
                Op::Release(n) => {
                    let name = format!("c{n}");
                    prop_assert_eq!(pool.release(&name).map(|a| value(&a)), model.release(&name));
                }
                Op::Restore => {
                    let json = serde_json::to_string(&pool.state()).unwrap();
                    let restored = IpPool::restore(&spec, &serde_json::from_str(&json).unwrap()).unwrap();
                    prop_assert!(restored == pool);
                    pool = restored;
                }
            }
            check_invariants(&pool, &model)?;
        }
    }
}
