//! IPMI LAN messages (the requests and responses inside session payloads), with their
//! two checksums.

use super::{CodecError, slice, take};

/// Two's-complement checksum: the bytes plus it sum to zero.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// BMC responder address.
pub const BMC_ADDR: u8 = 0x20;
/// Remote console (software ID) requester address.
pub const CONSOLE_ADDR: u8 = 0x81;

/// A request to the BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Network function (even: request).
    pub netfn: u8,
    /// Command.
    pub cmd: u8,
    /// Requester sequence number (6 bits).
    pub seq: u8,
    /// Data bytes.
    pub data: Vec<u8>,
}

impl Request {
    /// Encodes the message: `rsAddr netFn/LUN chk1 rqAddr rqSeq/LUN cmd data chk2`.
    pub fn encode(&self) -> Vec<u8> {
        let head = [BMC_ADDR, self.netfn << 2];
        let mut out = head.to_vec();
        out.push(checksum(&head));
        let start = out.len();
        out.extend([CONSOLE_ADDR, (self.seq & 0x3f) << 2, self.cmd]);
        out.extend(&self.data);
        let chk = checksum(&out[start..]);
        out.push(chk);
        out
    }

    /// Decodes a request (as a BMC or a test sees it).
    pub fn decode(b: &[u8]) -> Result<Request, CodecError> {
        let (head, body) = split_checked(b, 7)?;
        Ok(Request {
            netfn: head[1] >> 2,
            seq: head[4] >> 2,
            cmd: body[0],
            data: body[1..].to_vec(),
        })
    }
}

/// A response from the BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Network function (odd: response).
    pub netfn: u8,
    /// Command answered.
    pub cmd: u8,
    /// Requester sequence number echoed.
    pub seq: u8,
    /// Completion code (0 = success).
    pub completion: u8,
    /// Data bytes after the completion code.
    pub data: Vec<u8>,
}

/// Splits a LAN message after verifying both checksums; returns the first six bytes and
/// everything from the command byte up to (not including) the second checksum.
fn split_checked(b: &[u8], min: usize) -> Result<(&[u8], &[u8]), CodecError> {
    if b.len() < min {
        return Err(CodecError::Truncated {
            what: "IPMI LAN message",
            have: b.len(),
            need: min,
        });
    }
    let [a0, a1, c1] = take::<3>(b, 0, "IPMI LAN message")?;
    if checksum(&[a0, a1]) != c1 {
        return Err(CodecError::Checksum("IPMI LAN header"));
    }
    let last = b.len() - 1;
    if checksum(&b[3..last]) != b[last] {
        return Err(CodecError::Checksum("IPMI LAN message"));
    }
    Ok((slice(b, 0, 5, "IPMI LAN message")?, &b[5..last]))
}

impl Response {
    /// Decodes a response, verifying both checksums.
    pub fn decode(b: &[u8]) -> Result<Response, CodecError> {
        let (head, body) = split_checked(b, 8)?;
        let netfn = head[1] >> 2;
        if netfn & 1 == 0 {
            return Err(CodecError::Unexpected {
                what: "response netFn (must be odd)",
                value: u32::from(netfn),
            });
        }
        Ok(Response {
            netfn,
            seq: head[4] >> 2,
            cmd: body[0],
            completion: body[1],
            data: body[2..].to_vec(),
        })
    }

    /// Encodes a response (for simulators and tests).
    pub fn encode(&self) -> Vec<u8> {
        let head = [CONSOLE_ADDR, self.netfn << 2];
        let mut out = head.to_vec();
        out.push(checksum(&head));
        let start = out.len();
        out.extend([BMC_ADDR, (self.seq & 0x3f) << 2, self.cmd, self.completion]);
        out.extend(&self.data);
        let chk = checksum(&out[start..]);
        out.push(chk);
        out
    }
}
