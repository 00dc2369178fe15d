//! An IPMI v2.0 / RMCP+ implementation for `bmc_core::BmcDriver`.
//!
//! - [`codec`]: the pure protocol (RMCP and ASF presence ping, IPMI 1.5 and 2.0 session
//!   framing, Get Channel Authentication Capabilities and Cipher Suites, Open Session, RAKP 1–4 and their HMACs, SIK/K1/K2 derivation for HMAC-SHA1
//!   and HMAC-SHA256, the integrity trailer, AES-CBC-128, LAN messages with checksums),
//!   verified byte for byte against the recorded sessions in `shared/fixtures/ipmi`.
//! - [`session`]: an RMCP+ session over tokio UDP (the suite negotiated from what the BMC
//!   offers through Get Channel Cipher Suites, 17 preferred, or forced; RAKP with
//!   the password checked at RAKP 2; privilege raise; retransmission; keep-alive; replies
//!   to earlier tries, replays, packets outside the sequence window and forged packets
//!   dropped by a pure, fuzzed [`session::Inbound`] filter; Close Session).
//! - [`IpmiDriver`]: power, boot device (PXE, disk, CD, BIOS setup; once or persistent;
//!   UEFI or legacy) and device id / GUID inventory; virtual media is unsupported.
//!   [`register`] adds it for `ipmi` and `libvirt`.
//!
//! - [`transport::IpmiTransport`]: one UDP socket serving many sessions to different BMCs.
//!
//! ```
//! use bmc_ipmi::codec::lan::{Request, Response};
//!
//! // Chassis (netFn 0x00), Get Chassis Status (0x01).
//! let req = Request { netfn: 0x00, cmd: 0x01, seq: 3, data: vec![] };
//! let bytes = req.encode();
//! assert_eq!(Request::decode(&bytes)?, req);
//! # Ok::<(), bmc_ipmi::codec::CodecError>(())
//! ```

pub mod codec;
mod driver;
pub mod session;
pub mod transport;

pub use driver::{IpmiDriver, IpmiFactory, register};
