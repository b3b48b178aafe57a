//! The XEP-0114 handshake: the component proves it knows the shared secret by sending
//! `<handshake>` with the lowercase hex SHA-1 of the stream id followed by the secret.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// The handshake value for `stream_id` and `secret`: hex(SHA-1(stream_id + secret)).
pub fn digest(stream_id: &str, secret: &str) -> String {
    let mut h = Sha1::new();
    h.update(stream_id.as_bytes());
    h.update(secret.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// True if `given` (the `<handshake>` text) proves knowledge of `secret`. Hex letters are
/// accepted in either case; the comparison takes the same time wherever they differ.
pub fn verify(stream_id: &str, secret: &str, given: &str) -> bool {
    let expected = digest(stream_id, secret);
    let given = given.trim().to_ascii_lowercase();
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// A fresh, unguessable stream id.
pub fn new_stream_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_hex_sha1_of_stream_id_then_secret() {
        // The stream id of XEP-0114's examples; the value is SHA-1("3BF96D32secret")
        // computed independently (Python hashlib).
        assert_eq!(
            digest("3BF96D32", "secret"),
            "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136"
        );
        assert!(verify(
            "3BF96D32",
            "secret",
            "B09EA9B3B7F586BE8A08D0A3DD7466F110AEB136"
        ));
        assert!(!verify("3BF96D32", "Secret", &digest("3BF96D32", "secret")));
        assert!(!verify("3BF96D33", "secret", &digest("3BF96D32", "secret")));
        assert!(!verify("3BF96D32", "secret", ""));
    }

    #[test]
    fn stream_ids_differ() {
        assert_ne!(new_stream_id(), new_stream_id());
        assert_eq!(new_stream_id().len(), 32);
    }
}
