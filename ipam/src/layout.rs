//! Validation: a spec becomes a layout of disjoint ranges with their effective prefix,
//! gateway, DNS servers and reserved addresses, or a clear error.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::error::PoolError;
use crate::family::{Family, network_bounds, value};
use crate::spec::{AllocationStrategy, IpPoolSpec};

/// One validated range.
#[derive(Debug, Clone)]
pub(crate) struct Range {
    pub first: u128,
    pub last: u128,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub dns_servers: Arc<[IpAddr]>,
    /// Gateway/network/broadcast values inside the range that are not handed out.
    pub reserved: Vec<(u128, &'static str)>,
}

impl Range {
    pub(crate) fn reserved_kind(&self, v: u128) -> Option<&'static str> {
        self.reserved.iter().find(|(r, _)| *r == v).map(|(_, k)| *k)
    }
}

/// A validated spec.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub family: Family,
    /// In declaration (allocation) order.
    pub ranges: Vec<Range>,
    /// Range indexes sorted by first address, for lookups.
    pub by_address: Vec<usize>,
    pub pre_allocations: HashMap<Box<str>, u128>,
    pub strategy: AllocationStrategy,
    pub name_prefix: String,
}

impl Layout {
    pub(crate) fn new(spec: &IpPoolSpec) -> Result<Layout, PoolError> {
        if spec.name_prefix.is_empty() {
            return Err(PoolError::EmptyNamePrefix);
        }
        let first_range = spec.pools.first().ok_or(PoolError::NoRanges)?;
        let family = first_range
            .start
            .or(first_range.subnet.map(|s| s.addr))
            .or(first_range.end)
            .map(|a| Family::of(&a))
            .ok_or(PoolError::MissingBounds { index: 0 })?;
        let check_family = |what: String, address: IpAddr| {
            if Family::of(&address) == family {
                Ok(())
            } else {
                Err(PoolError::MixedFamilies {
                    what,
                    address,
                    expected: family,
                })
            }
        };
        if let Some(g) = spec.gateway {
            check_family("gateway".into(), g)?;
        }
        let pool_dns: Arc<[IpAddr]> = spec.dns_servers.clone().into();

        let mut ranges = Vec::with_capacity(spec.pools.len());
        for (index, r) in spec.pools.iter().enumerate() {
            for (what, a) in [("start", r.start), ("end", r.end), ("gateway", r.gateway)] {
                if let Some(a) = a {
                    check_family(format!("pools[{index}].{what}"), a)?;
                }
            }
            if let Some(s) = r.subnet {
                check_family(format!("pools[{index}].subnet"), s.addr)?;
            }
            let prefix = r
                .prefix
                .or(spec.prefix)
                .or(r.subnet.map(|s| s.prefix))
                .ok_or(PoolError::NoPrefix { index })?;
            if prefix > family.bits() {
                return Err(PoolError::InvalidPrefix {
                    index,
                    prefix,
                    family,
                });
            }
            let (first, last) = match (r.start, r.end, r.subnet) {
                (None, _, None) => return Err(PoolError::MissingBounds { index }),
                (Some(s), Some(e), _) => (value(&s), value(&e)),
                (Some(s), None, Some(sub)) => (value(&s), sub.bounds().1),
                // Upstream leaves start-only unbounded; we bound it by its network.
                (Some(s), None, None) => (value(&s), network_bounds(family, value(&s), prefix).1),
                // Upstream: a subnet-only pool starts at the written address + 1.
                (None, end, Some(sub)) => {
                    let first = value(&sub.addr)
                        .checked_add(1)
                        .ok_or(PoolError::EmptyRange { index })?;
                    (first, end.map_or(sub.bounds().1, |e| value(&e)))
                }
            };
            if let (Some(start), Some(end)) = (r.start, r.end) {
                if first > last {
                    return Err(PoolError::EndBeforeStart { index, start, end });
                }
            }
            if first > last {
                return Err(PoolError::EmptyRange { index });
            }
            if let Some(sub) = r.subnet {
                for a in [first, last] {
                    let address = family.addr(a);
                    if !sub.contains(&address) {
                        return Err(PoolError::OutsideSubnet {
                            index,
                            address,
                            subnet: sub.to_string(),
                        });
                    }
                }
            }
            let (net_first, net_last) = network_bounds(family, first, prefix);
            if last > net_last {
                return Err(PoolError::RangeOutsidePrefix {
                    index,
                    address: family.addr(last),
                    network: family.addr(net_first),
                    prefix,
                });
            }
            let gateway = r.gateway.or(spec.gateway);
            if let Some(g) = gateway {
                if !(net_first..=net_last).contains(&value(&g)) {
                    return Err(PoolError::GatewayOutsidePrefix {
                        index,
                        gateway: g,
                        network: family.addr(net_first),
                        prefix,
                    });
                }
            }
            let mut reserved = Vec::new();
            if !spec.allocate_reserved_addresses {
                if let Some(g) = gateway {
                    reserved.push((value(&g), "gateway"));
                }
                if family == Family::V4 && prefix <= 30 {
                    reserved.push((net_first, "network"));
                    reserved.push((net_last, "broadcast"));
                }
                reserved.retain(|(v, _)| (first..=last).contains(v));
            }
            ranges.push(Range {
                first,
                last,
                prefix,
                gateway,
                dns_servers: r
                    .dns_servers
                    .as_ref()
                    .map_or_else(|| pool_dns.clone(), |d| d.clone().into()),
                reserved,
            });
        }

        let mut by_address: Vec<usize> = (0..ranges.len()).collect();
        by_address.sort_by_key(|&i| ranges[i].first);
        for pair in by_address.windows(2) {
            if let [a, b] = pair {
                if ranges[*b].first <= ranges[*a].last {
                    return Err(PoolError::Overlap {
                        first: (*a).min(*b),
                        second: (*a).max(*b),
                    });
                }
            }
        }

        let mut layout = Layout {
            family,
            ranges,
            by_address,
            pre_allocations: HashMap::with_capacity(spec.pre_allocations.len()),
            strategy: spec.allocation_strategy,
            name_prefix: spec.name_prefix.clone(),
        };
        let mut owner: HashMap<u128, &str> = HashMap::new();
        for (claim, address) in &spec.pre_allocations {
            if claim.is_empty() {
                return Err(PoolError::EmptyClaimName);
            }
            check_family(format!("pre-allocation {claim}"), *address)?;
            let v = value(address);
            let range = layout
                .range_of(v)
                .ok_or_else(|| PoolError::PreAllocationOutOfBounds {
                    claim: claim.clone(),
                    address: *address,
                })?;
            if let Some(reserved) = layout.ranges[range].reserved_kind(v) {
                return Err(PoolError::PreAllocationReserved {
                    claim: claim.clone(),
                    address: *address,
                    reserved,
                });
            }
            if let Some(other) = owner.insert(v, claim) {
                return Err(PoolError::DuplicatePreAllocation {
                    claim: claim.clone(),
                    address: *address,
                    other: other.to_string(),
                });
            }
            layout.pre_allocations.insert(claim.as_str().into(), v);
        }
        Ok(layout)
    }

    /// The range holding value `v`, if any (binary search over ranges by address).
    pub(crate) fn range_of(&self, v: u128) -> Option<usize> {
        let pos = self
            .by_address
            .partition_point(|&i| self.ranges[i].first <= v);
        let i = *self.by_address.get(pos.checked_sub(1)?)?;
        (v <= self.ranges[i].last).then_some(i)
    }
}
