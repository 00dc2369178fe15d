//! Channel queries made before a session: Get Channel Authentication Capabilities and Get
//! Channel Cipher Suites (how the console learns which cipher suites the BMC offers).

use super::CodecError;
use super::lan::Request;

/// Get Channel Authentication Capabilities (App 38h) for the current channel, asking for
/// IPMI 2.0 extended data, at `privilege`.
pub fn auth_capabilities_request(seq: u8, privilege: u8) -> Request {
    Request {
        netfn: 0x06,
        cmd: 0x38,
        seq,
        data: vec![0x8e, privilege & 0x0f],
    }
}

/// What Get Channel Authentication Capabilities reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthCapabilities {
    /// Channel number.
    pub channel: u8,
    /// The BMC supports IPMI 2.0 (RMCP+) sessions.
    pub ipmi20: bool,
    /// The BMC supports IPMI 1.5 sessions.
    pub ipmi15: bool,
    /// Kg (the BMC key) is set to something other than the default.
    pub kg_set: bool,
}

impl AuthCapabilities {
    /// Decodes the response data (after the completion code).
    pub fn decode(data: &[u8]) -> Result<AuthCapabilities, CodecError> {
        let bytes = super::take::<4>(data, 0, "Get Channel Authentication Capabilities")?;
        let extended = bytes[1] & 0x80 != 0;
        Ok(AuthCapabilities {
            channel: bytes[0] & 0x0f,
            ipmi20: extended && bytes[3] & 0x02 != 0,
            ipmi15: !extended || bytes[3] & 0x01 != 0,
            kg_set: bytes[2] & 0x20 != 0,
        })
    }
}

/// Get Channel Cipher Suites (App 54h) for the current channel, IPMI payload, list by
/// algorithm suite, entry `index` (16 bytes each).
pub fn cipher_suites_request(seq: u8, index: u8) -> Request {
    Request {
        netfn: 0x06,
        cmd: 0x54,
        seq,
        data: vec![0x0e, 0x00, 0x80 | (index & 0x3f)],
    }
}

/// The cipher suite ids in the concatenated record bytes of Get Channel Cipher Suites
/// (each response's data after its channel byte). Standard records are `C0h id algs…`,
/// OEM records `C1h id iana(3) algs…`; anything else ends the list.
pub fn parse_cipher_suite_records(records: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let start = match records[i] {
            0xc0 => i + 2,
            0xc1 => i + 5,
            _ => break,
        };
        let Some(id) = records.get(i + 1) else { break };
        out.push(*id);
        // Skip the algorithm bytes (tags below C0h) up to the next record.
        i = start;
        while i < records.len() && records[i] < 0xc0 {
            i += 1;
        }
    }
    out
}
