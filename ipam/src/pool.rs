//! The allocator: claims, releases, state and restore.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{ClaimError, PoolError, RestoreError};
use crate::family::{Family, value};
use crate::free_set::FreeSet;
use crate::layout::Layout;
use crate::spec::{AllocationStrategy, IpPoolSpec};

/// An allocated address, ready to render into network data (Metal3's `IPAddress` spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddress {
    /// The address.
    pub address: IpAddr,
    /// Prefix length.
    pub prefix: u8,
    /// Gateway, if the range or pool has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// DNS servers.
    #[serde(default)]
    pub dns_servers: Arc<[IpAddr]>,
}

/// What a pool holds, for persisting and restoring it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolState {
    /// Claim name → address (Metal3's `status.indexes`).
    pub allocations: BTreeMap<String, IpAddr>,
    /// For [`AllocationStrategy::ReuseLast`]: released addresses not yet reused, oldest
    /// first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release_order: Vec<IpAddr>,
}

/// An IP pool with Metal3 IPAM semantics. Pure: no I/O, no clock.
///
/// Claims are idempotent by name; the lowest free address in pool order is handed out
/// (or, with [`AllocationStrategy::ReuseLast`], released addresses last); pre-allocated
/// addresses are kept for their claim; claim, lookup and release are O(log n).
#[derive(Debug, Clone)]
pub struct IpPool {
    layout: Layout,
    /// Per range, in declaration order: addresses free to hand out (for `ReuseLast`, those
    /// never handed out).
    free: Vec<FreeSet>,
    claims: HashMap<Box<str>, u128>,
    /// `ReuseLast` only: released values with the sequence number of their release; an
    /// entry is live while `queued` maps its value to that number.
    released: VecDeque<(u128, u64)>,
    queued: HashMap<u128, u64>,
    next_seq: u64,
}

impl IpPool {
    /// Validates `spec` and builds an empty pool.
    pub fn new(spec: &IpPoolSpec) -> Result<IpPool, PoolError> {
        let layout = Layout::new(spec)?;
        let mut free: Vec<FreeSet> = layout
            .ranges
            .iter()
            .map(|r| FreeSet::full(r.first, r.last))
            .collect();
        for (i, r) in layout.ranges.iter().enumerate() {
            for (v, _) in &r.reserved {
                free[i].take(*v);
            }
        }
        for v in layout.pre_allocations.values() {
            if let Some(i) = layout.range_of(*v) {
                free[i].take(*v);
            }
        }
        Ok(IpPool {
            layout,
            free,
            claims: HashMap::new(),
            released: VecDeque::new(),
            queued: HashMap::new(),
            next_seq: 0,
        })
    }

    /// Restores a pool from its spec and a saved state. Anything that does not fit (an
    /// address outside the ranges, reserved, allocated twice, or against a pre-allocation)
    /// is an error; nothing is repaired silently.
    pub fn restore(spec: &IpPoolSpec, state: &PoolState) -> Result<IpPool, RestoreError> {
        let mut pool = IpPool::new(spec)?;
        let family = pool.layout.family;
        let pre_owner: HashMap<u128, Box<str>> = pool
            .layout
            .pre_allocations
            .iter()
            .map(|(claim, v)| (*v, claim.clone()))
            .collect();
        let mut holder: HashMap<u128, &str> = HashMap::with_capacity(state.allocations.len());
        pool.claims.reserve(state.allocations.len());
        for (claim, address) in &state.allocations {
            if claim.is_empty() {
                return Err(RestoreError::EmptyClaimName);
            }
            let out_of_range = || RestoreError::OutOfRange {
                claim: claim.clone(),
                address: *address,
            };
            if Family::of(address) != family {
                return Err(out_of_range());
            }
            let v = value(address);
            let range = pool.layout.range_of(v).ok_or_else(out_of_range)?;
            if let Some(other) = holder.insert(v, claim) {
                return Err(RestoreError::Duplicate {
                    address: *address,
                    first: other.to_string(),
                    second: claim.clone(),
                });
            }
            match (
                pool.layout.pre_allocations.get(claim.as_str()),
                pre_owner.get(&v),
            ) {
                (Some(pre), _) if *pre != v => {
                    return Err(RestoreError::PreAllocationMismatch {
                        claim: claim.clone(),
                        address: *address,
                        reason: format!("it is pre-allocated {}", family.addr(*pre)),
                    });
                }
                (None, Some(owner)) => {
                    return Err(RestoreError::PreAllocationMismatch {
                        claim: claim.clone(),
                        address: *address,
                        reason: format!("that address is pre-allocated to {owner}"),
                    });
                }
                (Some(_), _) => {}
                (None, None) => {
                    if let Some(reserved) = pool.layout.ranges[range].reserved_kind(v) {
                        return Err(RestoreError::Reserved {
                            claim: claim.clone(),
                            address: *address,
                            reserved,
                        });
                    }
                    pool.free[range].take(v);
                }
            }
            pool.claims.insert(claim.as_str().into(), v);
        }
        if !state.release_order.is_empty() && pool.layout.strategy != AllocationStrategy::ReuseLast
        {
            return Err(RestoreError::BadReleaseOrder {
                address: state.release_order[0],
                reason: "a release order is only kept by the reuseLast strategy",
            });
        }
        for address in &state.release_order {
            let bad = |reason| RestoreError::BadReleaseOrder {
                address: *address,
                reason,
            };
            if Family::of(address) != family {
                return Err(bad("not of the pool's family"));
            }
            let v = value(address);
            let range = pool.layout.range_of(v).ok_or(bad("outside every range"))?;
            if holder.contains_key(&v) {
                return Err(bad("it is allocated"));
            }
            if pre_owner.contains_key(&v) || pool.layout.ranges[range].reserved_kind(v).is_some() {
                return Err(bad("it is reserved"));
            }
            if !pool.free[range].take(v) {
                return Err(bad("listed twice"));
            }
            pool.push_released(v);
        }
        Ok(pool)
    }

