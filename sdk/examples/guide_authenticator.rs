//! The guide's authenticator (sdk/README.md, sections 2 and 3), compiled and tested by
//! `cargo test` (`tests/guide.rs` checks that every Rust block of the guide is in one of
//! these examples, verbatim).

use heliograph_plugin_sdk::prelude::*;

pub struct MyAuth;

impl Authenticator for MyAuth {
    fn authenticate(req: AuthRequest) -> AuthResult {
        // This example accepts encrypted connections only.
        if !req.connection.tls {
            return Err(AuthFailure::NotAuthorized);
        }
        let key = format!("users.{}", req.username);
        let Some(expected) = config::get(&key) else {
            return Err(AuthFailure::NotAuthorized);
        };
        if req.credential != expected {
            return Err(AuthFailure::NotAuthorized);
        }
        log::info("login", &[("user", &req.username)]);
        Ok(User::new(req.username).role("member"))
    }

    // Optional. Runs once at install; `config::get` works here as in every call.
    fn init(_config: &str) -> Result<(), String> {
        if config::with_prefix("users").is_empty() {
            return Err("no users configured".into());
        }
        Ok(())
    }
}

heliograph_plugin_sdk::authenticator!(MyAuth);

#[cfg(test)]
mod tests {
    use super::*;
    use heliograph_plugin_sdk::testing::FakeHost;

    #[test]
    fn alice_logs_in() {
        let host = FakeHost::new()
            .config_json(r#"{"users": {"alice": "secret"}}"#)
            .install();
        let user = MyAuth::authenticate(AuthRequest::password("alice", "secret")).unwrap();
        assert_eq!(user.roles, ["member"]);
        assert_eq!(host.logs()[0].message, "login");
        assert_eq!(
            MyAuth::authenticate(AuthRequest::password("alice", "nope")),
            Err(AuthFailure::NotAuthorized)
        );
        // AuthRequest::password is a login over TLS; without_tls() makes it a plain one.
        let plain = AuthRequest::password("alice", "secret").without_tls();
        assert_eq!(MyAuth::authenticate(plain), Err(AuthFailure::NotAuthorized));
        assert_eq!(MyAuth::init("{}"), Ok(()));
    }

    #[test]
    fn init_refuses_a_configuration_without_users() {
        FakeHost::new().config_json("{}").install();
        assert!(MyAuth::init("{}").is_err());
    }
}
