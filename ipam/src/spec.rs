//! The pool specification, field for field as Metal3's `IPPool` spec.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::subnet::IpSubnet;

/// How a free address is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AllocationStrategy {
    /// The lowest free address in pool order (upstream's default): a released address is
    /// handed out again by the very next claim.
    #[default]
    Sequential,
    /// Addresses never handed out come first (lowest first); released addresses are reused
    /// only after that, oldest release first. This keeps a just-freed address out of use as
    /// long as the pool allows (stale ARP/neighbour caches, monitoring), which is what
    /// upstream's `random` strategy is for, but deterministically. `random` in a manifest is
    /// read as this strategy.
    #[serde(alias = "random")]
    ReuseLast,
}

/// One range of a pool: `start`–`end`, or a `subnet`, or `start` within a `subnet`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolRange {
    /// First address (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<IpAddr>,
    /// Last address (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<IpAddr>,
    /// Subnet bounding the range; alone, the range is the written address + 1 up to the
    /// subnet's last address (Metal3's rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<IpSubnet>,
    /// Prefix length for addresses from this range (overrides the pool's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<u8>,
    /// Gateway for addresses from this range (overrides the pool's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// DNS servers for addresses from this range (override the pool's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_servers: Option<Vec<IpAddr>>,
}

impl PoolRange {
    /// The range `start..=end`.
    pub fn from_to(start: IpAddr, end: IpAddr) -> PoolRange {
        PoolRange {
            start: Some(start),
            end: Some(end),
            ..PoolRange::default()
        }
    }

    /// The whole subnet (from the written address + 1).
    pub fn subnet(subnet: IpSubnet) -> PoolRange {
        PoolRange {
            subnet: Some(subnet),
            ..PoolRange::default()
        }
    }
}

/// A Metal3 `IPPool` spec.
///
/// Ranges are used in the order given. Unlike upstream, the gateway and, for IPv4, the
/// network and broadcast addresses of each range's network are never handed out unless
/// [`IpPoolSpec::allocate_reserved_addresses`] is set (upstream hands them out; a host
/// given its gateway's address breaks the network).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpPoolSpec {
    /// The ranges, in allocation order.
    pub pools: Vec<PoolRange>,
    /// Default prefix length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<u8>,
    /// Default gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Default DNS servers (may be of either family).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<IpAddr>,
    /// Fixed addresses by claim name; reserved for that claim even while it is released.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pre_allocations: BTreeMap<String, IpAddr>,
    /// Prefix of the `IPAddress` object names.
    pub name_prefix: String,
    /// How free addresses are chosen.
    #[serde(default)]
    pub allocation_strategy: AllocationStrategy,
    /// Hand out gateway, network and broadcast addresses too (upstream's behaviour).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allocate_reserved_addresses: bool,
}
