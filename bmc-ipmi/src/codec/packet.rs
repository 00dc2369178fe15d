//! RMCP datagrams: the RMCP header, ASF presence ping/pong, IPMI 1.5 session framing and
//! IPMI 2.0 (RMCP+) session framing with integrity and confidentiality.

use super::crypto::{Hash, constant_time_eq, decrypt, encrypt};
use super::{CodecError, slice, take};

/// RMCP version 1.0 header with "no ACK" sequence number.
pub const RMCP_IPMI: [u8; 4] = [0x06, 0x00, 0xff, 0x07];
/// RMCP header for ASF messages.
pub const RMCP_ASF: [u8; 4] = [0x06, 0x00, 0xff, 0x06];

/// IPMI 2.0 payload types.
pub mod payload {
    /// An IPMI message.
    pub const IPMI: u8 = 0x00;
    /// RMCP+ Open Session Request.
    pub const OPEN_SESSION_REQUEST: u8 = 0x10;
    /// RMCP+ Open Session Response.
    pub const OPEN_SESSION_RESPONSE: u8 = 0x11;
    /// RAKP Message 1.
    pub const RAKP1: u8 = 0x12;
    /// RAKP Message 2.
    pub const RAKP2: u8 = 0x13;
    /// RAKP Message 3.
    pub const RAKP3: u8 = 0x14;
    /// RAKP Message 4.
    pub const RAKP4: u8 = 0x15;
}

/// An ASF presence ping (to port 623, answered by a pong).
pub fn asf_presence_ping(tag: u8) -> Vec<u8> {
    let mut out = RMCP_ASF.to_vec();
    out.extend([0x00, 0x00, 0x11, 0xbe, 0x80, tag, 0x00, 0x00]);
    out
}

/// An ASF presence pong: whether the BMC supports IPMI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresencePong {
    /// The tag of the ping answered.
    pub tag: u8,
    /// Supported entities bit 7: IPMI.
    pub ipmi: bool,
}

/// Decodes an ASF presence pong.
pub fn decode_presence_pong(b: &[u8]) -> Result<PresencePong, CodecError> {
    let header = take::<4>(b, 0, "RMCP header")?;
    if header[3] != 0x06 {
        return Err(CodecError::Unexpected {
            what: "RMCP class (ASF expected)",
            value: u32::from(header[3]),
        });
    }
    let iana = take::<4>(b, 4, "ASF IANA")?;
    if iana != [0x00, 0x00, 0x11, 0xbe] {
        return Err(CodecError::Unexpected {
            what: "ASF IANA number",
            value: u32::from_be_bytes(iana),
        });
    }
    let [msg_type, tag, _, len] = take::<4>(b, 8, "ASF message")?;
    if msg_type != 0x40 {
        return Err(CodecError::Unexpected {
            what: "ASF message type (pong 0x40 expected)",
            value: u32::from(msg_type),
        });
    }
    let data = slice(b, 12, usize::from(len), "ASF pong data")?;
    let entities = *data.get(8).ok_or(CodecError::Truncated {
        what: "ASF pong data",
        have: data.len(),
        need: 9,
    })?;
    Ok(PresencePong {
        tag,
        ipmi: entities & 0x80 != 0,
    })
}

/// An IPMI 1.5 session-framed message (used here only outside a session, auth type none,
/// e.g. Get Channel Authentication Capabilities).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V15 {
    /// Authentication type (0 = none).
    pub auth_type: u8,
    /// Session sequence number.
    pub seq: u32,
    /// Session ID.
    pub session_id: u32,
    /// The IPMI LAN message.
    pub message: Vec<u8>,
}

impl V15 {
    /// Frames a LAN message outside a session (auth type none, seq 0, id 0).
    pub fn sessionless(message: &[u8]) -> Vec<u8> {
        let mut out = RMCP_IPMI.to_vec();
        out.extend([0x00]);
        out.extend([0u8; 8]);
        out.push(u8::try_from(message.len()).unwrap_or(u8::MAX));
        out.extend(message);
        out
    }
}

/// An IPMI 2.0 (RMCP+) packet as read off the wire, before integrity and decryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V20 {
    /// Payload type (low 6 bits).
    pub payload_type: u8,
    /// Payload encrypted.
    pub encrypted: bool,
    /// Packet carries an integrity trailer.
    pub authenticated: bool,
    /// Session ID (host order).
    pub session_id: u32,
    /// Session sequence number.
    pub seq: u32,
    /// The payload as sent (still encrypted when `encrypted`).
    pub payload: Vec<u8>,
    /// Integrity trailer: the bytes it covers and the AuthCode.
    integrity: Option<(Vec<u8>, Vec<u8>)>,
}

/// A datagram: IPMI 1.5 framing or IPMI 2.0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram {
    /// IPMI 1.5 session framing.
    V15(V15),
    /// IPMI 2.0 / RMCP+.
    V20(V20),
}

