//! JWTs for the `jwt` login mode: HS256 tokens for the load accounts, minted before the
//! run (so minting costs nothing during the measurement) with the secret the server's
//! tenant is configured with.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A compact HS256 JWT with `sub` = `user`, valid for `ttl` seconds from now.
pub fn mint(secret: &str, kid: Option<&str>, user: &str, ttl: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = match kid {
        Some(k) => serde_json::json!({ "alg": "HS256", "typ": "JWT", "kid": k }),
        None => serde_json::json!({ "alg": "HS256", "typ": "JWT" }),
    };
    let claims = serde_json::json!({ "sub": user, "iat": now, "exp": now + ttl });
    let signing_input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        B64URL.encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn mints_a_three_part_token() {
        let t = super::mint("s", Some("k"), "load0", 60);
        assert_eq!(t.split('.').count(), 3);
        assert!(t.starts_with("eyJ"));
    }
}
