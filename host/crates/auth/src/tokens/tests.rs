//! JWT validation matrix (every algorithm, every refusal reason) and the server-issued
//! token life cycle (mint, verify, expiry, revocation, tenant separation).

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::issued::{self, TokenKind};
use super::jwt::{JwtKeySpec, JwtSettings, JwtVerifier};
use super::{TokenError, looks_like_jwt};
use crate::sasl::SaslFailure;
use heliograph_storage::{Account, MemTokenStore, TokenStore};

const NOW: u64 = 1_800_000_000;
const DOMAIN: &str = "acme.test";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

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

fn settings(keys: Vec<JwtKeySpec>) -> JwtSettings {
    JwtSettings {
        keys,
        jwks_files: Vec::new(),
        username_claim: "sub".into(),
        audience: Vec::new(),
        issuer: Vec::new(),
        leeway_secs: 30,
        require_exp: true,
    }
}

/// (alg, verification key spec, signing key) for every supported algorithm.
fn matrix() -> Vec<(Algorithm, JwtKeySpec, EncodingKey)> {
    let mut out = Vec::new();
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let mut k = key(None, &format!("{alg:?}"));
        k.secret = Some("correct horse battery staple".into());
        out.push((
            alg,
            k,
            EncodingKey::from_secret(b"correct horse battery staple"),
        ));
    }
    let rsa = EncodingKey::from_rsa_pem(read("rsa.key").as_bytes()).unwrap();
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        let mut k = key(None, &format!("{alg:?}"));
        k.public_key_file = Some(fixture("rsa.pub"));
        out.push((alg, k, rsa.clone()));
    }
    let mut k = key(None, "ES256");
    k.public_key = Some(read("p256.pub"));
    out.push((
        Algorithm::ES256,
        k,
        EncodingKey::from_ec_pem(read("p256.key").as_bytes()).unwrap(),
    ));
    let mut k = key(None, "ES384");
    k.public_key_file = Some(fixture("p384.pub"));
    out.push((
        Algorithm::ES384,
        k,
        EncodingKey::from_ec_pem(read("p384.key").as_bytes()).unwrap(),
    ));
    let mut k = key(None, "EdDSA");
    k.public_key = Some(read("ed25519.pub"));
    out.push((
        Algorithm::EdDSA,
        k,
        EncodingKey::from_ed_pem(read("ed25519.key").as_bytes()).unwrap(),
    ));
    out
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_string);
    encode(&h, claims, key).unwrap()
}

fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": NOW + 600, "iat": NOW - 5 })
}

#[test]
fn every_algorithm_accepts_a_good_token_and_refuses_a_bad_one() {
    for (alg, spec, enc) in matrix() {
        let v = JwtVerifier::load(&settings(vec![spec])).unwrap();
        let good = sign(alg, None, &enc, &claims("alice"));
        let id = v
            .verify(&good, DOMAIN, NOW)
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(id.local, "alice", "{alg:?}");
        assert_eq!(id.expires_at, Some(NOW + 600));
        // Tamper with the payload: the signature no longer matches.
        let parts: Vec<&str> = good.split('.').collect();
        let other = sign(alg, None, &enc, &claims("mallory"));
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            other.split('.').nth(1).unwrap(),
            parts[2]
        );
        assert_eq!(
            v.verify(&forged, DOMAIN, NOW),
            Err(TokenError::BadSignature),
            "{alg:?}"
        );
        let expired = sign(alg, None, &enc, &json!({"sub": "alice", "exp": NOW - 31}));
        assert_eq!(
            v.verify(&expired, DOMAIN, NOW),
            Err(TokenError::Expired),
            "{alg:?}"
        );
    }
}

#[test]
fn a_key_never_verifies_another_algorithm() {
    // An HMAC token signed with the RSA public key's PEM text as secret (the classic
    // alg-confusion attack) is refused: the RSA key only verifies RS256.
    let mut k = key(None, "RS256");
    k.public_key = Some(read("rsa.pub"));
    let v = JwtVerifier::load(&settings(vec![k])).unwrap();
    let attack = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(read("rsa.pub").as_bytes()),
        &claims("alice"),
    );
    assert!(matches!(
        v.verify(&attack, DOMAIN, NOW),
        Err(TokenError::NoKeyForAlgorithm(_))
    ));
    let none = format!(
        "eyJhbGciOiJub25lIn0.{}.",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            claims("alice").to_string()
        )
    );
    assert!(matches!(
        v.verify(&none, DOMAIN, NOW),
        Err(TokenError::Malformed(_))
    ));
}

