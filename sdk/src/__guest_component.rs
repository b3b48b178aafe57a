//! The guest side of the component world (wasm32 only): wit-bindgen bindings for
//! `component-with-init` (generated in their own crate, see there) and the conversion used
//! by [`crate::component!`]. Not a public API.

pub use heliograph_plugin_sdk_component_bindings as bindings;

pub use bindings::export;
pub use bindings::exports::heliograph::plugin::lifecycle::Guest as LifecycleGuest;
pub use bindings::exports::heliograph::plugin::stanza_handler::Guest as StanzaHandlerGuest;
pub use bindings::heliograph::plugin::component_types::Stanza as WitStanza;

use bindings::heliograph::plugin::component_types::StanzaKind as K;

/// Converts a stanza from the host.
pub fn stanza(s: WitStanza) -> crate::Stanza {
    crate::Stanza {
        kind: match s.kind {
            K::Message => crate::StanzaKind::Message,
            K::Presence => crate::StanzaKind::Presence,
            K::Iq => crate::StanzaKind::Iq,
        },
        from: s.from,
        to: s.to,
        stanza_type: s.type_,
        id: s.id,
        domain: s.domain,
        xml: s.xml,
    }
}
