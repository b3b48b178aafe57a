//! The server's features, one module each, in the spirit of Prosody's modules. Each is a
//! [`Feature`] that registers what it handles with the core's hook registry; none is
//! called by the core directly, and each can be switched off per tenant by its name.
//!
//! | feature | what | module |
//! | --- | --- | --- |
//! | `disco` | XEP-0030 service discovery of the server and accounts | [`disco`] |
//! | `ping` | XEP-0199 ping of the server | [`ping`] |
//! | `version` | XEP-0092 software version | [`version`] |
//! | `time` | XEP-0202 entity time | [`time`] |
//! | `roster` | RFC 6121 roster, XEP-0237 versioning | [`roster`] |
//! | `presence` | RFC 6121 presence and subscriptions | [`presence`] |
//! | `blocking` | XEP-0191 blocking command, and the filter that enforces it | [`blocking`] |
//! | `calls` | who may ring whom (XEP-0353, Jingle): the tenant's call policy | [`calls`] |
//! | `carbons` | XEP-0280 message carbons | [`carbons`] |
//! | `mam` | XEP-0313 message archive, XEP-0359 stanza ids, XEP-0424 retraction | [`mam`] |
//! | `pep` | XEP-0163 personal eventing: avatars, nicknames, bookmarks, OMEMO; XEP-0398 | [`pep`] |
//! | `push` | XEP-0357 push notifications to app servers | [`push`] |
//! | `offline` | XEP-0160 offline messages | [`offline`] |
//! | `external-services` | XEP-0215 STUN/TURN discovery with TURN REST API credentials | [`external_services`] |
//! | `token-auth` | MongooseIM-style access and refresh token requests | [`token_auth`] |
//! | `muc` | XEP-0045 multi-user chat (meeting rooms) | [`muc`] |
//! | `components` | XEP-0114 external and Wasm-hosted components | [`components`] |
//! | `vcard` | XEP-0054 vCard-temp, XEP-0153 photo hashes in presence | [`vcard`] |
//! | `private` | XEP-0049 private XML storage | [`private`] |
//! | `last` | XEP-0012 last activity of contacts and the server's uptime | [`last_activity`] |
//! | `register` | XEP-0077 password change and account removal by the user | [`register`] |
//! | `adhoc` | XEP-0050 ad-hoc commands for the tenant's admins | [`adhoc`] |
//! | `upload` | XEP-0363 HTTP file upload slots at `upload.<domain>` | [`upload`] |
//!
//! [`Services`] builds them all and keeps the handles the control layer needs (rooms,
//! component connections). Adding a feature: write its module with a `Feature` impl and
//! add it to [`Services::features`].

pub mod adhoc;
pub mod blocking;
pub mod calls;
pub mod carbons;
pub mod components;
pub mod disco;
pub mod external_services;
pub mod last_activity;
pub mod mam;
pub mod muc;
pub mod offline;
pub mod pep;
pub mod ping;
pub mod presence;
pub mod private;
pub mod push;
pub mod register;
pub mod roster;
pub mod time;
pub mod token_auth;
pub mod upload;
pub mod vcard;
pub mod version;

#[cfg(test)]
mod route_tests;
#[cfg(test)]
mod testing;

use std::sync::Arc;

use heliograph_core::hooks::Feature;

// The layers below, under the names the code uses.
#[cfg(test)]
use heliograph_auth::sasl;
use heliograph_auth::tokens;
#[cfg(test)]
use heliograph_config as config;
use heliograph_core::{hooks, pipeline, router, session};
use heliograph_plugins as plugins;
use heliograph_storage as storage;
use heliograph_tenants as tenants;
use heliograph_xml as xml;
use heliograph_xmpp::stanza;

/// Every feature of the server, with the state the control layer reaches.
pub struct Services {
    /// Every tenant's MUC services (the admin API's room operations).
    pub muc: Arc<muc::MucServices>,
    /// Live XEP-0114 component connections (closed when a tenant changes).
    pub components: Arc<components::Connections>,
    /// Cached block lists.
    pub blocking: Arc<blocking::Blocking>,
    /// The message archive (its writer; room archives use it too).
    pub mam: Arc<mam::Mam>,
    /// Personal eventing: the caps cache and the owners' write locks.
    pub pep: Arc<pep::Pep>,
    /// XEP-0215 subscribers (told when a tenant's services change).
    pub external_services: Arc<external_services::ExternalServices>,
}

impl Default for Services {
    fn default() -> Self {
        Services {
            muc: muc::MucServices::new(),
            components: Arc::default(),
            blocking: Arc::default(),
            mam: Arc::default(),
            pep: Arc::default(),
            external_services: Arc::default(),
        }
    }
}

impl Services {
    /// The features to register, in order.
    pub fn features(&self) -> Vec<Arc<dyn Feature>> {
        vec![
            Arc::new(disco::Disco),
            Arc::new(ping::Ping),
            Arc::new(version::Version),
            Arc::new(time::Time),
            Arc::new(roster::Rosters),
            // Before presence: a closing session's last presence is still there.
            Arc::new(last_activity::LastActivity::default()),
            Arc::new(presence::Presence),
            self.blocking.clone(),
            // Before carbons: copies carry the stanza-id.
            self.mam.clone(),
            Arc::new(carbons::Carbons::default()),
            Arc::new(push::Push::default()),
            self.pep.clone(),
            Arc::new(offline::Offline::default()),
            Arc::new(token_auth::TokenAuth),
            self.external_services.clone(),
            Arc::new(muc::Muc(self.muc.clone())),
            Arc::new(calls::Calls {
                muc: self.muc.clone(),
            }),
            Arc::new(components::Components(self.components.clone())),
            Arc::new(vcard::Vcards::default()),
            Arc::new(private::PrivateStorage {
                pep: self.pep.clone(),
            }),
            Arc::new(register::Register {
                mam: self.mam.clone(),
            }),
            Arc::new(adhoc::AdHoc::default()),
            Arc::new(upload::Upload),
        ]
    }
}

/// Boxes a future for a hook (handlers return boxed futures).
pub(crate) fn boxed<T>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> futures_util::future::BoxFuture<'static, T> {
    Box::pin(f)
}