fn hs(kid: &str, secret: &str) -> JwtKeySpec {
    let mut k = key(Some(kid), "HS256");
    k.secret = Some(secret.into());
    k
}

#[test]
fn kid_selects_the_key_and_rotation_keeps_both_live() {
    let v = JwtVerifier::load(&settings(vec![hs("old", "s-old"), hs("new", "s-new")])).unwrap();
    let old = EncodingKey::from_secret(b"s-old");
    let new = EncodingKey::from_secret(b"s-new");
    for (kid, k) in [("old", &old), ("new", &new)] {
        let t = sign(Algorithm::HS256, Some(kid), k, &claims("bob"));
        assert_eq!(v.verify(&t, DOMAIN, NOW).unwrap().local, "bob");
    }
    // Right kid, wrong key: bad signature (not tried against the other key).
    let t = sign(Algorithm::HS256, Some("old"), &new, &claims("bob"));
    assert_eq!(v.verify(&t, DOMAIN, NOW), Err(TokenError::BadSignature));
    let t = sign(Algorithm::HS256, Some("gone"), &new, &claims("bob"));
    assert_eq!(
        v.verify(&t, DOMAIN, NOW),
        Err(TokenError::UnknownKid("gone".into()))
    );
    // No kid: every HS256 key is tried.
    let t = sign(Algorithm::HS256, None, &new, &claims("bob"));
    assert_eq!(v.verify(&t, DOMAIN, NOW).unwrap().local, "bob");
    let t = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"x"),
        &claims("bob"),
    );
    assert_eq!(v.verify(&t, DOMAIN, NOW), Err(TokenError::BadSignature));
}

#[test]
fn time_audience_issuer_and_username_checks() {
    let mut s = settings(vec![hs("k", "secret")]);
    s.audience = vec!["video-app".into()];
    s.issuer = vec!["https://login.example".into()];
    s.username_claim = "preferred_username".into();
    let v = JwtVerifier::load(&s).unwrap();
    let enc = EncodingKey::from_secret(b"secret");
    let tok = |c: Value| sign(Algorithm::HS256, Some("k"), &enc, &c);
    let base = json!({
        "preferred_username": "carol",
        "aud": "video-app",
        "iss": "https://login.example",
        "exp": NOW + 60,
    });
    let with = |k: &str, val: Value| {
        let mut c = base.clone();
        c[k] = val;
        c
    };
    let without = |k: &str| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    assert_eq!(
        v.verify(&tok(base.clone()), DOMAIN, NOW).unwrap().local,
        "carol"
    );
    assert_eq!(
        v.verify(&tok(with("aud", json!(["x", "video-app"]))), DOMAIN, NOW)
            .unwrap()
            .local,
        "carol"
    );
    let cases = [
        (with("aud", json!("other-app")), TokenError::WrongAudience),
        (without("aud"), TokenError::WrongAudience),
        (with("iss", json!("https://evil")), TokenError::WrongIssuer),
        (without("iss"), TokenError::WrongIssuer),
        (without("exp"), TokenError::MissingClaim("exp".into())),
        (with("exp", json!(NOW - 31)), TokenError::Expired),
        (with("nbf", json!(NOW + 31)), TokenError::NotYetValid),
        (with("iat", json!(NOW + 31)), TokenError::NotYetValid),
        (
            without("preferred_username"),
            TokenError::MissingClaim("preferred_username".into()),
        ),
        (
            with("preferred_username", json!("carol@other.test")),
            TokenError::WrongDomain {
                user: "carol@other.test".into(),
                domain: DOMAIN.into(),
            },
        ),
    ];
    for (c, want) in cases {
        assert_eq!(v.verify(&tok(c.clone()), DOMAIN, NOW), Err(want), "{c}");
    }
    // Inside the leeway.
    for c in [
        with("exp", json!(NOW - 29)),
        with("nbf", json!(NOW + 29)),
        with("iat", json!(NOW + 29)),
        with("preferred_username", json!("Carol@ACME.test")),
    ] {
        assert_eq!(
            v.verify(&tok(c.clone()), DOMAIN, NOW).unwrap().local,
            "carol",
            "{c}"
        );
    }
}

