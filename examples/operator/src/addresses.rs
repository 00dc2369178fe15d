//! Where a claimed address is recorded as taken, beside the operator's own store.
//!
//! The operator picks an address with ipam's pure allocator and then asks an
//! [`AddressRegistry`] to record it before the address goes into any network data. One
//! process with its own store needs nothing more than the store ([`LocalAddresses`]);
//! against a Kubernetes API server (the `kube` feature) the record is an `IPAddress`
//! object named after the address, as upstream's ip-address-manager makes them, so the
//! API server's refusal to create a second object of one name is what keeps two
//! replicas, or upstream's IPAM controller running beside this operator, from handing
//! out one address twice.
//!
//! ```
//! use metal3_operator::addresses::{AddressRegistry, Allocation, LocalAddresses, Recorded};
//! use metal3_operator::manifests::{IpPoolObject, ObjectMeta};
//!
//! let pool: IpPoolObject = serde_json::from_str(
//!     r#"{"metadata": {"name": "prov", "namespace": "lab"},
//!         "spec": {"namePrefix": "prov", "pools": [{"start": "10.0.0.10", "end": "10.0.0.20"}], "prefix": 24}}"#,
//! ).map_err(|e| e.to_string())?;
//! let address: ipam::IpAddress = serde_json::from_str(r#"{"address": "10.0.0.10", "prefix": 24}"#)
//!     .map_err(|e| e.to_string())?;
//! let host = ObjectMeta { name: "node-0".into(), namespace: Some("lab".into()), ..ObjectMeta::default() };
//! let allocation = Allocation {
//!     pool: &pool,
//!     claim: "node-0",
//!     claim_object: None,
//!     host: &host,
//!     address: &address,
//!     name: "prov-10-0-0-10",
//! };
//! let runtime = tokio::runtime::Builder::new_current_thread()
//!     .build()
//!     .map_err(|e| e.to_string())?;
//! let recorded = runtime.block_on(LocalAddresses.record(&allocation))?;
//! assert_eq!(recorded, Recorded::Ours);
//! # Ok::<(), String>(())
//! ```

use async_trait::async_trait;

use crate::manifests::{IpClaimObject, IpPoolObject, ObjectMeta};

/// An address the operator took from a pool for a claim, to be recorded (or forgotten).
#[derive(Debug, Clone, Copy)]
pub struct Allocation<'a> {
    /// The IPPool.
    pub pool: &'a IpPoolObject,
    /// The claim's name in the pool (the pool's `status.indexes` key; claims live in
    /// their pool's namespace).
    pub claim: &'a str,
    /// The IPClaim object the host owns, or `None` for a host's own claim on its
    /// namespace's only pool (named after the host; a registry that keeps claims as
    /// objects makes one, owned by the host).
    pub claim_object: Option<&'a IpClaimObject>,
    /// The BareMetalHost whose network data the address goes into.
    pub host: &'a ObjectMeta,
    /// The address.
    pub address: &'a ipam::IpAddress,
    /// Its `IPAddress` object name (upstream's: the pool's `namePrefix` and the address).
    pub name: &'a str,
}

/// What recording an allocation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The address is the claim's (recorded now, or already).
    Ours,
    /// Another claim holds the address (its name): pick another.
    TakenBy(String),
}

/// Records which claim holds which address where others can see it.
#[async_trait]
pub trait AddressRegistry: Send + Sync {
    /// Records `allocation`'s address for its claim; [`Recorded::TakenBy`] when another
    /// claim holds it already. Idempotent: recording the same allocation again is
    /// [`Recorded::Ours`]. An error (the registry cannot be reached) leaves nothing
    /// half-recorded that a retry does not finish.
    async fn record(&self, allocation: &Allocation<'_>) -> Result<Recorded, String>;

    /// Removes the record of `allocation`'s address, if it is still the claim's.
    /// Idempotent: forgetting what is not recorded succeeds.
    async fn forget(&self, allocation: &Allocation<'_>) -> Result<(), String>;
}

/// The embedded mode's registry: the operator's store, committed with the host's
/// record, is the only record there is (one process allocates).
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalAddresses;

#[async_trait]
impl AddressRegistry for LocalAddresses {
    async fn record(&self, _allocation: &Allocation<'_>) -> Result<Recorded, String> {
        Ok(Recorded::Ours)
    }

    async fn forget(&self, _allocation: &Allocation<'_>) -> Result<(), String> {
        Ok(())
    }
}
