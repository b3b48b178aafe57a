//! {{name}}: a Heliograph authenticator (WIT world `authenticator`).
//!
//! Configuration: `{"users": {"alice": "secret"}}`. Plain passwords keep the example
//! short; store salted hashes in a real plugin (see heliograph's `plugins/allowlist`).

use heliograph_plugin_sdk::prelude::*;

pub struct {{Type}};

impl Authenticator for {{Type}} {
    fn authenticate(req: AuthRequest) -> AuthResult {
        let key = format!("users.{}", req.username);
        let Some(expected) = config::get(&key) else {
            return Err(AuthFailure::NotAuthorized);
        };
        if !req.connection.tls || req.credential != expected {
            return Err(AuthFailure::NotAuthorized);
        }
        log::info("login", &[("user", &req.username)]);
        Ok(User::new(req.username).role("member"))
    }

    fn init(_config: &str) -> Result<(), String> {
        // The configuration is readable here too: refuse one without users.
        if config::with_prefix("users").is_empty() {
            return Err("the configuration has no users".into());
        }
        Ok(())
    }
}

heliograph_plugin_sdk::authenticator!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;
    use heliograph_plugin_sdk::testing::FakeHost;

    #[test]
    fn alice_logs_in() {
        let host = FakeHost::new()
            .config_json(r#"{"users": {"alice": "secret"}}"#)
            .install();
        let user = {{Type}}::authenticate(AuthRequest::password("alice", "secret")).unwrap();
        assert_eq!(user.roles, ["member"]);
        assert_eq!(
            {{Type}}::authenticate(AuthRequest::password("alice", "nope")),
            Err(AuthFailure::NotAuthorized)
        );
        // `AuthRequest::password` is a login over TLS; `.without_tls()` makes it plain.
        assert_eq!(
            {{Type}}::authenticate(AuthRequest::password("alice", "secret").without_tls()),
            Err(AuthFailure::NotAuthorized)
        );
        assert_eq!(host.logs()[0].message, "login");
    }

    #[test]
    fn init_refuses_a_configuration_without_users() {
        let _host = FakeHost::new().config_json("{}").install();
        assert!({{Type}}::init("{}").is_err());
    }
}
