//! Cipher-suite algorithms: RAKP HMAC, integrity and AES-CBC-128 confidentiality, and the
//! session key derivation (SIK, K1, K2).

use aes::Aes128;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use super::CodecError;

/// The hash behind a cipher suite's authentication and integrity algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// HMAC-SHA1 (cipher suite 3: RAKP-HMAC-SHA1, HMAC-SHA1-96).
    Sha1,
    /// HMAC-SHA256 (cipher suite 17: RAKP-HMAC-SHA256, HMAC-SHA256-128).
    Sha256,
}

impl Hash {
    /// HMAC of `data` under `key`.
    pub fn hmac(self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        match self {
            Hash::Sha1 => {
                // HMAC accepts keys of any length: new_from_slice cannot fail.
                let Ok(mut m) = <Hmac<Sha1> as Mac>::new_from_slice(key) else {
                    return Vec::new();
                };
                for d in data {
                    m.update(d);
                }
                m.finalize().into_bytes().to_vec()
            }
            Hash::Sha256 => {
                let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
                    return Vec::new();
                };
                for d in data {
                    m.update(d);
                }
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Length of the RAKP key-exchange auth code (the whole HMAC).
    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
        }
    }

    /// Length of the RAKP4 integrity check value and of the session integrity AuthCode
    /// (HMAC-SHA1-96: 12, HMAC-SHA256-128: 16).
    pub fn truncated_len(self) -> usize {
        match self {
            Hash::Sha1 => 12,
            Hash::Sha256 => 16,
        }
    }
}

/// Compares two byte strings without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session keys derived after RAKP.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// Session integrity key.
    pub sik: Vec<u8>,
    /// K1: integrity key.
    pub k1: Vec<u8>,
    /// K2: its first 16 bytes are the AES-CBC-128 key.
    pub k2: Vec<u8>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}

impl SessionKeys {
    /// Derives SIK = HMAC(Kg or password, Rm | Rc | role | ulen | user), then
    /// K1 = HMAC(SIK, 0x01 × 20) and K2 = HMAC(SIK, 0x02 × 20).
    pub fn derive(
        hash: Hash,
        key: &[u8],
        rm: &[u8; 16],
        rc: &[u8; 16],
        role: u8,
        user: &[u8],
    ) -> SessionKeys {
        let ulen = [u8::try_from(user.len()).unwrap_or(u8::MAX)];
        let sik = hash.hmac(key, &[rm, rc, &[role], &ulen, user]);
        let k1 = hash.hmac(&sik, &[&[0x01; 20]]);
        let k2 = hash.hmac(&sik, &[&[0x02; 20]]);
        SessionKeys { sik, k1, k2 }
    }

    /// The AES-CBC-128 key (K2's first 16 bytes).
    pub fn aes_key(&self) -> [u8; 16] {
        let mut k = [0u8; 16];
        for (d, s) in k.iter_mut().zip(&self.k2) {
            *d = *s;
        }
        k
    }
}

/// The password as IPMI uses it: the bytes, zero-padded to 20 (`Kuid`).
pub fn password_key(password: &[u8]) -> Vec<u8> {
    let mut k = password.to_vec();
    if k.len() < 20 {
        k.resize(20, 0);
    }
    k
}

/// AES-CBC-128 encryption of an IPMI payload: `data` with the IPMI confidentiality pad
/// (1, 2, 3, … then the pad length) to a multiple of 16, prefixed by `iv`.
pub fn encrypt(key: &[u8; 16], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let cipher = Aes128::new(GenericArray::from_slice(key));
    let pad = (16 - (data.len() + 1) % 16) % 16;
    let mut plain = data.to_vec();
    plain.extend((1..=pad).map(|i| i as u8));
    plain.push(pad as u8);
    let mut out = iv.to_vec();
    let mut prev = *iv;
    for chunk in plain.chunks(16) {
        let mut block = [0u8; 16];
        for (i, b) in block.iter_mut().enumerate() {
            *b = chunk.get(i).copied().unwrap_or(0) ^ prev[i];
        }
        let mut ga = GenericArray::clone_from_slice(&block);
        cipher.encrypt_block(&mut ga);
        prev.copy_from_slice(&ga);
        out.extend_from_slice(&ga);
    }
    out
}

/// Decrypts an AES-CBC-128 IPMI payload (IV first) and strips the confidentiality pad,
/// checking it.
pub fn decrypt(key: &[u8; 16], payload: &[u8]) -> Result<Vec<u8>, CodecError> {
    if payload.len() < 32 || payload.len() % 16 != 0 {
        return Err(CodecError::Decrypt("length is not an IV plus whole blocks"));
    }
    let cipher = Aes128::new(GenericArray::from_slice(key));
    let (iv, body) = payload.split_at(16);
    let mut prev = [0u8; 16];
    prev.copy_from_slice(iv);
    let mut plain = Vec::with_capacity(body.len());
    for chunk in body.chunks(16) {
        let mut ga = GenericArray::clone_from_slice(chunk);
        cipher.decrypt_block(&mut ga);
        for i in 0..16 {
            plain.push(ga[i] ^ prev[i]);
        }
        prev.copy_from_slice(chunk);
    }
    let pad = usize::from(*plain.last().ok_or(CodecError::Decrypt("empty"))?);
    if pad > 15 || pad + 1 > plain.len() {
        return Err(CodecError::Decrypt("pad length out of range"));
    }
    let data_len = plain.len() - pad - 1;
    let pad_bytes = &plain[data_len..data_len + pad];
    if pad_bytes
        .iter()
        .enumerate()
        .any(|(i, b)| usize::from(*b) != i + 1)
    {
        return Err(CodecError::Decrypt("pad bytes are not 1, 2, 3, …"));
    }
    plain.truncate(data_len);
    Ok(plain)
}
