//! HPE iLO 5 and 6 over Redfish: the vendor quirks plain Redfish does not cover.
//!
//! Status: skeleton. Virtual media on `Managers/1/VirtualMedia/2` with
//! `Oem.Hpe.BootOnNextServerReset`, trailing-slash and lower-case links, and the iLO
//! "not ready" retries arrive with the vendor-drivers issue.
