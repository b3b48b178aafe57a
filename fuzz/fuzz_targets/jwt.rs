//! Fuzz target `jwt`: a tenant's JWT check ([`JwtVerifier::verify`]: header, key choice by
//! `kid` and `alg`, signature, then the time, audience, issuer and username claims) and
//! the shape test that routes a PLAIN password to it ([`looks_like_jwt`]).
//!
//! Input: byte 0 picks the mode. Even: the rest is the token as sent. Odd: the rest is
//! `header JSON \n claims JSON`, which the target encodes and signs with the HS256 key
//! `k1` itself, so that the claim checks behind the signature are fuzzed too.
//! The verifiers hold HS256 keys (with and without `kid`) and RS256, ES256 and EdDSA
//! public keys (the test fixtures); one requires `aud` and `iss`. Checked: nothing
//! panics; a token is only accepted when the target signed it (never a raw one: the
//! fuzzer does not know the secrets), and then for a valid localpart of the domain that
//! has not expired.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use heliograph_auth::tokens::jwt::{JwtKeySpec, JwtSettings, JwtVerifier};
use heliograph_auth::tokens::looks_like_jwt;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const DOMAIN: &str = "example.com";
/// 2026-12-01, seconds since the epoch.
const NOW: u64 = 1_796_083_200;
const K1_SECRET: &str = "fuzz-secret-k1";

fn key(kid: Option<&str>, alg: &str) -> JwtKeySpec {
    JwtKeySpec {
        kid: kid.map(str::to_string),
        alg: alg.to_string(),
        secret: None,
        secret_file: None,
        public_key: None,
        public_key_file: None,
    }
}

fn settings(strict: bool) -> JwtSettings {
    let secret = |kid: Option<&str>, value: &str| JwtKeySpec {
        secret: Some(value.into()),
        ..key(kid, "HS256")
    };
    let public = |kid: &str, alg: &str, pem: &str| JwtKeySpec {
        public_key: Some(pem.into()),
        ..key(Some(kid), alg)
    };
    JwtSettings {
        keys: vec![
            secret(Some("k1"), K1_SECRET),
            secret(None, "fuzz-secret-unnamed"),
            public(
                "rsa",
                "RS256",
                include_str!("../../host/crates/auth/tests/fixtures/jwt/rsa.pub"),
            ),
            public(
                "p256",
                "ES256",
                include_str!("../../host/crates/auth/tests/fixtures/jwt/p256.pub"),
            ),
            public(
                "ed",
                "EdDSA",
                include_str!("../../host/crates/auth/tests/fixtures/jwt/ed25519.pub"),
            ),
        ],
        jwks_files: Vec::new(),
        username_claim: if strict { "user".into() } else { "sub".into() },
        audience: if strict {
            vec!["xmpp".into()]
        } else {
            Vec::new()
        },
        issuer: if strict {
            vec!["https://issuer.example".into()]
        } else {
            Vec::new()
        },
        leeway_secs: 30,
        require_exp: strict,
    }
}

fn verifiers() -> &'static [JwtVerifier; 2] {
    static VERIFIERS: OnceLock<[JwtVerifier; 2]> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        [false, true].map(|strict| JwtVerifier::load(&settings(strict)).expect("fixture keys"))
    })
}

/// `header.claims.signature`, signed with `k1`'s secret whatever the header says.
fn sign(header: &[u8], claims: &[u8]) -> String {
    let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(K1_SECRET.as_bytes()).expect("any key size");
    mac.update(input.as_bytes());
    format!("{input}.{}", B64URL.encode(mac.finalize().into_bytes()))
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let signed_here = mode & 1 == 1;
    let token = if signed_here {
        let at = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        sign(&rest[..at], rest.get(at + 1..).unwrap_or_default())
    } else {
        match std::str::from_utf8(rest) {
            Ok(token) => token.to_string(),
            Err(_) => return,
        }
    };
    let _ = looks_like_jwt(&token);
    for verifier in verifiers() {
        if let Ok(identity) = verifier.verify(&token, DOMAIN, NOW) {
            assert!(signed_here, "accepted a token nobody signed: {token}");
            assert!(!identity.local.is_empty(), "empty localpart from {token}");
            assert!(
                identity
                    .expires_at
                    .is_none_or(|exp| exp.saturating_add(30) >= NOW),
                "expired token accepted: {token}"
            );
        }
    }
});
