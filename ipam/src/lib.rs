//! A pure IP address allocator with Metal3 IP Address Manager semantics: no I/O, no clock,
//! no async.
//!
//! An [`IpPool`] is built from an [`IpPoolSpec`] (Metal3's `IPPool` spec: ranges or subnets
//! in order, prefix, gateway, DNS servers, pre-allocations, name prefix), validated before
//! anything is allocated. Claims are idempotent by name, releases free the address, and the
//! whole state serializes so an operator can persist it and restore it exactly.
//!
//! ```
//! use ipam::{IpPool, IpPoolSpec, PoolRange, ClaimError};
//!
//! let spec: IpPoolSpec = serde_json::from_str(r#"{
//!     "namePrefix": "prov",
//!     "pools": [{ "start": "192.168.0.10", "end": "192.168.0.11" }],
//!     "prefix": 24,
//!     "gateway": "192.168.0.1",
//!     "dnsServers": ["8.8.8.8"],
//!     "preAllocations": { "bmh-0": "192.168.0.11" }
//! }"#)?;
//! let mut pool = IpPool::new(&spec)?;
//!
//! let a = pool.claim("bmh-1")?;
//! assert_eq!(a.address.to_string(), "192.168.0.10");
//! assert_eq!((a.prefix, a.gateway.map(|g| g.to_string())), (24, Some("192.168.0.1".into())));
//! assert_eq!(pool.claim("bmh-1")?, a);                       // idempotent
//! assert_eq!(pool.claim("bmh-0")?.address.to_string(), "192.168.0.11"); // pre-allocated
//! assert!(matches!(pool.claim("bmh-2"), Err(ClaimError::Exhausted { .. })));
//!
//! pool.release("bmh-1");
//! assert_eq!(pool.claim("bmh-2")?.address.to_string(), "192.168.0.10"); // not sticky
//! assert_eq!(pool.address_name(a.address), "prov-192-168-0-10");
//!
//! // Persist and restore exactly.
//! let saved = serde_json::to_string(&pool.state())?;
//! let restored = IpPool::restore(&spec, &serde_json::from_str(&saved)?)?;
//! assert_eq!(restored, pool);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Differences from upstream, all deliberate:
//! - The gateway and, for IPv4 ranges with a prefix of /30 or shorter, the network and
//!   broadcast addresses of the range's network are never handed out (upstream hands them
//!   out); [`IpPoolSpec::allocate_reserved_addresses`] restores upstream's behaviour.
//!   Pre-allocating one of them is an error for the same reason.
//! - Every range needs a prefix (its own, the pool's, or its subnet's), a range must stay
//!   within one network of that prefix, and the gateway must be inside it.
//! - A range with only `start` ends at the end of its network, not at the end of the
//!   address space.
//! - A failed claim is not remembered: exhaustion is not sticky (upstream's
//!   ip-address-manager#1537).
//! - Instead of `random`, [`AllocationStrategy::ReuseLast`] keeps released addresses out of
//!   use as long as possible, deterministically; `random` in a spec selects it.
//!
//! Cost: claim, lookup and release are O(log n) in the number of allocations (free
//! addresses are kept as intervals, claims in a hash map); no claim scans the allocations.

mod error;
mod family;
mod free_set;
mod layout;
mod pool;
mod spec;
mod subnet;

pub use error::{ClaimError, PoolError, RestoreError};
pub use family::Family;
pub use pool::{IpAddress, IpPool, PoolState};
pub use spec::{AllocationStrategy, IpPoolSpec, PoolRange};
pub use subnet::IpSubnet;
