//! Errors: a pool spec that cannot work, a claim that cannot be served, a state that does
//! not fit its spec.

use std::net::IpAddr;

use crate::family::Family;

/// A pool spec is invalid. Nothing is allocated from an invalid spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The spec has no ranges.
    #[error("pool has no ranges")]
    NoRanges,
    /// `namePrefix` is empty.
    #[error("namePrefix must not be empty")]
    EmptyNamePrefix,
    /// A range has neither start nor subnet.
    #[error("pools[{index}]: either start or subnet is required")]
    MissingBounds {
        /// Range index.
        index: usize,
    },
    /// A range's end comes before its start.
    #[error("pools[{index}]: end IP {end} is before start IP {start}")]
    EndBeforeStart {
        /// Range index.
        index: usize,
        /// Start.
        start: IpAddr,
        /// End.
        end: IpAddr,
    },
    /// A range holds no address once its bounds are applied.
    #[error("pools[{index}]: the range is empty")]
    EmptyRange {
        /// Range index.
        index: usize,
    },
    /// A range bound lies outside the range's subnet.
    #[error("pools[{index}]: {address} is outside subnet {subnet}")]
    OutsideSubnet {
        /// Range index.
        index: usize,
        /// The address.
        address: IpAddr,
        /// The subnet, as written.
        subnet: String,
    },
    /// No prefix length for a range.
    #[error(
        "pools[{index}]: no prefix length: set prefix on the range or the pool, or give a subnet"
    )]
    NoPrefix {
        /// Range index.
        index: usize,
    },
    /// A prefix length is too long for the family.
    #[error("pools[{index}]: prefix /{prefix} is invalid for {family}")]
    InvalidPrefix {
        /// Range index.
        index: usize,
        /// The prefix.
        prefix: u8,
        /// The family.
        family: Family,
    },
    /// A range spans more than one network of its prefix.
    #[error("pools[{index}]: {address} is outside the network {network}/{prefix} of the range")]
    RangeOutsidePrefix {
        /// Range index.
        index: usize,
        /// The address outside.
        address: IpAddr,
        /// The network of the range's start.
        network: IpAddr,
        /// The prefix.
        prefix: u8,
    },
    /// A gateway lies outside the network of the range it serves.
    #[error(
        "pools[{index}]: gateway {gateway} is outside the network {network}/{prefix} of the range"
    )]
    GatewayOutsidePrefix {
        /// Range index.
        index: usize,
        /// The gateway.
        gateway: IpAddr,
        /// The network of the range.
        network: IpAddr,
        /// The prefix.
        prefix: u8,
    },
    /// Two ranges share addresses.
    #[error("pools[{first}] and pools[{second}] overlap")]
    Overlap {
        /// One range.
        first: usize,
        /// The other.
        second: usize,
    },
    /// An address is of another family than the pool.
    #[error("mixed address families: {what} {address} is not {expected}")]
    MixedFamilies {
        /// Which field.
        what: String,
        /// The address.
        address: IpAddr,
        /// The pool's family.
        expected: Family,
    },
    /// The same address is pre-allocated to two claims.
    #[error(
        "pre-allocation {claim}: IP address {address} is already pre-allocated to claim {other:?}"
    )]
    DuplicatePreAllocation {
        /// The second claim.
        claim: String,
        /// The address.
        address: IpAddr,
        /// The claim it was first given to.
        other: String,
    },
    /// A pre-allocated address is in no range.
    #[error("pre-allocation {claim}: {address} is out of bounds of the pools given")]
    PreAllocationOutOfBounds {
        /// The claim.
        claim: String,
        /// The address.
        address: IpAddr,
    },
    /// A pre-allocated address is a gateway, network or broadcast address.
    #[error("pre-allocation {claim}: {address} is the {reserved} address of its range")]
    PreAllocationReserved {
        /// The claim.
        claim: String,
        /// The address.
        address: IpAddr,
        /// `gateway`, `network` or `broadcast`.
        reserved: &'static str,
    },
    /// A pre-allocation has an empty claim name.
    #[error("pre-allocation with an empty claim name")]
    EmptyClaimName,
}

/// A claim could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// No free address is left. Not sticky: the same claim succeeds once one is released.
    #[error("Exhausted IP Pools: no free address for claim {claim}")]
    Exhausted {
        /// The claim.
        claim: String,
    },
    /// The claim name is empty.
    #[error("claim name must not be empty")]
    EmptyName,
    /// A specific address was asked for and cannot be given.
    #[error("Requested IP not available: {address} for claim {claim}: {reason}")]
    RequestedNotAvailable {
        /// The claim.
        claim: String,
        /// The address asked for.
        address: IpAddr,
        /// Why: in use, reserved, pre-allocated to another claim, outside every range.
        reason: &'static str,
    },
    /// A claim with a pre-allocation asked for another address.
    #[error(
        "PreAllocation and requested ip address are conflicting: claim {claim} is pre-allocated {pre_allocated}, requested {requested}"
    )]
    ConflictsWithPreAllocation {
        /// The claim.
        claim: String,
        /// Its pre-allocated address.
        pre_allocated: IpAddr,
        /// The address asked for.
        requested: IpAddr,
    },
    /// The claim already holds another address.
    #[error("claim {claim} already holds {held}, requested {requested}")]
    AlreadyHolds {
        /// The claim.
        claim: String,
        /// The address it holds.
        held: IpAddr,
        /// The address asked for.
        requested: IpAddr,
    },
}

/// A saved state does not fit the spec. States are never repaired silently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The spec itself is invalid.
    #[error(transparent)]
    Spec(#[from] PoolError),
    /// An allocation has an empty claim name.
    #[error("allocation with an empty claim name")]
    EmptyClaimName,
    /// An address is allocated twice.
    #[error("{address} is allocated to both {first} and {second}")]
    Duplicate {
        /// The address.
        address: IpAddr,
        /// One claim.
        first: String,
        /// The other.
        second: String,
    },
    /// An allocated address is in no range.
    #[error("claim {claim}: {address} is outside every range of the pool")]
    OutOfRange {
        /// The claim.
        claim: String,
        /// The address.
        address: IpAddr,
    },
    /// An allocated address is reserved (gateway, network, broadcast).
    #[error("claim {claim}: {address} is a reserved ({reserved}) address")]
    Reserved {
        /// The claim.
        claim: String,
        /// The address.
        address: IpAddr,
        /// Which reservation.
        reserved: &'static str,
    },
    /// A claim holds an address other than its pre-allocation, or another claim's.
    #[error("claim {claim}: holds {address}, but {reason}")]
    PreAllocationMismatch {
        /// The claim.
        claim: String,
        /// The address it holds.
        address: IpAddr,
        /// What the pre-allocations say.
        reason: String,
    },
    /// The release order names an address that is allocated, reserved, repeated or outside
    /// the pool, or is given for a sequential pool.
    #[error("release order: {address}: {reason}")]
    BadReleaseOrder {
        /// The address.
        address: IpAddr,
        /// What is wrong.
        reason: &'static str,
    },
}
