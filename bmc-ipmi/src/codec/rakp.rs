//! Session establishment: cipher suites, RMCP+ Open Session, RAKP messages 1–4 and their
//! HMACs.

use super::crypto::{Hash, constant_time_eq};
use super::{CodecError, slice, take};

/// A cipher suite this codec speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherSuite {
    /// Suite 3: RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128.
    Suite3,
    /// Suite 17: RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128.
    Suite17,
}

impl CipherSuite {
    /// The suite's number.
    pub fn id(self) -> u8 {
        match self {
            CipherSuite::Suite3 => 3,
            CipherSuite::Suite17 => 17,
        }
    }

    /// From a suite number.
    pub fn from_id(id: u8) -> Option<CipherSuite> {
        match id {
            3 => Some(CipherSuite::Suite3),
            17 => Some(CipherSuite::Suite17),
            _ => None,
        }
    }

    /// The hash of its authentication and integrity algorithms.
    pub fn hash(self) -> Hash {
        match self {
            CipherSuite::Suite3 => Hash::Sha1,
            CipherSuite::Suite17 => Hash::Sha256,
        }
    }

    /// (authentication, integrity, confidentiality) algorithm numbers.
    pub fn algorithms(self) -> (u8, u8, u8) {
        match self {
            CipherSuite::Suite3 => (0x01, 0x01, 0x01),
            CipherSuite::Suite17 => (0x03, 0x04, 0x01),
        }
    }
}

/// RMCP+ Open Session Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionRequest {
    /// Message tag.
    pub tag: u8,
    /// Requested maximum privilege (0 = the highest the user has).
    pub max_privilege: u8,
    /// Remote console session ID (wire bytes).
    pub console_session_id: [u8; 4],
    /// The proposed suite.
    pub suite: CipherSuite,
}

impl OpenSessionRequest {
    /// Encodes the payload.
    pub fn encode(&self) -> Vec<u8> {
        let (a, i, c) = self.suite.algorithms();
        let mut out = vec![self.tag, self.max_privilege, 0, 0];
        out.extend(self.console_session_id);
        for (kind, alg) in [(0u8, a), (1, i), (2, c)] {
            out.extend([kind, 0, 0, 8, alg, 0, 0, 0]);
        }
        out
    }
}

/// RMCP+ Open Session Response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionResponse {
    /// Message tag.
    pub tag: u8,
    /// RMCP+ status code (0 = success).
    pub status: u8,
    /// Granted maximum privilege.
    pub max_privilege: u8,
    /// Remote console session ID (wire bytes).
    pub console_session_id: [u8; 4],
    /// Managed system session ID (wire bytes).
    pub bmc_session_id: [u8; 4],
    /// Algorithms the BMC chose (authentication, integrity, confidentiality).
    pub algorithms: (u8, u8, u8),
}

impl OpenSessionResponse {
    /// Decodes the payload. A non-zero status carries no session fields, and some BMCs
    /// (OpenIPMI) send only the tag and the status then.
    pub fn decode(b: &[u8]) -> Result<OpenSessionResponse, CodecError> {
        let [tag, status] = take::<2>(b, 0, "Open Session Response")?;
        if status != 0 {
            return Ok(OpenSessionResponse {
                tag,
                status,
                max_privilege: b.get(2).copied().unwrap_or(0),
                console_session_id: take::<4>(b, 4, "").unwrap_or([0; 4]),
                bmc_session_id: [0; 4],
                algorithms: (0, 0, 0),
            });
        }
        let max_privilege = take::<1>(b, 2, "Open Session Response")?[0];
        let console_session_id = take::<4>(b, 4, "Open Session Response")?;
        let bmc_session_id = take::<4>(b, 8, "Open Session Response")?;
        let alg = |at: usize| -> Result<u8, CodecError> {
            let rec = take::<8>(b, at, "Open Session Response algorithm")?;
            Ok(rec[4] & 0x3f)
        };
        Ok(OpenSessionResponse {
            tag,
            status,
            max_privilege,
            console_session_id,
            bmc_session_id,
            algorithms: (alg(12)?, alg(20)?, alg(28)?),
        })
    }
}

/// RAKP Message 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp1 {
    /// Message tag.
    pub tag: u8,
    /// Managed system session ID (wire bytes).
    pub bmc_session_id: [u8; 4],
    /// Console random number Rm.
    pub rm: [u8; 16],
    /// Role byte (requested privilege, plus 0x10 for name-only lookup).
    pub role: u8,
    /// User name (at most 16 bytes).
    pub user: Vec<u8>,
}

impl Rakp1 {
    /// Encodes the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.tag, 0, 0, 0];
        out.extend(self.bmc_session_id);
        out.extend(self.rm);
        out.extend([self.role, 0, 0, u8::try_from(self.user.len()).unwrap_or(16)]);
        out.extend(&self.user);
        out
    }

    /// Decodes the payload (simulators and tests).
    pub fn decode(b: &[u8]) -> Result<Rakp1, CodecError> {
        let tag = take::<1>(b, 0, "RAKP 1")?[0];
        let bmc_session_id = take::<4>(b, 4, "RAKP 1")?;
        let rm = take::<16>(b, 8, "RAKP 1")?;
        let [role, _, _, ulen] = take::<4>(b, 24, "RAKP 1")?;
        if ulen > 16 {
            return Err(CodecError::Unexpected {
                what: "RAKP 1 user name length",
                value: u32::from(ulen),
            });
        }
        let user = slice(b, 28, usize::from(ulen), "RAKP 1 user name")?.to_vec();
        Ok(Rakp1 {
            tag,
            bmc_session_id,
            rm,
            role,
            user,
        })
    }
}