#[test]
fn malformed_tokens() {
    let v = JwtVerifier::load(&settings(vec![hs("k", "secret")])).unwrap();
    // Signature first: a well-formed header with junk after it is a bad signature.
    assert!(
        v.verify("eyJhbGciOiJIUzI1NiJ9.%%%.sig", DOMAIN, NOW)
            .is_err()
    );
    for t in ["", "abc", "a.b", "a.b.c.d", "eyJ!.x.y"] {
        assert!(
            matches!(v.verify(t, DOMAIN, NOW), Err(TokenError::Malformed(_))),
            "{t:?}"
        );
    }
}

#[test]
fn jwks_file_keys_by_kid() {
    let mut s = settings(Vec::new());
    s.jwks_files = vec![fixture("jwks.json")];
    let v = JwtVerifier::load(&s).unwrap();
    assert_eq!(v.key_count(), 4);
    let cases = [
        (
            "rsa-jwks",
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(read("rsa.key").as_bytes()).unwrap(),
        ),
        (
            "ec-jwks",
            Algorithm::ES256,
            EncodingKey::from_ec_pem(read("p256.key").as_bytes()).unwrap(),
        ),
        (
            "ed-jwks",
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(read("ed25519.key").as_bytes()).unwrap(),
        ),
        (
            "oct-jwks",
            Algorithm::HS256,
            EncodingKey::from_secret(b"jwks-shared-secret-0123456789abcdef"),
        ),
    ];
    for (kid, alg, enc) in &cases {
        let t = sign(*alg, Some(kid), enc, &claims("dave"));
        assert_eq!(v.verify(&t, DOMAIN, NOW).unwrap().local, "dave", "{kid}");
    }
    // The RSA key's JWK says RS256: a PS256 token with its kid is refused.
    let t = sign(
        Algorithm::PS256,
        Some("rsa-jwks"),
        &cases[0].2,
        &claims("dave"),
    );
    assert!(matches!(
        v.verify(&t, DOMAIN, NOW),
        Err(TokenError::NoKeyForAlgorithm(_))
    ));
    // A different RSA key with the JWKS kid: bad signature.
    let other = EncodingKey::from_rsa_pem(read("rsa2.key").as_bytes()).unwrap();
    let t = sign(Algorithm::RS256, Some("rsa-jwks"), &other, &claims("dave"));
    assert_eq!(v.verify(&t, DOMAIN, NOW), Err(TokenError::BadSignature));
}

#[test]
fn settings_are_checked() {
    let bad = |keys: Vec<JwtKeySpec>| JwtVerifier::load(&settings(keys)).is_err();
    assert!(bad(vec![]));
    assert!(bad(vec![key(None, "HS256")]), "no key material");
    let mut k = hs("k", "s");
    k.alg = "none".into();
    assert!(bad(vec![k]));
    let mut k = hs("k", "s");
    k.public_key = Some("x".into());
    assert!(bad(vec![k]), "two sources");
    let mut k = key(None, "RS256");
    k.secret = Some("s".into());
    assert!(bad(vec![k]), "RSA with a secret");
    let mut k = key(None, "ES256");
    k.public_key = Some("not a pem".into());
    assert!(bad(vec![k]));
    let mut k = key(None, "ES256");
    k.public_key_file = Some(fixture("missing.pub"));
    assert!(bad(vec![k]));
    assert!(bad(vec![hs("k", "a"), hs("k", "b")]), "duplicate kid");
    let mut k = key(Some("f"), "HS512");
    k.secret_file = Some(fixture("README.md"));
    assert!(!bad(vec![k]));
}

