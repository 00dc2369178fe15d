//! Example binaries built on the crate family.
//!
//! - `bmc-address`: parses BMC addresses with Metal3's rules and prints what each one
//!   means (driver, endpoint, system id, capability flags).
//! - `bmcctl`: drives one BMC (power, boot override, virtual media, the verified
//!   virtual-media boot, inventory) through the driver registry.
//!
//! The example conductor, operator and end-to-end demo arrive with the workflow issue.
