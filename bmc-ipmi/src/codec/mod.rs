//! The pure IPMI v2.0 / RMCP+ codec: no sockets, no clock, no randomness (IVs and random
//! numbers come in as arguments). Every decoder returns a typed error on malformed,
//! truncated or forged input; nothing panics.

pub mod channel;
pub mod chassis;
pub mod crypto;
pub mod lan;
pub mod packet;
pub mod rakp;

/// What is wrong with a datagram or message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Fewer bytes than the structure needs.
    #[error("{what}: truncated ({have} bytes, need {need})")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes available.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A field has a value the protocol does not allow here.
    #[error("{what}: unexpected value {value:#04x}")]
    Unexpected {
        /// Which field.
        what: &'static str,
        /// The value found.
        value: u32,
    },
    /// A checksum does not add up.
    #[error("{0} checksum mismatch")]
    Checksum(&'static str),
    /// An integrity AuthCode or RAKP HMAC does not verify: forged or wrong key.
    #[error("{0} does not verify")]
    BadAuthCode(&'static str),
    /// Decryption failed (bad length or padding).
    #[error("confidentiality: {0}")]
    Decrypt(&'static str),
    /// A length field disagrees with the data.
    #[error("{what}: length {declared} does not match the {actual} bytes present")]
    Length {
        /// Which length.
        what: &'static str,
        /// The declared length.
        declared: usize,
        /// The bytes present.
        actual: usize,
    },
}

/// Reads `N` bytes at `at` from `b`, or a truncation error naming `what`.
pub(crate) fn take<const N: usize>(
    b: &[u8],
    at: usize,
    what: &'static str,
) -> Result<[u8; N], CodecError> {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(CodecError::Truncated {
            what,
            have: b.len(),
            need: at + N,
        })
}

/// `b[at..at + n]`, or a truncation error.
pub(crate) fn slice<'a>(
    b: &'a [u8],
    at: usize,
    n: usize,
    what: &'static str,
) -> Result<&'a [u8], CodecError> {
    b.get(at..at.saturating_add(n))
        .filter(|s| s.len() == n)
        .ok_or(CodecError::Truncated {
            what,
            have: b.len(),
            need: at.saturating_add(n),
        })
}
