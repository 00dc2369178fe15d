//! HPE iLO 5 and 6 over Redfish: what plain Redfish does not cover.
//!
//! [`Hpe`] provides the hooks ([`IloHooks`]) that the one [`bmc_redfish::RedfishDriver`]
//! consults on an HPE BMC, whatever its address scheme: the CD slot (`Managers/1/VirtualMedia/2`) gets `Oem.Hpe.BootOnNextServerReset` with a
//! one-time CD boot, the OEM `HpeiLOVirtualMedia` insert/eject stand in where the
//! standard actions fail, soft power off is a press of the power button (only when the
//! host is on), and iLO message ids become errors that say what to do ([`messages`]).
//! Trailing-slash and lower-case links and weak ETags are handled by the generic client;
//! which firmware needs what of the generic driver is data: [`bmc_redfish::quirks`].
//! [`register`] makes the hooks known to every Redfish connect and serves `ilo5-*`
//! addresses, which need a BMC that answers as an HPE.
//!
//! ```no_run
//! # async fn demo() -> bmc_core::Result<()> {
//! use bmc_core::{BmcAddress, ConnectOptions, Credentials, PowerAction, Registry};
//!
//! let mut registry = Registry::new();
//! bmc_ilo::register(&mut registry);
//! let address = BmcAddress::parse("ilo5-virtualmedia://10.0.0.9/redfish/v1/Systems/1")?;
//! let credentials = Credentials::new("Administrator", "s3cret")
//!     .map_err(|e| bmc_core::BmcError::InvalidRequest(e.to_string()))?;
//! let bmc = registry.connect(&address, &credentials, &ConnectOptions::default()).await?;
//! // A press of the power button, only if the host is on.
//! bmc.power(PowerAction::SoftOff).await?;
//! bmc.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Its message ids:
//!
//! ```
//! use bmc_ilo::messages::{Meaning, meaning};
//!
//! assert_eq!(meaning("iLO.2.14.LicenseKeyRequired"), Some(Meaning::LicenceMissing));
//! ```

mod driver;
pub mod messages;

pub use driver::{Hpe, IloHooks, connect, register};