    /// The state to persist; [`IpPool::restore`] with the same spec gives an equal pool.
    pub fn state(&self) -> PoolState {
        let family = self.layout.family;
        PoolState {
            allocations: self
                .claims
                .iter()
                .map(|(k, v)| (k.to_string(), family.addr(*v)))
                .collect(),
            release_order: self
                .released
                .iter()
                .filter(|(v, seq)| self.queued.get(v) == Some(seq))
                .map(|(v, _)| family.addr(*v))
                .collect(),
        }
    }

    /// Claims an address for `claim`, or returns the one it already holds.
    pub fn claim(&mut self, claim: &str) -> Result<IpAddress, ClaimError> {
        if claim.is_empty() {
            return Err(ClaimError::EmptyName);
        }
        if let Some(v) = self.claims.get(claim) {
            return Ok(self.record(*v));
        }
        let v = match self.layout.pre_allocations.get(claim) {
            Some(v) => *v,
            None => self.take_free().ok_or_else(|| ClaimError::Exhausted {
                claim: claim.to_string(),
            })?,
        };
        self.claims.insert(claim.into(), v);
        Ok(self.record(v))
    }

    /// Claims a specific address for `claim` (Metal3's `ipAddress` annotation).
    pub fn claim_address(
        &mut self,
        claim: &str,
        requested: IpAddr,
    ) -> Result<IpAddress, ClaimError> {
        if claim.is_empty() {
            return Err(ClaimError::EmptyName);
        }
        let family = self.layout.family;
        let v = value(&requested);
        let same_family = Family::of(&requested) == family;
        if let Some(held) = self.claims.get(claim) {
            if same_family && *held == v {
                return Ok(self.record(v));
            }
            return Err(ClaimError::AlreadyHolds {
                claim: claim.to_string(),
                held: family.addr(*held),
                requested,
            });
        }
        if let Some(pre) = self.layout.pre_allocations.get(claim) {
            if !same_family || *pre != v {
                return Err(ClaimError::ConflictsWithPreAllocation {
                    claim: claim.to_string(),
                    pre_allocated: family.addr(*pre),
                    requested,
                });
            }
            self.claims.insert(claim.into(), v);
            return Ok(self.record(v));
        }
        let unavailable = |reason| ClaimError::RequestedNotAvailable {
            claim: claim.to_string(),
            address: requested,
            reason,
        };
        let range = self
            .layout
            .range_of(v)
            .filter(|_| same_family)
            .ok_or(unavailable("outside every range"))?;
        let taken = self.free[range].take(v) || self.queued.remove(&v).is_some();
        if !taken {
            let reason = if self.layout.ranges[range].reserved_kind(v).is_some() {
                "reserved (gateway, network or broadcast)"
            } else if self.layout.pre_allocations.values().any(|p| *p == v) {
                "pre-allocated to another claim"
            } else {
                "in use"
            };
            return Err(unavailable(reason));
        }
        self.claims.insert(claim.into(), v);
        Ok(self.record(v))
    }

