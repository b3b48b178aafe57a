//! The guest side (wasm32 only): wit-bindgen bindings for the
//! `authenticator-with-registration` world, the backend of [`crate::log`], [`crate::kv`] and [`crate::config`], and the
//! conversions used by [`crate::authenticator!`]. Not a public API.

pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "authenticator-with-registration",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "heliograph_plugin_sdk::__guest::bindings",
    });
}

pub use bindings::export;
pub use bindings::exports::heliograph::plugin::authentication::Guest as AuthenticationGuest;
pub use bindings::exports::heliograph::plugin::lifecycle::Guest as LifecycleGuest;
pub use bindings::exports::heliograph::plugin::registration::Guest as RegistrationGuest;
pub use bindings::heliograph::plugin::auth_types::{
    AuthFailure as WitAuthFailure, AuthRequest as WitAuthRequest, User as WitUser,
};

use bindings::heliograph::plugin::{auth_types as wit, host_config, host_kv, host_log, types};

use crate::kv::KvError;
use crate::log::Level;
use crate::{AuthFailure, AuthRequest, Authenticator, Connection, Mechanism, Transport};

/// Converts the request, calls the plugin, converts the answer.
pub fn authenticate<A: Authenticator>(request: WitAuthRequest) -> Result<WitUser, WitAuthFailure> {
    let request = AuthRequest {
        tenant: request.tenant,
        domain: request.domain,
        mechanism: match request.mechanism {
            wit::Mechanism::Password => Mechanism::Password,
            wit::Mechanism::Token => Mechanism::Token,
        },
        username: request.username,
        credential: request.credential,
        connection: Connection {
            client_address: request.connection.client_address,
            transport: match request.connection.transport {
                wit::Transport::Tcp => Transport::Tcp,
                wit::Transport::Bosh => Transport::Bosh,
                wit::Transport::Websocket => Transport::Websocket,
            },
            tls: request.connection.tls,
        },
    };
    match A::authenticate(request) {
        Ok(user) => Ok(WitUser {
            username: user.username,
            display_name: user.display_name,
            roles: user.roles,
            expires_at: user.expires_at,
            attributes: user
                .attributes
                .into_iter()
                .map(|(key, value)| types::KeyValue { key, value })
                .collect(),
        }),
        Err(AuthFailure::NotAuthorized) => Err(wit::AuthFailure::NotAuthorized),
        Err(AuthFailure::AccountDisabled) => Err(wit::AuthFailure::AccountDisabled),
        Err(AuthFailure::TemporaryFailure(r)) => Err(wit::AuthFailure::TemporaryFailure(r)),
    }
}

/// The host API through the component's imports.
pub mod backend {
    use super::*;

    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            Level::Trace => types::LogLevel::Trace,
            Level::Debug => types::LogLevel::Debug,
            Level::Info => types::LogLevel::Info,
            Level::Warn => types::LogLevel::Warn,
            Level::Error => types::LogLevel::Error,
        };
        let fields: Vec<types::KeyValue> = fields
            .iter()
            .map(|(k, v)| types::KeyValue {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect();
        host_log::log(level, message, &fields);
    }

    fn kv_error(e: host_kv::KvError) -> KvError {
        match e {
            host_kv::KvError::InvalidKey(why) => KvError::InvalidKey(why),
            host_kv::KvError::ValueTooLarge(limit) => KvError::ValueTooLarge(limit),
            host_kv::KvError::QuotaExceeded => KvError::QuotaExceeded,
            host_kv::KvError::CallBudgetExhausted => KvError::CallBudgetExhausted,
            host_kv::KvError::Unavailable(why) => KvError::Unavailable(why),
        }
    }

    pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        host_kv::get(key).map_err(kv_error)
    }

    pub fn kv_set(key: &str, value: &[u8]) -> Result<(), KvError> {
        host_kv::set(key, value).map_err(kv_error)
    }

    pub fn kv_delete(key: &str) -> Result<bool, KvError> {
        host_kv::delete(key).map_err(kv_error)
    }

    pub fn kv_list_keys(prefix: &str, limit: u32) -> Result<Vec<String>, KvError> {
        host_kv::list_keys(prefix, limit).map_err(kv_error)
    }

    pub fn config_json() -> String {
        host_config::json()
    }

    pub fn config_get(key: &str) -> Option<String> {
        host_config::get(key)
    }

    pub fn config_entries() -> Vec<(String, String)> {
        host_config::entries()
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect()
    }
}
