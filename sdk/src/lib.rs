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
//! A Wasm-hosted component (a bot, a call router on a tenant's subdomain) is a type
//! implementing [`Component`], exported with [`component!`]; [`xml`] parses the stanzas
//! it gets and builds the ones it sends:
//!
//! ```
//! use heliograph_plugin_sdk::prelude::*;
//!
//! struct Hello;
//!
//! impl Component for Hello {
//!     fn handle(stanza: Stanza) -> HandleResult {
//!         if stanza.kind != StanzaKind::Message {
//!             return Ok(vec![]);
//!         }
//!         let reply = Element::new("message", xml::CLIENT)
//!             .attr("from", &stanza.to)
//!             .attr("to", &stanza.from)
//!             .attr("type", "chat")
//!             .child(Element::new("body", xml::CLIENT).text("hello"));
//!         Ok(vec![reply.to_xml()])
//!     }
//! }
//!
//! heliograph_plugin_sdk::component!(Hello);
//! ```
//!
//! The host API is in [`log`], [`kv`] and [`config`]. On the native target (your unit
//! tests) those talk to an in-memory [`testing::FakeHost`] instead of the server.

mod component;
mod types;

pub mod config;
pub mod kv;
pub mod log;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod xml;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __guest;

pub use component::{Component, HandleResult, Stanza, StanzaKind};
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
    pub use crate::xml::{self, Element};
    pub use crate::{
        AuthFailure, AuthRequest, AuthResult, Authenticator, Component, Connection, HandleResult,
        Mechanism, Stanza, StanzaKind, Transport, User, config, kv, log,
    };
}

/// Exports a type implementing [`Authenticator`] as the component's authenticator (and
/// its `init` as `lifecycle.init`). Use it once, at the crate root. On native targets it
/// expands to nothing, so the same crate can be unit-tested with [`testing::FakeHost`].
#[macro_export]
macro_rules! authenticator {
    ($ty:ty) => {
        $crate::plugin!(authenticator = $ty, component = $crate::NotAComponent);
    };
}

/// Exports a type implementing [`Component`] as the component's stanza handler (and its
/// `init` as `lifecycle.init`). Use it once, at the crate root; on native targets it
/// expands to nothing.
#[macro_export]
macro_rules! component {
    ($ty:ty) => {
        $crate::plugin!(authenticator = $crate::NotAnAuthenticator, component = $ty);
    };
}

/// Exports one type per world: `plugin!(authenticator = A, component = C)`. The host
/// calls only the world a slot was installed as; [`authenticator!`] and [`component!`]
/// fill the other one with a refusal. `init` runs `A::init`, then `C::init`.
#[macro_export]
macro_rules! plugin {
    (authenticator = $auth:ty, component = $comp:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __HeliographExport;
            impl $crate::__guest::AuthenticationGuest for __HeliographExport {
                fn authenticate(
                    request: $crate::__guest::WitAuthRequest,
                ) -> ::core::result::Result<$crate::__guest::WitUser, $crate::__guest::WitAuthFailure>
                {
                    $crate::__guest::authenticate::<$auth>(request)
                }
            }
            impl $crate::__guest::StanzaHandlerGuest for __HeliographExport {
                fn handle(
                    stanza: $crate::__guest::WitStanza,
                ) -> ::core::result::Result<::std::vec::Vec<::std::string::String>, ::std::string::String> {
                    <$comp as $crate::Component>::handle($crate::__guest::stanza(stanza))
                }
            }
            impl $crate::__guest::LifecycleGuest for __HeliographExport {
                fn init(config: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                    <$auth as $crate::Authenticator>::init(&config)?;
                    <$comp as $crate::Component>::init(&config)
                }
            }
            $crate::__guest::export!(__HeliographExport with_types_in $crate::__guest::bindings);
        };
    };
}

/// The component side of a plugin that is only an authenticator: refuses every stanza.
pub struct NotAComponent;

impl Component for NotAComponent {
    fn handle(_: Stanza) -> HandleResult {
        Err("this plugin is not a component".into())
    }
}

/// The authenticator side of a plugin that is only a component: fails every login.
pub struct NotAnAuthenticator;

impl Authenticator for NotAnAuthenticator {
    fn authenticate(_: AuthRequest) -> AuthResult {
        Err(AuthFailure::TemporaryFailure(
            "this plugin is not an authenticator".into(),
        ))
    }
}
