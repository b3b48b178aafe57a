//! Stored credentials: deriving SCRAM keys from a password ([`derive_credentials`]),
//! checking a plaintext password against them ([`verify_password`]), and the fake keys
//! used to keep an unknown username indistinguishable from a known one.

use std::sync::OnceLock;

use super::crypto::Digest;
use super::{DEFAULT_ITERATIONS, SaslFailure, ScramHash, ScramKeys, StoredCredentials};

/// Length of freshly generated salts.
const SALT_LEN: usize = 16;

/// Applies SASLprep (RFC 4013) to a password or username; `None` if it is prohibited or
/// empty once prepared.
pub(crate) fn prepare(s: &str) -> Option<std::borrow::Cow<'_, str>> {
    stringprep::saslprep(s).ok().filter(|p| !p.is_empty())
}

/// Derives the stored SCRAM keys for a password (SASLprep applied) with a fresh random salt
/// per hash function.
///
/// Fails with [`SaslFailure::MalformedRequest`] if the password is empty or not valid under
/// SASLprep, or if `iterations` is zero.
pub fn derive_credentials(
    password: &str,
    iterations: u32,
) -> Result<StoredCredentials, SaslFailure> {
    let password = prepare(password).ok_or(SaslFailure::MalformedRequest)?;
    if iterations == 0 {
        return Err(SaslFailure::MalformedRequest);
    }
    let derive = |hash| {
        let salt: [u8; SALT_LEN] = rand::random();
        scram_keys(hash, password.as_bytes(), &salt, iterations)
    };
    Ok(StoredCredentials {
        sha1: derive(ScramHash::Sha1),
        sha256: derive(ScramHash::Sha256),
    })
}

/// Checks a plaintext password (SASLprep applied) against stored keys, comparing the
/// recomputed `StoredKey` in constant time.
pub fn verify_password(password: &str, keys: &ScramKeys, hash: ScramHash) -> bool {
    let Some(password) = prepare(password) else {
        return false;
    };
    if keys.iterations == 0 {
        return false;
    }
    let salted = hash.salted_password(password.as_bytes(), &keys.salt, keys.iterations);
    hash.hash(hash.client_key(&salted).as_ref())
        .ct_eq(&keys.stored_key)
}

/// Computes the SCRAM keys of an (already prepared) password for a given salt.
pub(crate) fn scram_keys(
    hash: ScramHash,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> ScramKeys {
    let salted = hash.salted_password(password, salt, iterations);
    let stored_key = hash.hash(hash.client_key(&salted).as_ref());
    ScramKeys {
        salt: salt.to_vec(),
        iterations,
        stored_key: stored_key.as_ref().to_vec(),
        server_key: hash.server_key(&salted).as_ref().to_vec(),
    }
}

/// Keys announced for a username that has no account: the salt is derived
/// deterministically from the username (HMAC with a per-process random key), so repeated
/// attempts see the same salt just as for a real account. The keys themselves are zero
/// and the exchange is failed regardless of the proof.
pub(crate) fn fake_keys(hash: ScramHash, username: &str) -> ScramKeys {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    let key = KEY.get_or_init(rand::random);
    let tag: &[u8] = match hash {
        ScramHash::Sha1 => b"sha1\0",
        ScramHash::Sha256 => b"sha256\0",
    };
    let mac: Digest = ScramHash::Sha256.hmac(key, &[tag, username.as_bytes()]);
    ScramKeys {
        salt: mac.as_ref()[..SALT_LEN].to_vec(),
        iterations: DEFAULT_ITERATIONS,
        stored_key: vec![0; hash.output_len()],
        server_key: vec![0; hash.output_len()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_then_verify_round_trip() {
        let creds = derive_credentials("pencil", 64).unwrap();
        for (keys, hash) in [
            (&creds.sha1, ScramHash::Sha1),
            (&creds.sha256, ScramHash::Sha256),
        ] {
            assert_eq!(keys.iterations, 64);
            assert_eq!(keys.salt.len(), SALT_LEN);
            assert_eq!(keys.stored_key.len(), hash.output_len());
            assert_eq!(keys.server_key.len(), hash.output_len());
            assert!(verify_password("pencil", keys, hash));
            assert!(!verify_password("pencil2", keys, hash));
            assert!(!verify_password("", keys, hash));
        }
        // Keys of one hash do not verify under the other.
        assert!(!verify_password("pencil", &creds.sha1, ScramHash::Sha256));
    }

    #[test]
    fn salts_are_fresh_per_derivation_and_per_hash() {
        let a = derive_credentials("pencil", 16).unwrap();
        let b = derive_credentials("pencil", 16).unwrap();
        assert_ne!(a.sha1.salt, b.sha1.salt);
        assert_ne!(a.sha256.salt, b.sha256.salt);
        assert_ne!(a.sha1.salt, a.sha256.salt);
        assert_ne!(a.sha256.stored_key, b.sha256.stored_key);
    }

    #[test]
    fn saslprep_is_applied_to_passwords() {
        // U+00A0 NO-BREAK SPACE maps to SPACE; U+00AD SOFT HYPHEN maps to nothing.
        let creds = derive_credentials("a\u{a0}b\u{ad}c", 16).unwrap();
        assert!(verify_password("a bc", &creds.sha256, ScramHash::Sha256));
        // Prohibited (control character) and empty passwords are rejected.
        assert_eq!(
            derive_credentials("a\u{7}b", 16),
            Err(SaslFailure::MalformedRequest)
        );
        assert_eq!(
            derive_credentials("", 16),
            Err(SaslFailure::MalformedRequest)
        );
        assert_eq!(
            derive_credentials("x", 0),
            Err(SaslFailure::MalformedRequest)
        );
    }

    #[test]
    fn fake_keys_are_deterministic_per_user_and_hash() {
        let a = fake_keys(ScramHash::Sha256, "nobody");
        assert_eq!(a, fake_keys(ScramHash::Sha256, "nobody"));
        assert_ne!(a.salt, fake_keys(ScramHash::Sha256, "nobody2").salt);
        assert_ne!(a.salt, fake_keys(ScramHash::Sha1, "nobody").salt);
        assert_eq!(a.salt.len(), SALT_LEN);
        assert_eq!(a.iterations, DEFAULT_ITERATIONS);
    }
}
