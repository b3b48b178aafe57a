//! Dialback keys (XEP-0220) derived from a secret (XEP-0185): the key an originating
//! server sends for a (receiving, originating, stream id) triple is an HMAC-SHA256 of
//! that triple keyed with the hex SHA-256 of the secret, so the server that issued it can
//! verify it later without remembering it.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The dialback key for a stream `stream_id` that `receiving` opened for `originating`.
pub fn key(secret: &str, receiving: &str, originating: &str, stream_id: &str) -> String {
    let secret_hash = hex(&Sha256::digest(secret.as_bytes()));
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret_hash.as_bytes()).expect("HMAC takes any key size");
    mac.update(receiving.as_bytes());
    mac.update(b" ");
    mac.update(originating.as_bytes());
    mac.update(b" ");
    mac.update(stream_id.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// True if `offered` is the key for this triple (compared in constant time).
pub fn verify(
    secret: &str,
    receiving: &str,
    originating: &str,
    stream_id: &str,
    offered: &str,
) -> bool {
    let expected = key(secret, receiving, originating, stream_id);
    expected.len() == offered.len()
        && expected
            .bytes()
            .zip(offered.trim().bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_bind_every_part_of_the_triple() {
        let k = key("s3cr3t", "example.org", "example.com", "D60000229F");
        assert_eq!(k.len(), 64);
        assert!(verify(
            "s3cr3t",
            "example.org",
            "example.com",
            "D60000229F",
            &k
        ));
        assert!(!verify(
            "other",
            "example.org",
            "example.com",
            "D60000229F",
            &k
        ));
        assert!(!verify(
            "s3cr3t",
            "example.net",
            "example.com",
            "D60000229F",
            &k
        ));
        assert!(!verify(
            "s3cr3t",
            "example.org",
            "example.net",
            "D60000229F",
            &k
        ));
        assert!(!verify(
            "s3cr3t",
            "example.org",
            "example.com",
            "D60000229G",
            &k
        ));
        assert!(!verify(
            "s3cr3t",
            "example.org",
            "example.com",
            "D60000229F",
            "abc"
        ));
    }
}
