//! Write [Heliograph](../README.md) plugins in Rust: WebAssembly components for the
//! `wasm32-wasip2` target, built on `wit-bindgen` and the WIT package
//! `heliograph:plugin` (`wit/` in the repository; [`WIT_VERSION`] says which version).
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
//! A meeting-room policy implements [`RoomPolicy`] (every decision has a permissive
//! default) and is exported with [`room_policy!`]:
//!
//! ```
//! use heliograph_plugin_sdk::prelude::*;
//!
//! struct ShortMessages;
//!
//! impl RoomPolicy for ShortMessages {
//!     fn message(_room: Room, _occupant: Occupant, body: String) -> MessageDecision {
//!         if body.len() > 500 {
//!             MessageDecision::deny("messages are limited to 500 bytes")
//!         } else {
//!             MessageDecision::Allow
//!         }
//!     }
//! }
//!
//! heliograph_plugin_sdk::room_policy!(ShortMessages);
//! ```
//!
//! A Wasm-hosted component (a bot, a call router on a tenant's subdomain) implements
//! [`Component`] and is exported with [`component!`]; [`xml`] parses the stanzas it gets
//! and builds the ones it sends:
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
mod room;
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
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __guest_component;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __guest_room;

pub use component::{Component, HandleResult, Stanza, StanzaKind};

pub use room::{
    Affiliation, Decision, JoinDecision, MessageDecision, Occupant, Role, Room, RoomUser,
};
pub use types::{
    AuthFailure, AuthRequest, AuthResult, Connection, Mechanism, RegistrationRequest, Transport,
    User,
};

/// The version of the WIT package this SDK builds against (read from `wit/` when the
/// SDK is built).
pub const WIT_VERSION: &str = env!("HELIOGRAPH_WIT_VERSION");

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

    /// Whether an in-band registration (XEP-0077) may create the account, on a tenant
    /// that turned registration on (`profiles.registration`). Return `Err(reason)` to
    /// refuse it: the client gets `not-allowed` with the reason. To let the new user log
    /// in, record the password where [`authenticate`](Self::authenticate) finds it (the
    /// [`kv`] store). The default refuses every registration, which is what the server
    /// does for authenticators built without this method (SDK before WIT 0.1.2).
    fn approve_registration(request: RegistrationRequest) -> Result<(), String> {
        let _ = request;
        Err("this domain's accounts are managed by its authenticator".into())
    }
}

/// A plugin of the `room-policy` world: the tenant's rules for meeting rooms (XEP-0045
/// multi-user chat). The server applies XEP-0045's own rules first (bans, members-only,
/// passwords, ...) and asks the policy only about what they allow. Every method has a
/// default that allows; implement the decisions you care about. Each call runs in a
/// fresh instance, so keep state in [`kv`], not in statics. If a call fails (panic,
/// deadline, memory cap) the action is refused unless the tenant opted into failing open.
pub trait RoomPolicy {
    /// May `creator` create `room` (by joining it first)?
    fn create_room(room: Room, creator: RoomUser) -> Decision {
        let _ = (room, creator);
        Decision::Allow
    }

    /// May `occupant` join, and with which role and affiliation? `occupant.role` and
    /// `occupant.affiliation` are what XEP-0045's rules would give.
    fn join(room: Room, occupant: Occupant) -> JoinDecision {
        let _ = (room, occupant);
        JoinDecision::Default
    }

    /// May `occupant` send this groupchat message, and with which body?
    fn message(room: Room, occupant: Occupant, body: String) -> MessageDecision {
        let _ = (room, occupant, body);
        MessageDecision::Allow
    }

    /// May `actor` (an owner) set the room configuration to `new_config`?
    fn configure(room: Room, actor: RoomUser, new_config: Vec<(String, String)>) -> Decision {
        let _ = (room, actor, new_config);
        Decision::Allow
    }

    /// May `occupant` change its nickname to `new_nick`?
    fn change_nick(room: Room, occupant: Occupant, new_nick: String) -> Decision {
        let _ = (room, occupant, new_nick);
        Decision::Allow
    }

