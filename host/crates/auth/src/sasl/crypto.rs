//! SCRAM cryptographic primitives (RFC 5802 §3), generic over [`ScramHash`]: `H()`,
//! `HMAC()`, `Hi()` (PBKDF2) and the proof/signature computations shared by the server
//! mechanism, the client and the credential helpers. Outputs live on the stack
//! ([`Digest`]); nothing here allocates.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::ScramHash;

/// Largest output of a supported hash (SHA-256).
const MAX_OUTPUT: usize = 32;

/// A hash or HMAC output of up to [`MAX_OUTPUT`] bytes, kept on the stack.
#[derive(Clone, Copy)]
pub(crate) struct Digest {
    bytes: [u8; MAX_OUTPUT],
    len: usize,
}

impl Digest {
    fn from_slice(out: &[u8]) -> Digest {
        let mut bytes = [0; MAX_OUTPUT];
        bytes[..out.len()].copy_from_slice(out);
        Digest {
            bytes,
            len: out.len(),
        }
    }

    /// Constant-time comparison with `other` (false if the lengths differ).
    pub(crate) fn ct_eq(&self, other: &[u8]) -> bool {
        self.as_ref().ct_eq(other).into()
    }
}

impl AsRef<[u8]> for Digest {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest(..)")
    }
}

impl ScramHash {
    /// Output length of the hash in bytes.
    pub(crate) fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    /// `H(data)`.
    pub(crate) fn hash(self, data: &[u8]) -> Digest {
        match self {
            ScramHash::Sha1 => Digest::from_slice(&Sha1::digest(data)),
            ScramHash::Sha256 => Digest::from_slice(&Sha256::digest(data)),
        }
    }

    /// `HMAC(key, parts[0] + parts[1] + ...)`, without concatenating the parts.
    pub(crate) fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Digest {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Digest {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .expect("HMAC accepts keys of any length");
            for part in parts {
                mac.update(part);
            }
            Digest::from_slice(&mac.finalize().into_bytes())
        }
        match self {
            ScramHash::Sha1 => run::<Hmac<Sha1>>(key, parts),
            ScramHash::Sha256 => run::<Hmac<Sha256>>(key, parts),
        }
    }

    /// `SaltedPassword = Hi(password, salt, iterations)` (PBKDF2 with HMAC-H).
    pub(crate) fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Digest {
        let mut out = [0; MAX_OUTPUT];
        let out = &mut out[..self.output_len()];
        match self {
            ScramHash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, out),
            ScramHash::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, out),
        }
        Digest::from_slice(out)
    }

    /// `ClientKey = HMAC(SaltedPassword, "Client Key")`.
    pub(crate) fn client_key(self, salted_password: &Digest) -> Digest {
        self.hmac(salted_password.as_ref(), &[b"Client Key"])
    }

    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
    pub(crate) fn server_key(self, salted_password: &Digest) -> Digest {
        self.hmac(salted_password.as_ref(), &[b"Server Key"])
    }
}

/// The pieces of `AuthMessage = client-first-message-bare "," server-first-message ","
/// client-final-message-without-proof`, fed to HMAC without being concatenated.
#[derive(Clone, Copy)]
pub(crate) struct AuthMessage<'a> {
    pub client_first_bare: &'a str,
    pub server_first: &'a str,
    pub client_final_without_proof: &'a str,
}

impl AuthMessage<'_> {
    fn parts(&self) -> [&[u8]; 5] {
        [
            self.client_first_bare.as_bytes(),
            b",",
            self.server_first.as_bytes(),
            b",",
            self.client_final_without_proof.as_bytes(),
        ]
    }

    /// `ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage)`.
    pub(crate) fn client_proof(&self, hash: ScramHash, client_key: &Digest) -> Digest {
        let stored_key = hash.hash(client_key.as_ref());
        let signature = hash.hmac(stored_key.as_ref(), &self.parts());
        xor(client_key, &signature)
    }

    /// `ServerSignature = HMAC(ServerKey, AuthMessage)`.
    pub(crate) fn server_signature(&self, hash: ScramHash, server_key: &[u8]) -> Digest {
        hash.hmac(server_key, &self.parts())
    }

    /// Server-side proof check: recovers `ClientKey = ClientProof XOR ClientSignature` and
    /// compares `H(ClientKey)` with `stored_key` in constant time.
    pub(crate) fn verify_proof(&self, hash: ScramHash, stored_key: &[u8], proof: &[u8]) -> bool {
        if proof.len() != hash.output_len() || stored_key.len() != hash.output_len() {
            return false;
        }
        let signature = hash.hmac(stored_key, &self.parts());
        let client_key = xor(&Digest::from_slice(proof), &signature);
        hash.hash(client_key.as_ref()).ct_eq(stored_key)
    }
}

/// Byte-wise XOR of two digests of the same length.
fn xor(a: &Digest, b: &Digest) -> Digest {
    debug_assert_eq!(a.len, b.len);
    let mut out = *a;
    for (x, y) in out.bytes.iter_mut().zip(b.bytes) {
        *x ^= y;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(d: &Digest) -> String {
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hash_and_hmac_known_answers() {
        assert_eq!(
            hex(&ScramHash::Sha1.hash(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&ScramHash::Sha256.hash(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // RFC 4231 test case 2, fed in pieces.
        assert_eq!(
            hex(&ScramHash::Sha256.hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn pbkdf2_known_answer() {
        // RFC 6070 test vector 2.
        assert_eq!(
            hex(&ScramHash::Sha1.salted_password(b"password", b"salt", 2)),
            "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"
        );
    }

    #[test]
    fn digest_ct_eq_checks_length_and_content() {
        let d = ScramHash::Sha1.hash(b"x");
        assert!(d.ct_eq(d.as_ref()));
        assert!(!d.ct_eq(&d.as_ref()[..19]));
        let mut other = d.as_ref().to_vec();
        other[0] ^= 1;
        assert!(!d.ct_eq(&other));
    }
}