#[test]
fn sasl_conditions_and_log_text_hold_no_secrets() {
    assert_eq!(
        TokenError::Expired.sasl_failure(),
        SaslFailure::CredentialsExpired
    );
    assert_eq!(
        TokenError::BadSignature.sasl_failure(),
        SaslFailure::NotAuthorized
    );
    assert_eq!(
        TokenError::Revoked.sasl_failure(),
        SaslFailure::NotAuthorized
    );
    assert_eq!(
        TokenError::Storage("x".into()).sasl_failure(),
        SaslFailure::TemporaryAuthFailure
    );
    for e in [
        TokenError::BadSignature,
        TokenError::UnknownKid("k".into()),
        TokenError::WrongAudience,
    ] {
        assert_eq!(e.client_text(), "invalid token");
    }
}

#[test]
fn jwt_shape_detection() {
    let enc = EncodingKey::from_secret(b"s");
    assert!(looks_like_jwt(&sign(
        Algorithm::HS256,
        None,
        &enc,
        &claims("a")
    )));
    for s in ["password", "a.b.c", "eyJ.b", "eyJ a.b.c", "hgt.a.x.y"] {
        assert!(!looks_like_jwt(s), "{s}");
    }
}

#[test]
fn issued_tokens_life_cycle() {
    let store = MemTokenStore::default();
    let alice = Account::new("alice", DOMAIN);
    let access = issued::mint(&store, "acme", &alice, TokenKind::Access, 3600, NOW).unwrap();
    let refresh = issued::mint(&store, "acme", &alice, TokenKind::Refresh, 86400, NOW).unwrap();
    assert!(issued::is_issued(&access.token) && !looks_like_jwt(&access.token));
    let v = issued::verify(&store, "acme", DOMAIN, &access.token, NOW + 10).unwrap();
    assert_eq!(
        (v.kind, v.account.clone()),
        (TokenKind::Access, alice.clone())
    );
    let v = issued::verify(&store, "acme", DOMAIN, &refresh.token, NOW + 10).unwrap();
    assert_eq!(v.kind, TokenKind::Refresh);
    // Expiry.
    assert_eq!(
        issued::verify(&store, "acme", DOMAIN, &access.token, NOW + 3600),
        Err(TokenError::Expired)
    );
    // Another tenant's key, another domain.
    assert_eq!(
        issued::verify(&store, "other", DOMAIN, &access.token, NOW),
        Err(TokenError::BadSignature)
    );
    assert!(matches!(
        issued::verify(&store, "acme", "b.test", &access.token, NOW),
        Err(TokenError::WrongDomain { .. })
    ));
    // Tampering.
    let mut t = access.token.clone();
    t.insert(12, 'x');
    assert!(issued::verify(&store, "acme", DOMAIN, &t, NOW).is_err());
    // Revoking one refresh token leaves the access token alone.
    let id = refresh.id.clone().unwrap();
    assert!(store.revoke_refresh(&alice, &id).unwrap());
    assert_eq!(
        issued::verify(&store, "acme", DOMAIN, &refresh.token, NOW),
        Err(TokenError::Revoked)
    );
    assert!(issued::verify(&store, "acme", DOMAIN, &access.token, NOW).is_ok());
    // Revoking everything kills access tokens at once; new ones work again.
    let refresh2 = issued::mint(&store, "acme", &alice, TokenKind::Refresh, 86400, NOW).unwrap();
    assert_eq!(store.revoke_all(&alice).unwrap(), 1);
    for t in [&access.token, &refresh2.token] {
        assert_eq!(
            issued::verify(&store, "acme", DOMAIN, t, NOW),
            Err(TokenError::Revoked)
        );
    }
    let fresh = issued::mint(&store, "acme", &alice, TokenKind::Access, 3600, NOW).unwrap();
    assert!(issued::verify(&store, "acme", DOMAIN, &fresh.token, NOW).is_ok());
    // Bob's tokens are not touched by Alice's revocation.
    let bob = Account::new("bob", DOMAIN);
    let b = issued::mint(&store, "acme", &bob, TokenKind::Access, 3600, NOW).unwrap();
    store.revoke_all(&alice).unwrap();
    assert!(issued::verify(&store, "acme", DOMAIN, &b.token, NOW).is_ok());
}
