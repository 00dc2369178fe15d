//! The foundation of the BMC crate family: the [`BmcDriver`] trait every driver implements,
//! its vocabulary, BMC addresses with Metal3's exact parsing rules, credentials that never
//! print their password, one error type that says whether a retry can help, a [`Registry`]
//! from address schemes to drivers, and [`verified`] operations that read back what they
//! change.
//!
//! ```no_run
//! use std::time::Duration;
//! use bmc_core::verified::{boot_from_virtual_media, ensure_power, Deadline};
//! use bmc_core::{BmcAddress, BootMode, ConnectOptions, Credentials, PowerAction, Registry};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let address = BmcAddress::parse("redfish-virtualmedia://10.0.0.5/redfish/v1/Systems/1")?;
//! let credentials = Credentials::new("admin", "s3cret")?;
//! let options = ConnectOptions::default().with_request_timeout(Duration::from_secs(20));
//!
//! let mut registry = Registry::new();
//! // Each driver crate registers its schemes here, e.g. `bmc_redfish::register(&mut registry)`.
//! # let _ = &mut registry;
//! let bmc = registry.connect(&address, &credentials, &options).await?;
//!
//! // Power off and wait until the BMC reports it (a host already off is left alone).
//! ensure_power(&*bmc, PowerAction::Off, Deadline::after(Duration::from_secs(120))).await?;
//! // Insert an ISO, boot once from it in UEFI mode, power on, verify each step.
//! boot_from_virtual_media(
//!     &*bmc,
//!     "http://images.example/agent.iso",
//!     BootMode::Uefi,
//!     Deadline::after(Duration::from_secs(300)),
//! )
//! .await?;
//! bmc.close().await?;
//! # Ok(())
//! # }
//! ```

pub mod address;
mod credentials;
mod driver;
mod error;
pub mod memory;
pub mod observe;
mod registry;
pub mod sync;
mod types;
pub mod verified;

pub use address::{AddressError, BmcAddress, BmcScheme, DriverKind, SchemeProfile, Transport};
pub use credentials::{Credentials, CredentialsError, Password};
pub use driver::{BmcDriver, Capabilities};
pub use error::{BmcError, BmcMessage, Result};
pub use registry::{ConnectOptions, DEFAULT_MAX_RESPONSE_BYTES, DriverFactory, Registry};
pub use types::{
    BootDevice, BootMode, BootOverride, BootOverrideState, BootPersistence, Cpu, Disk, DiskKind,
    FirmwareVersion, HardwareInventory, MacAddress, MediaKind, MemoryModule, Nic, PowerAction,
    PowerState, SystemIdentity, VirtualMediaSlot,
};

/// Re-exported so driver crates implement [`BmcDriver`] with the same macro version.
pub use async_trait::async_trait;
