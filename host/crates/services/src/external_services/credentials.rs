//! Time-limited TURN credentials by the TURN REST API scheme (coturn's
//! `use-auth-secret`, eturnal, Janus): the username is `<expiry>:<user>` with the expiry
//! in Unix seconds, the password `base64(HMAC-SHA1(shared secret, username))`. The TURN
//! server recomputes the password from the username and refuses it once expired.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Credentials for one user of a restricted service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    pub username: String,
    pub password: String,
    /// When the TURN server stops accepting them.
    pub expires: SystemTime,
}

/// Credentials for `user`, valid from `now` for `ttl`, signed with `secret`.
pub fn issue(secret: &str, user: &str, ttl: Duration, now: SystemTime) -> TurnCredentials {
    let expiry = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(ttl)
        .as_secs();
    let username = format!("{expiry}:{user}");
    TurnCredentials {
        password: password(secret, &username),
        username,
        expires: UNIX_EPOCH + Duration::from_secs(expiry),
    }
}

/// `base64(HMAC-SHA1(secret, username))`.
pub fn password(secret: &str, username: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_carries_the_expiry_and_password_is_the_hmac() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let c = issue(
            "north",
            "alice@example.com",
            Duration::from_secs(86_400),
            now,
        );
        assert_eq!(c.username, "1700086400:alice@example.com");
        assert_eq!(c.expires, UNIX_EPOCH + Duration::from_secs(1_700_086_400));
        // RFC 2202 test case 2: HMAC-SHA1("Jefe", "what do ya want for nothing?") =
        // effcdf6ae5eb2fa2d27416d5f184df9c259a7c79.
        assert_eq!(
            password("Jefe", "what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
        assert_ne!(
            password("north", &c.username),
            password("south", &c.username)
        );
    }
}
