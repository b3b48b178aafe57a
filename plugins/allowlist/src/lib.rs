//! An allow-list / password-file authenticator for Heliograph.
//!
//! Configuration (all optional):
//!
//! ```json
//! {
//!   "users":         {"alice": "sha256$SALT$HEX"},   // HEX = sha256(SALT + password)
//!   "allow":         ["alice", "bob"],               // only these may log in
//!   "disabled":      ["carol"],                      // account-disabled
//!   "roles":         {"alice": "moderator,member"},
//!   "display_names": {"alice": "Alice Liddell"},
//!   "require_tls":   true,                           // default true
//!   "lowercase":     true,                           // canonical usernames, default true
//!   "policy":        "v1",                           // returned as attribute "policy"
//!   "seed_kv":       {"dave": "sha256$SALT$HEX"},    // written to the key-value store by init
//!   "registration":  true                            // allow XEP-0077 sign-up, default false
//! }
//! ```
//!
//! Key-value data (the plugin's own store): `user/NAME` = `sha256$SALT$HEX` adds password
//! users at runtime, `token/TOKEN` = `NAME` accepts a bearer token for NAME.
//!
//! In-band registration (`approve_registration`): refused unless `registration` is true;
//! then a name on the `allow` list (when there is one), not `disabled` and not already a
//! user is accepted, over TLS when `require_tls`, and its password is recorded as
//! `user/NAME` so that the new user logs in through this plugin.

use heliograph_plugin_sdk::prelude::*;
use sha2::{Digest, Sha256};

pub struct AllowList;

impl Authenticator for AllowList {
    fn authenticate(request: AuthRequest) -> AuthResult {
        if config::get_bool("require_tls", true) && !request.connection.tls {
            log::warn("refused: no TLS", &[("user", &request.username)]);
            return Err(AuthFailure::NotAuthorized);
        }
        let name = if config::get_bool("lowercase", true) {
            request.username.to_lowercase()
        } else {
            request.username.clone()
        };
        let allow = config::get_list("allow");
        if !allow.is_empty() && !allow.contains(&name) {
            return Err(AuthFailure::NotAuthorized);
        }
        let verified = match request.mechanism {
            Mechanism::Password => {
                let stored = match config::get(&format!("users.{name}")) {
                    Some(hash) => Some(hash),
                    None => kv::get_string(&format!("user/{name}"))
                        .map_err(|e| AuthFailure::temporary(e.to_string()))?,
                };
                stored.is_some_and(|hash| verify(&hash, &request.credential))
            }
            Mechanism::Token => kv::get_string(&format!("token/{}", request.credential))
                .map_err(|e| AuthFailure::temporary(e.to_string()))?
                .is_some_and(|owner| owner == name),
        };
        if !verified {
            return Err(AuthFailure::NotAuthorized);
        }
        if config::get_list("disabled").contains(&name) {
            return Err(AuthFailure::AccountDisabled);
        }
        let mut user = User::new(name.clone());
        if let Some(roles) = config::get(&format!("roles.{name}")) {
            for role in roles.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                user = user.role(role);
            }
        }
        if let Some(display) = config::get(&format!("display_names.{name}")) {
            user = user.display_name(display);
        }
        if let Some(policy) = config::get("policy") {
            user = user.attribute("policy", policy);
        }
        Ok(user)
    }

    fn init(_config: &str) -> Result<(), String> {
        for (name, hash) in config::with_prefix("users") {
            parse(&hash).ok_or_else(|| format!("users.{name}: expected sha256$SALT$HEX"))?;
        }
        for (name, hash) in config::with_prefix("seed_kv") {
            parse(&hash).ok_or_else(|| format!("seed_kv.{name}: expected sha256$SALT$HEX"))?;
            kv::set(&format!("user/{name}"), hash).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn approve_registration(request: RegistrationRequest) -> Result<(), String> {
        if !config::get_bool("registration", false) {
            return Err("sign-up is closed on this domain".into());
        }
        if config::get_bool("require_tls", true) && !request.tls {
            return Err("sign-up needs TLS".into());
        }
        let name = request.username.to_lowercase();
        let allow = config::get_list("allow");
        if (!allow.is_empty() && !allow.contains(&name))
            || config::get_list("disabled").contains(&name)
        {
            return Err("this name may not be registered".into());
        }
        let key = format!("user/{name}");
        let taken = config::get(&format!("users.{name}")).is_some()
            || kv::get_string(&key).map_err(|e| e.to_string())?.is_some();
        if taken {
            return Err("this name is taken".into());
        }
        kv::set(&key, hash_password(&name, &request.password)).map_err(|e| e.to_string())?;
        log::info("account registered", &[("user", &name)]);
        Ok(())
    }
}

heliograph_plugin_sdk::authenticator!(AllowList);

/// `sha256$SALT$HEX` -> (salt, hex).
fn parse(hash: &str) -> Option<(&str, &str)> {
    let mut parts = hash.split('$');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("sha256"), Some(salt), Some(hex), None)
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Some((salt, hex))
        }
        _ => None,
    }
}