    /// Releases `claim`'s address; returns it, or `None` if the claim held none.
    /// A pre-allocated address stays reserved for its claim.
    pub fn release(&mut self, claim: &str) -> Option<IpAddr> {
        let v = self.claims.remove(claim)?;
        if !self.layout.pre_allocations.contains_key(claim) {
            match self.layout.strategy {
                AllocationStrategy::Sequential => {
                    if let Some(range) = self.layout.range_of(v) {
                        self.free[range].give(v);
                    }
                }
                AllocationStrategy::ReuseLast => self.push_released(v),
            }
        }
        Some(self.layout.family.addr(v))
    }

    /// The address `claim` holds, if any.
    pub fn get(&self, claim: &str) -> Option<IpAddress> {
        self.claims.get(claim).map(|v| self.record(*v))
    }

    /// Number of claims holding an address.
    pub fn len(&self) -> usize {
        self.claims.len()
    }

    /// Whether no claim holds an address.
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }

    /// Addresses that can still be handed out to new, not pre-allocated claims
    /// (saturating at `u128::MAX` for huge IPv6 ranges).
    pub fn free_count(&self) -> u128 {
        self.free.iter().fold(self.queued.len() as u128, |n, f| {
            n.saturating_add(f.count())
        })
    }

    /// The pool's address family.
    pub fn family(&self) -> Family {
        self.layout.family
    }

    /// Every claim and its address, in no particular order.
    pub fn allocations(&self) -> impl Iterator<Item = (&str, IpAddr)> + '_ {
        let family = self.layout.family;
        self.claims
            .iter()
            .map(move |(k, v)| (&**k, family.addr(*v)))
    }

    /// The `IPAddress` object name Metal3 gives an address: `namePrefix-` followed by the
    /// address with `.` and `:` replaced by `-`, trailing `-` trimmed.
    pub fn address_name(&self, address: IpAddr) -> String {
        // Only the address's separators: a prefix may hold dots (a DNS subdomain name).
        let address = address.to_string().replace(['.', ':'], "-");
        format!("{}-{address}", self.layout.name_prefix)
            .trim_end_matches('-')
            .to_string()
    }

    /// Free intervals and queued releases: the allocator's bookkeeping size, for memory
    /// accounting.
    pub fn bookkeeping_entries(&self) -> usize {
        self.free.iter().map(FreeSet::intervals).sum::<usize>() + self.released.len()
    }

    fn record(&self, v: u128) -> IpAddress {
        let family = self.layout.family;
        match self.layout.range_of(v) {
            Some(i) => {
                let r = &self.layout.ranges[i];
                IpAddress {
                    address: family.addr(v),
                    prefix: r.prefix,
                    gateway: r.gateway,
                    dns_servers: r.dns_servers.clone(),
                }
            }
            // Unreachable: every held value was checked against the ranges.
            None => IpAddress {
                address: family.addr(v),
                prefix: family.bits(),
                gateway: None,
                dns_servers: Arc::from([]),
            },
        }
    }

    fn take_free(&mut self) -> Option<u128> {
        if let Some(v) = self.free.iter_mut().find_map(FreeSet::take_lowest) {
            return Some(v);
        }
        while let Some((v, seq)) = self.released.pop_front() {
            if let Entry::Occupied(e) = self.queued.entry(v) {
                if *e.get() == seq {
                    e.remove();
                    return Some(v);
                }
            }
        }
        None
    }

    fn push_released(&mut self, v: u128) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queued.insert(v, seq);
        self.released.push_back((v, seq));
        // Stale entries (addresses since taken by a specific request) are dropped lazily;
        // compact when they outnumber live ones so the queue stays O(live).
        if self.released.len() > 64 && self.released.len() > 2 * self.queued.len() {
            let queued = &self.queued;
            self.released.retain(|(v, s)| queued.get(v) == Some(s));
        }
    }
}

impl PartialEq for IpPool {
    /// Pools are equal when they would hand out the same addresses from now on: same
    /// allocations, same free addresses, same release order.
    fn eq(&self, other: &IpPool) -> bool {
        self.claims == other.claims && self.free == other.free && self.state() == other.state()
    }
}