/// RAKP Message 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp2 {
    /// Message tag.
    pub tag: u8,
    /// RMCP+ status code.
    pub status: u8,
    /// Remote console session ID (wire bytes).
    pub console_session_id: [u8; 4],
    /// BMC random number Rc.
    pub rc: [u8; 16],
    /// BMC GUID.
    pub guid: [u8; 16],
    /// Key exchange authentication code.
    pub auth_code: Vec<u8>,
}

impl Rakp2 {
    /// Decodes the payload; `hash` gives the auth code length.
    pub fn decode(b: &[u8], hash: Hash) -> Result<Rakp2, CodecError> {
        let [tag, status] = take::<2>(b, 0, "RAKP 2")?;
        if status != 0 {
            return Ok(Rakp2 {
                tag,
                status,
                console_session_id: take::<4>(b, 4, "").unwrap_or([0; 4]),
                rc: [0; 16],
                guid: [0; 16],
                auth_code: Vec::new(),
            });
        }
        Ok(Rakp2 {
            tag,
            status,
            console_session_id: take::<4>(b, 4, "RAKP 2")?,
            rc: take::<16>(b, 8, "RAKP 2")?,
            guid: take::<16>(b, 24, "RAKP 2")?,
            auth_code: slice(b, 40, hash.output_len(), "RAKP 2 auth code")?.to_vec(),
        })
    }
}

/// Who the key exchange is between, and what was asked: the inputs of the RAKP HMACs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// Remote console session ID (wire bytes).
    pub console_session_id: [u8; 4],
    /// Managed system session ID (wire bytes).
    pub bmc_session_id: [u8; 4],
    /// Console random number.
    pub rm: [u8; 16],
    /// BMC random number.
    pub rc: [u8; 16],
    /// BMC GUID.
    pub guid: [u8; 16],
    /// Role byte of RAKP 1.
    pub role: u8,
    /// User name.
    pub user: Vec<u8>,
}

impl Exchange {
    fn ulen(&self) -> [u8; 1] {
        [u8::try_from(self.user.len()).unwrap_or(16)]
    }

    /// The RAKP 2 auth code the BMC should send: HMAC(Kuid, SIDm | SIDc | Rm | Rc | GUIDc |
    /// ROLEm | ULENGTHm | UNAMEm).
    pub fn rakp2_code(&self, hash: Hash, kuid: &[u8]) -> Vec<u8> {
        hash.hmac(
            kuid,
            &[
                &self.console_session_id,
                &self.bmc_session_id,
                &self.rm,
                &self.rc,
                &self.guid,
                &[self.role],
                &self.ulen(),
                &self.user,
            ],
        )
    }

    /// Verifies a RAKP 2 auth code (a wrong password or a forged answer fails).
    pub fn verify_rakp2(&self, hash: Hash, kuid: &[u8], code: &[u8]) -> Result<(), CodecError> {
        if constant_time_eq(&self.rakp2_code(hash, kuid), code) {
            Ok(())
        } else {
            Err(CodecError::BadAuthCode("RAKP 2 key exchange auth code"))
        }
    }

    /// The RAKP 3 auth code: HMAC(Kuid, Rc | SIDm | ROLEm | ULENGTHm | UNAMEm).
    pub fn rakp3_code(&self, hash: Hash, kuid: &[u8]) -> Vec<u8> {
        hash.hmac(
            kuid,
            &[
                &self.rc,
                &self.console_session_id,
                &[self.role],
                &self.ulen(),
                &self.user,
            ],
        )
    }

    /// The RAKP 4 integrity check value: HMAC(SIK, Rm | SIDc | GUIDc), truncated.
    pub fn rakp4_icv(&self, hash: Hash, sik: &[u8]) -> Vec<u8> {
        let mut v = hash.hmac(sik, &[&self.rm, &self.bmc_session_id, &self.guid]);
        v.truncate(hash.truncated_len());
        v
    }
}

/// RAKP Message 3.
pub fn encode_rakp3(tag: u8, status: u8, bmc_session_id: [u8; 4], code: &[u8]) -> Vec<u8> {
    let mut out = vec![tag, status, 0, 0];
    out.extend(bmc_session_id);
    out.extend(code);
    out
}

/// RAKP Message 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp4 {
    /// Message tag.
    pub tag: u8,
    /// RMCP+ status code.
    pub status: u8,
    /// Remote console session ID (wire bytes).
    pub console_session_id: [u8; 4],
    /// Integrity check value.
    pub icv: Vec<u8>,
}

impl Rakp4 {
    /// Decodes the payload.
    pub fn decode(b: &[u8], hash: Hash) -> Result<Rakp4, CodecError> {
        let [tag, status] = take::<2>(b, 0, "RAKP 4")?;
        let (console_session_id, icv) = if status == 0 {
            (
                take::<4>(b, 4, "RAKP 4")?,
                slice(b, 8, hash.truncated_len(), "RAKP 4 check value")?.to_vec(),
            )
        } else {
            (take::<4>(b, 4, "").unwrap_or([0; 4]), Vec::new())
        };
        Ok(Rakp4 {
            tag,
            status,
            console_session_id,
            icv,
        })
    }
}