/// The stored form of `password` with `salt`.
pub fn hash_password(salt: &str, password: &str) -> String {
    let digest = Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(password.as_bytes())
        .finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256${salt}${hex}")
}

fn verify(stored: &str, password: &str) -> bool {
    let Some((salt, _)) = parse(stored) else {
        return false;
    };
    let computed = hash_password(salt, password);
    // Constant-time comparison of equal-length strings.
    computed.len() == stored.len()
        && computed
            .bytes()
            .zip(stored.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use heliograph_plugin_sdk::testing::FakeHost;

    fn host() -> FakeHost {
        let config = format!(
            r#"{{"users": {{"alice": "{}"}}, "disabled": ["carol"], "roles": {{"alice": "moderator, member"}},
                "policy": "v1"}}"#,
            hash_password("s1", "wonderland")
        );
        FakeHost::new()
            .config_json(&config)
            .kv("user/carol", hash_password("s2", "pw"))
            .kv("token/tok-123", "bob")
    }

    #[test]
    fn password_users_from_config_and_kv() {
        let _h = host().install();
        let user = AllowList::authenticate(AuthRequest::password("Alice", "wonderland")).unwrap();
        assert_eq!(user.username, "alice");
        assert_eq!(user.roles, vec!["moderator", "member"]);
        assert_eq!(user.attributes, vec![("policy".into(), "v1".into())]);
        assert_eq!(
            AllowList::authenticate(AuthRequest::password("alice", "wrong")),
            Err(AuthFailure::NotAuthorized)
        );
        assert_eq!(
            AllowList::authenticate(AuthRequest::password("carol", "pw")),
            Err(AuthFailure::AccountDisabled)
        );
    }

    #[test]
    fn tokens_and_tls() {
        let _h = host().install();
        assert!(AllowList::authenticate(AuthRequest::token("bob", "tok-123")).is_ok());
        assert!(AllowList::authenticate(AuthRequest::token("alice", "tok-123")).is_err());
        assert_eq!(
            AllowList::authenticate(AuthRequest::password("alice", "wonderland").without_tls()),
            Err(AuthFailure::NotAuthorized)
        );
    }

    #[test]
    fn init_checks_hashes_and_seeds_kv() {
        let h = FakeHost::new()
            .config_json(&format!(
                r#"{{"seed_kv": {{"dave": "{}"}}}}"#,
                hash_password("x", "y")
            ))
            .install();
        AllowList::init("").unwrap();
        assert!(h.kv_value("user/dave").is_some());
        let _h = FakeHost::new()
            .config_json(r#"{"users": {"eve": "plain"}}"#)
            .install();
        assert!(AllowList::init("").unwrap_err().contains("users.eve"));
    }

    fn sign_up(username: &str, password: &str) -> RegistrationRequest {
        RegistrationRequest {
            tenant: "test".into(),
            domain: "example.com".into(),
            username: username.into(),
            password: password.into(),
            client_address: Some("127.0.0.1".into()),
            tls: true,
        }
    }

    #[test]
    fn registration_is_closed_unless_configured() {
        let _h = host().install();
        assert!(AllowList::approve_registration(sign_up("zoe", "pw")).is_err());
    }

    #[test]
    fn registration_records_the_password_and_the_user_logs_in() {
        let h = FakeHost::new()
            .config_json(r#"{"registration": true, "disabled": ["carol"], "users": {"alice": "sha256$s$0000000000000000000000000000000000000000000000000000000000000000"}}"#)
            .install();
        AllowList::approve_registration(sign_up("zoe", "secret")).unwrap();
        assert!(h.kv_value("user/zoe").is_some());
        assert!(AllowList::authenticate(AuthRequest::password("zoe", "secret")).is_ok());
        // Taken (in config or already registered), disabled, or without TLS: refused.
        assert!(AllowList::approve_registration(sign_up("zoe", "other")).is_err());
        assert!(AllowList::approve_registration(sign_up("alice", "x")).is_err());
        assert!(AllowList::approve_registration(sign_up("carol", "x")).is_err());
        let mut plain = sign_up("yann", "x");
        plain.tls = false;
        assert!(AllowList::approve_registration(plain).is_err());
    }
}