/// Parses an RMCP datagram carrying IPMI. `integrity_len` is the AuthCode length of the
/// session's integrity algorithm (0 outside a session or without integrity).
pub fn parse(b: &[u8], integrity_len: usize) -> Result<Datagram, CodecError> {
    let header = take::<4>(b, 0, "RMCP header")?;
    if header[0] != 0x06 || header[3] != 0x07 {
        return Err(CodecError::Unexpected {
            what: "RMCP header (version 6, class IPMI expected)",
            value: u32::from_be_bytes(header),
        });
    }
    let auth_type = take::<1>(b, 4, "session header")?[0];
    if auth_type != 0x06 {
        // IPMI 1.5.
        let seq = u32::from_le_bytes(take::<4>(b, 5, "IPMI 1.5 session header")?);
        let session_id = u32::from_le_bytes(take::<4>(b, 9, "IPMI 1.5 session header")?);
        let at = if auth_type == 0 { 13 } else { 29 };
        let len = usize::from(take::<1>(b, at, "IPMI 1.5 message length")?[0]);
        let message = slice(b, at + 1, len, "IPMI 1.5 message")?.to_vec();
        return Ok(Datagram::V15(V15 {
            auth_type,
            seq,
            session_id,
            message,
        }));
    }
    let ptype = take::<1>(b, 5, "IPMI 2.0 session header")?[0];
    if ptype & 0x3f == 0x02 {
        return Err(CodecError::Unexpected {
            what: "OEM explicit payload type",
            value: u32::from(ptype),
        });
    }
    let session_id = u32::from_le_bytes(take::<4>(b, 6, "IPMI 2.0 session header")?);
    let seq = u32::from_le_bytes(take::<4>(b, 10, "IPMI 2.0 session header")?);
    let len = usize::from(u16::from_le_bytes(take::<2>(
        b,
        14,
        "IPMI 2.0 payload length",
    )?));
    let payload = slice(b, 16, len, "IPMI 2.0 payload")?.to_vec();
    let authenticated = ptype & 0x40 != 0;
    let after = 16 + len;
    let integrity = if authenticated {
        if integrity_len == 0 {
            return Err(CodecError::Unexpected {
                what: "authenticated packet outside an integrity-protected session",
                value: u32::from(ptype),
            });
        }
        // Pad (0xFF…) so that AuthType..NextHeader is a multiple of 4, then pad length,
        // next header 0x07, AuthCode.
        let code_at = b
            .len()
            .checked_sub(integrity_len)
            .ok_or(CodecError::Truncated {
                what: "integrity trailer",
                have: b.len(),
                need: after + 2 + integrity_len,
            })?;
        if code_at < after + 2 {
            return Err(CodecError::Truncated {
                what: "integrity trailer",
                have: b.len(),
                need: after + 2 + integrity_len,
            });
        }
        let pad_len = usize::from(b[code_at - 2]);
        if b[code_at - 1] != 0x07 {
            return Err(CodecError::Unexpected {
                what: "integrity next header",
                value: u32::from(b[code_at - 1]),
            });
        }
        if after + pad_len + 2 != code_at || b[after..after + pad_len].iter().any(|p| *p != 0xff) {
            return Err(CodecError::Length {
                what: "integrity pad",
                declared: pad_len,
                actual: code_at.saturating_sub(after + 2),
            });
        }
        Some((b[4..code_at].to_vec(), b[code_at..].to_vec()))
    } else {
        if b.len() != after {
            return Err(CodecError::Length {
                what: "IPMI 2.0 datagram",
                declared: after,
                actual: b.len(),
            });
        }
        None
    };
    Ok(Datagram::V20(V20 {
        payload_type: ptype & 0x3f,
        encrypted: ptype & 0x80 != 0,
        authenticated,
        session_id,
        seq,
        payload,
        integrity,
    }))
}

impl V20 {
    /// Verifies the integrity AuthCode with `k1` (when the packet has one) and decrypts the
    /// payload with `aes_key` (when encrypted). Returns the plaintext payload.
    pub fn open(
        &self,
        hash: Hash,
        k1: &[u8],
        aes_key: Option<&[u8; 16]>,
    ) -> Result<Vec<u8>, CodecError> {
        if let Some((covered, code)) = &self.integrity {
            let expected = hash.hmac(k1, &[covered]);
            let expected = expected.get(..hash.truncated_len()).unwrap_or_default();
            if !constant_time_eq(expected, code) {
                return Err(CodecError::BadAuthCode("integrity AuthCode"));
            }
        }
        match (self.encrypted, aes_key) {
            (false, _) => Ok(self.payload.clone()),
            (true, Some(key)) => decrypt(key, &self.payload),
            (true, None) => Err(CodecError::Decrypt("encrypted payload without a key")),
        }
    }
}

/// How to protect an outgoing IPMI 2.0 packet.
pub struct Protection<'a> {
    /// Integrity hash and K1.
    pub integrity: Option<(Hash, &'a [u8])>,
    /// AES key and the IV to use (random per packet; chosen by the caller).
    pub confidentiality: Option<(&'a [u8; 16], [u8; 16])>,
}

/// Builds an IPMI 2.0 datagram.
pub fn seal(
    payload_type: u8,
    session_id: u32,
    seq: u32,
    plaintext: &[u8],
    protection: &Protection<'_>,
) -> Vec<u8> {
    let mut ptype = payload_type & 0x3f;
    let payload = match protection.confidentiality {
        Some((key, iv)) => {
            ptype |= 0x80;
            encrypt(key, &iv, plaintext)
        }
        None => plaintext.to_vec(),
    };
    if protection.integrity.is_some() {
        ptype |= 0x40;
    }
    let mut out = RMCP_IPMI.to_vec();
    out.push(0x06);
    out.push(ptype);
    out.extend(session_id.to_le_bytes());
    out.extend(seq.to_le_bytes());
    out.extend(
        u16::try_from(payload.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    out.extend(&payload);
    if let Some((hash, k1)) = protection.integrity {
        // From AuthType (offset 4) through NextHeader must be a multiple of 4.
        let covered = out.len() - 4 + 2;
        let pad = (4 - covered % 4) % 4;
        out.extend(std::iter::repeat_n(0xffu8, pad));
        out.push(pad as u8);
        out.push(0x07);
        let code = hash.hmac(k1, &[&out[4..]]);
        out.extend(code.get(..hash.truncated_len()).unwrap_or_default());
    }
    out
}
