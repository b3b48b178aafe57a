//! An authenticator built against a frozen copy of `heliograph:plugin@0.1.0`
//! (`wit/heliograph-plugin-0.1.0.wit`, never edited): proves that hosts serving a newer
//! 0.1.x version keep loading and calling components of the first release. It uses every
//! host interface of 0.1.0: the password comes from `host-config` (`password`), each
//! login is counted in `host-kv` (`logins`) and logged through `host-log`; the count is
//! returned as the `logins` attribute.

wit_bindgen::generate!({
    path: "wit/heliograph-plugin-0.1.0.wit",
    world: "authenticator-with-init",
});

use exports::heliograph::plugin::authentication::Guest;
use exports::heliograph::plugin::lifecycle::Guest as Lifecycle;
use heliograph::plugin::auth_types::{AuthFailure, AuthRequest, User};
use heliograph::plugin::types::{KeyValue, LogLevel};
use heliograph::plugin::{host_config, host_kv, host_log};

struct Legacy;

impl Guest for Legacy {
    fn authenticate(request: AuthRequest) -> Result<User, AuthFailure> {
        let Some(password) = host_config::get("password") else {
            return Err(AuthFailure::TemporaryFailure(
                "no password configured".into(),
            ));
        };
        if request.credential != password {
            return Err(AuthFailure::NotAuthorized);
        }
        let logins = host_kv::get("logins")
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        let _ = host_kv::set("logins", logins.to_string().as_bytes());
        host_log::log(
            LogLevel::Info,
            "legacy login",
            &[KeyValue {
                key: "user".into(),
                value: request.username.clone(),
            }],
        );
        Ok(User {
            username: request.username.to_lowercase(),
            display_name: None,
            roles: vec!["legacy".into()],
            expires_at: None,
            attributes: vec![KeyValue {
                key: "logins".into(),
                value: logins.to_string(),
            }],
        })
    }
}

impl Lifecycle for Legacy {
    fn init(config: String) -> Result<(), String> {
        if config.contains("\"password\"") {
            Ok(())
        } else {
            Err("`password` is required".into())
        }
    }
}

export!(Legacy);
