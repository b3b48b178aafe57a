//! Multi-user chat (XEP-0045): each tenant's MUC service, where a room is a meeting.
//!
//! - [`service`]: the services (one per tenant domain, `conference.<domain>`), room
//!   lifecycle and persistence; stanza dispatch is in `dispatch`, the admin API's
//!   operations in [`manage`].
//! - [`room`]: a room's state and the presences describing occupants; [`join`],
//!   [`message`], [`moderation`] and [`owner`] are what occupants, moderators and owners
//!   do to it; [`voice`] is voice requests; [`history`] is the discussion history,
//!   read back from the room's archive when a persistent room is loaded
//!   ([`history_archive`]).
//! - [`config`] and [`dataform`]: room configuration and its XEP-0004 form.
//! - [`cluster`]: rooms placed on one node of a cluster, stanzas forwarded there, rooms
//!   moved (332 and rejoin) when the live nodes change.
//! - [`disco`]: service discovery of the service and its rooms.
//! - [`settings`]: the tenant's MUC settings.
//! - [`types`]: roles and affiliations, shared by the room logic and the room policy.
//! - [`policy`]: the tenant's room-policy decisions (a Wasm plugin, or the defaults).
//!
//! [`Muc`] is the feature: it serves the MUC domains and lists them in disco#items.

pub mod cluster;
pub mod config;
pub mod dataform;
pub mod disco;
mod dispatch;
pub mod history;
pub mod history_archive;
pub mod join;
pub mod manage;
pub mod message;
pub mod moderation;
pub mod ns;
pub mod owner;
pub mod policy;
pub mod room;
pub mod service;
pub use heliograph_tenants::muc_settings as settings;
pub use heliograph_xmpp::muc as types;
pub mod voice;

#[cfg(test)]
mod tests;

pub use manage::{MucError, OccupantView, RoomDetails, RoomSummary};
pub use service::{MucService, MucServices};

/// The `muc` feature over every tenant's services.
pub struct Muc(pub std::sync::Arc<MucServices>);

impl crate::hooks::Feature for Muc {
    fn name(&self) -> &'static str {
        "muc"
    }

    fn register(self: std::sync::Arc<Self>, r: &mut crate::hooks::Registrar<'_>) {
        r.hosted(std::sync::Arc::new(service::MucResolver(self.0.clone())));
        let services = self.0.clone();
        r.disco_items(crate::hooks::Address::Host, move |core, domain| {
            disco::service_item(&services, core, domain)
                .into_iter()
                .collect()
        });
    }
}

/// A fresh stanza id for stanzas the service originates.
pub fn new_id() -> String {
    format!("muc-{:016x}", rand::random::<u64>())
}
