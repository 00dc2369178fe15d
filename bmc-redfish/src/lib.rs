//! A Redfish driver for `bmc_core::BmcDriver`, built for real vendor firmware.
//!
//! - [`client::RedfishClient`]: reqwest with native-tls, one pool and concurrency limit per
//!   BMC, sessions with a basic-auth fallback, one re-login on 401, retries only where safe
//!   (reads; writes when the BMC says it is not ready), the weak/strong/no ETag ladder on
//!   412, 202 task monitors, errors carrying the BMC's message ids.
//! - [`model`]: tolerant models that survive nulls, wrong types and unknown enum values.
//! - [`discovery`]: the system (from the address or the only one), its managers and every
//!   virtual-media slot, with the CD and USB slots chosen by `MediaTypes`.
//! - [`RedfishDriver`]: the whole `BmcDriver` trait over a cached discovery, the one
//!   driver for every Redfish BMC; [`register`] adds it to a `bmc_core::Registry` for
//!   `redfish`, `redfish-virtualmedia` and `redfish-uefihttp` (with `+http`/`+https`).
//! - [`hooks`]: what a vendor does its own way (bmc-idrac, bmc-ilo provide Dell's and
//!   HPE's), consulted by the driver with the standard behaviour as the default and
//!   chosen by the BMC's identity, whatever the address scheme.
//!
//! ```no_run
//! # async fn demo() -> bmc_core::Result<()> {
//! use bmc_core::{BmcAddress, ConnectOptions, Credentials, Registry};
//!
//! let mut registry = Registry::new();
//! bmc_redfish::register(&mut registry);
//! let address = BmcAddress::parse("redfish-virtualmedia://10.0.0.5/redfish/v1/Systems/1")?;
//! let credentials = Credentials::new("admin", "s3cret")
//!     .map_err(|e| bmc_core::BmcError::InvalidRequest(e.to_string()))?;
//! let bmc = registry.connect(&address, &credentials, &ConnectOptions::default()).await?;
//! println!("{}", bmc.power_state().await?);
//! bmc.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The models work on plain JSON values, so they are easy to try:
//!
//! ```
//! use bmc_redfish::model::VirtualMedia;
//!
//! let slot = VirtualMedia::from_json(&serde_json::json!({
//!     "@odata.id": "/redfish/v1/Managers/1/VirtualMedia/2/",
//!     "Id": "2", "MediaTypes": ["CD", "DVD"], "Image": "", "Inserted": null
//! }))?;
//! assert!(slot.takes_cd());
//! assert!(!slot.is_inserted());
//! // The path as the BMC wrote it: requests go exactly there.
//! assert_eq!(slot.path.as_deref(), Some("/redfish/v1/Managers/1/VirtualMedia/2/"));
//! assert!(bmc_redfish::path::same(
//!     slot.path.as_deref().unwrap_or_default(),
//!     "/redfish/v1/managers/1/virtualmedia/2"
//! ));
//! # Ok::<(), bmc_redfish::model::ModelError>(())
//! ```

pub mod client;
pub mod discovery;
mod driver;
pub mod fetch;
pub mod hooks;
pub mod inventory;
mod json;
pub mod ladders;
pub mod model;
pub mod path;
pub mod quirks;
pub mod vocabulary;

pub use driver::{RedfishDriver, RedfishFactory, register};