    /// Called once when the plugin is installed, with its configuration (JSON text);
    /// an error refuses the install (see [`Authenticator::init`]).
    fn init(config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }
}

/// Everything a plugin usually needs.
pub mod prelude {
    pub use crate::xml::{self, Element};
    pub use crate::{
        Affiliation, AuthFailure, AuthRequest, AuthResult, Authenticator, Component, Connection,
        Decision, HandleResult, JoinDecision, Mechanism, MessageDecision, Occupant,
        RegistrationRequest, Role, Room, RoomPolicy, RoomUser, Stanza, StanzaKind, Transport, User,
        config, kv, log,
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
            impl $crate::__guest::RegistrationGuest for __HeliographExport {
                fn approve(
                    tenant: ::std::string::String,
                    domain: ::std::string::String,
                    username: ::std::string::String,
                    password: ::std::string::String,
                    client_address: ::core::option::Option<::std::string::String>,
                    tls: bool,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    <$ty as $crate::Authenticator>::approve_registration($crate::RegistrationRequest {
                        tenant,
                        domain,
                        username,
                        password,
                        client_address,
                        tls,
                    })
                }
            }
            $crate::__guest::export!(__HeliographExport with_types_in $crate::__guest::bindings);
        };
    };
}

/// Exports a type implementing [`RoomPolicy`] as the component's room policy (and its
/// `init` as `lifecycle.init`). Use it once, at the crate root, instead of
/// [`authenticator!`]: a component is one kind of plugin. On native targets it expands to
/// nothing, so the crate can be unit-tested by calling the trait's methods directly.
#[macro_export]
macro_rules! room_policy {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__guest_room as __g;
            struct __HeliographExport;
            impl __g::RoomDecisionsGuest for __HeliographExport {
                fn create_room(room: __g::WitRoom, creator: __g::WitUser) -> __g::WitDecision {
                    __g::create_room::<$ty>(room, creator)
                }
                fn join(room: __g::WitRoom, occupant: __g::WitOccupant) -> __g::WitJoinDecision {
                    __g::join::<$ty>(room, occupant)
                }
                fn message(
                    room: __g::WitRoom,
                    occupant: __g::WitOccupant,
                    body: ::std::string::String,
                ) -> __g::WitMessageDecision {
                    __g::message::<$ty>(room, occupant, body)
                }
                fn configure(
                    room: __g::WitRoom,
                    actor: __g::WitUser,
                    new_config: ::std::vec::Vec<__g::WitKeyValue>,
                ) -> __g::WitDecision {
                    __g::configure::<$ty>(room, actor, new_config)
                }
                fn change_nick(
                    room: __g::WitRoom,
                    occupant: __g::WitOccupant,
                    new_nick: ::std::string::String,
                ) -> __g::WitDecision {
                    __g::change_nick::<$ty>(room, occupant, new_nick)
                }
            }
            impl __g::LifecycleGuest for __HeliographExport {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    <$ty as $crate::RoomPolicy>::init(&config)
                }
            }
    __g::export!(__HeliographExport with_types_in __g::bindings);
        };
    };
}

/// Exports a type implementing [`Component`] as the component's stanza handler (and its
/// `init` as `lifecycle.init`). Use it once, at the crate root, instead of the other
/// kinds' macros: a component is one kind of plugin. On native targets it expands to
/// nothing, so the crate can be unit-tested with [`testing::FakeHost`].
#[macro_export]
macro_rules! component {
    ($ty:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__guest_component as __g;
            struct __HeliographExport;
            impl __g::StanzaHandlerGuest for __HeliographExport {
                fn handle(
                    stanza: __g::WitStanza,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<::std::string::String>,
                    ::std::string::String,
                > {
                    <$ty as $crate::Component>::handle(__g::stanza(stanza))
                }
            }
            impl __g::LifecycleGuest for __HeliographExport {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    <$ty as $crate::Component>::init(&config)
                }
            }
    __g::export!(__HeliographExport with_types_in __g::bindings);
        };
    };
}
