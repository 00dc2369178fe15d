//! A Redfish driver for `bmc_core::BmcDriver`.
//!
//! This crate is being built in layers. Present now: the tolerant models ([`model`]), path
//! normalisation ([`path`]) and discovery of the system, its managers and virtual-media
//! slots ([`discovery`]) over any [`discovery::Fetch`] implementation. The HTTP client
//! (sessions, retries, ETags, task monitors), `RedfishDriver` and its registration arrive
//! next.
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
//! assert_eq!(slot.path.as_deref(), Some("/redfish/v1/Managers/1/VirtualMedia/2"));
//! # Ok::<(), bmc_redfish::model::ModelError>(())
//! ```

pub mod client;
pub mod discovery;
mod driver;
mod json;
pub mod model;
pub mod path;

pub use driver::{RedfishDriver, RedfishFactory, register};
