//! Write [Heliograph](../README.md) plugins in Rust: WebAssembly components for the
//! `wasm32-wasip2` target, built on `wit-bindgen` and the WIT package
//! `heliograph:plugin@0.1.0` (`wit/` in the repository).
//!
//! An authenticator is a type implementing [`Authenticator`], exported with
//! [`authenticator!`]:
//!
//! ```
//! use heliograph_plugin_sdk::prelude::*;
//!
//! struct OnlyAlice;
//!
//! impl Authenticator for OnlyAlice {
//!     fn authenticate(request: AuthRequest) -> AuthResult {
//!         let expected = config::get("password").ok_or(AuthFailure::temporary("no password"))?;
//!         if request.username == "alice" && request.credential == expected {
//!             log::info("login", &[("user", &request.username)]);
//!             Ok(User::new("alice").role("member"))
//!         } else {
//!             Err(AuthFailure::NotAuthorized)
//!         }
//!     }
//! }
//!
//! heliograph_plugin_sdk::authenticator!(OnlyAlice);
//! ```
//!
//! The host API is in [`log`], [`kv`] and [`config`]. On the native target (your unit
//! tests) those talk to an in-memory [`testing::FakeHost`] instead of the server.

mod types;

pub mod config;
pub mod kv;
pub mod log;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __guest;

pub use types::{AuthFailure, AuthRequest, AuthResult, Connection, Mechanism, Transport, User};

/// The version of the WIT package this SDK builds against.
pub const WIT_VERSION: &str = "0.1.0";

/// A plugin of the `authenticator` world. Each call runs in a fresh instance, so keep
/// state in [`kv`], not in statics.
pub trait Authenticator {
    /// Verifies one credential.
    fn authenticate(request: AuthRequest) -> AuthResult;

    /// Called once when the plugin is installed, with its configuration (JSON text).
    /// Return an error to refuse the configuration: the install fails with your message
    /// and the previous version keeps serving. The default accepts anything.
    fn init(config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }
}

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::{
        AuthFailure, AuthRequest, AuthResult, Authenticator, Connection, Mechanism, Transport,
        User, config, kv, log,
    };
}

/// Exports a type implementing [`Authenticator`] as the component's authenticator (and
/// its `init` as `lifecycle.init`). Use it once, at the crate root. On native targets it
/// expands to nothing, so the same crate can be unit-tested with [`testing::FakeHost`].
#[macro_export]
macro_rules! authenticator {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __HeliographExport;
            impl $crate::__guest::AuthenticationGuest for __HeliographExport {
                fn authenticate(
                    request: $crate::__guest::WitAuthRequest,
                ) -> ::core::result::Result<$crate::__guest::WitUser, $crate::__guest::WitAuthFailure>
                {
                    $crate::__guest::authenticate::<$ty>(request)
                }
            }
            impl $crate::__guest::LifecycleGuest for __HeliographExport {
                fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                    <$ty as $crate::Authenticator>::init(&config)
                }
            }
            $crate::__guest::export!(__HeliographExport with_types_in $crate::__guest::bindings);
        };
    };
}
