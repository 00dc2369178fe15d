//! Dell iDRAC 9 and 10 over Redfish: what plain Redfish does not cover.
//!
//! [`Dell`] provides the hooks ([`IdracHooks`]) that the one [`bmc_redfish::RedfishDriver`]
//! consults on a Dell BMC, whatever its address scheme: the virtual CD is booted by a
//! configuration import (the standard `Cd` override boots
//! the *physical* drive on much of its firmware), the Lifecycle Controller must be ready
//! before configuration changes, configuration runs through a job queue, and its message
//! ids (`LIC501`, `LC068`, `RAC0679`, …) become errors that say what to do
//! ([`messages`]). [`register`] makes the hooks known to every Redfish connect and serves
//! `idrac-*` addresses, which need a BMC that answers as a Dell. Which firmware needs what
//! of the generic driver is data: [`bmc_redfish::quirks`].
//!
//! ```no_run
//! # async fn demo() -> bmc_core::Result<()> {
//! use bmc_core::{BmcAddress, ConnectOptions, Credentials, Registry, verified};
//!
//! let mut registry = Registry::new();
//! bmc_idrac::register(&mut registry);
//! let address = BmcAddress::parse(
//!     "idrac-virtualmedia://10.0.0.7/redfish/v1/Systems/System.Embedded.1",
//! )?;
//! let credentials = Credentials::new("root", "calvin")
//!     .map_err(|e| bmc_core::BmcError::InvalidRequest(e.to_string()))?;
//! let bmc = registry.connect(&address, &credentials, &ConnectOptions::default()).await?;
//! // Insert, boot once from the virtual CD (by configuration import), power on; each
//! // step read back.
//! let deadline = verified::Deadline::after(std::time::Duration::from_secs(600));
//! verified::boot_from_virtual_media(
//!     bmc.as_ref(),
//!     "http://10.0.0.1/agent.iso",
//!     bmc_core::BootMode::Uefi,
//!     deadline,
//! )
//! .await?;
//! bmc.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The configuration buffer it imports:
//!
//! ```
//! use bmc_core::BootPersistence;
//! use bmc_idrac::scp::{ScpBootDevice, boot_buffer};
//!
//! let xml = boot_buffer("iDRAC.Embedded.1", ScpBootDevice::VirtualCd, BootPersistence::Once);
//! assert!(xml.ends_with("</Component></SystemConfiguration>"));
//! ```

mod driver;
pub mod jobs;
pub mod messages;
pub mod scp;

pub use driver::{
    Dell, IdracHooks, IdracPolicy, clear_job_queue, connect, connect_with_policy, job_queue,
    lifecycle_controller_ready, register, wait_for_lifecycle_controller,
};
