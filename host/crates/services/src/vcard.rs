//! XEP-0054 vCard-temp, stored per account within the tenant's size limit
//! (`profiles.max_vcard_bytes`), and XEP-0153 avatar hashes: the SHA-1 of the stored
//! vCard's photo goes into every available presence a user broadcasts that carries no
//! `vcard-temp:x:update` of its own.
//!
//! The hash of each account's photo is cached (loaded on first use, replaced when the
//! vCard changes) so that presence does not wait on storage more than once per account.

use std::sync::Arc;

use base64::Engine;
use dashmap::DashMap;
use heliograph_core::Core;
use sha1::{Digest, Sha1};

use crate::hooks::{Address, Feature, IqRequest, IqType, Registrar};
use crate::stanza::{self, Condition};
use crate::storage::profiles::{self, ProfileError};
use crate::storage::{self, Account};
use crate::xml::{Element, parser};

/// The vCard namespace (XEP-0054).
pub const VCARD: &str = "vcard-temp";
/// The presence extension carrying the photo hash (XEP-0153).
pub const VCARD_UPDATE: &str = "vcard-temp:x:update";

/// What the cache knows of an account's vCard photo.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Photo {
    /// No vCard stored: presence is left alone.
    NoVcard,
    /// A vCard without a photo: presence says so with an empty `<photo/>`.
    None,
    /// The hex SHA-1 of the photo's bytes.
    Hash(String),
}

/// The `vcard` feature, with its cache of photo hashes.
#[derive(Default)]
pub struct Vcards {
    photos: DashMap<Account, Photo>,
}

impl Feature for Vcards {
    fn name(&self) -> &'static str {
        "vcard"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        for ty in [IqType::Get, IqType::Set] {
            let me = self.clone();
            r.iq(ty, VCARD, &[Address::Own, Address::Account], move |req| {
                let me = me.clone();
                crate::boxed(async move { me.handle(req).await })
            });
        }
        let me = self.clone();
        r.outgoing_presence(move |core, account, presence| {
            let me = me.clone();
            crate::boxed(async move { me.decorate(&core, &account, presence).await })
        });
        r.disco_feature(Address::Host, VCARD);
    }
}

impl Vcards {
    async fn handle(&self, req: IqRequest) -> Option<Element> {
        let account = req.account.clone()?;
        let sender = req.origin.session().map(|s| s.account.clone());
        let own = sender.as_ref() == Some(&account);
        match stanza::stanza_type(&req.iq) {
            "get" => self.get(&req, &account).await,
            "set" if !own => stanza::error_reply(
                &req.iq,
                Condition::Forbidden,
                Some("only the account itself may change its vCard"),
            ),
            _ => self.set(&req, &account).await,
        }
    }

    async fn get(&self, req: &IqRequest, account: &Account) -> Option<Element> {
        let store = req.core.storage.account_data.clone();
        let a = account.clone();
        match storage::blocking(move || profiles::vcard(store.as_ref(), &a)).await {
            Ok(Some(xml)) => {
                let limits = req.core.parser_limits_for(Some(&account.domain));
                match parser::parse_element(xml.as_bytes(), VCARD, limits) {
                    Ok(card) => Some(stanza::iq_result_with(&req.iq, card)),
                    Err(e) => {
                        tracing::warn!(%account, error = %e, "stored vCard does not parse");
                        stanza::error_reply(&req.iq, Condition::InternalServerError, None)
                    }
                }
            }
            // XEP-0054 §3.1: no vCard is an empty one (item-not-found is allowed too,
            // and clients handle an empty vCard better).
            Ok(None) => Some(stanza::iq_result_with(
                &req.iq,
                Element::new("vCard", VCARD),
            )),
            Err(e) => {
                tracing::warn!(%account, error = %e, "reading a vCard");
                stanza::error_reply(&req.iq, Condition::InternalServerError, None)
            }
        }
    }

    async fn set(&self, req: &IqRequest, account: &Account) -> Option<Element> {
        let Some(card) = req.payload().filter(|p| p.is("vCard", VCARD)) else {
            return stanza::error_reply(&req.iq, Condition::BadRequest, Some("no vCard"));
        };
        let photo = photo_of(card);
        let xml = if card.children().next().is_none() {
            String::new()
        } else {
            card.to_string()
        };
        let limit = req.tenant.spec.profiles.max_vcard_bytes;
        let store = req.core.storage.account_data.clone();
        let a = account.clone();
        let removed = xml.is_empty();
        let result =
            storage::blocking(move || profiles::put_vcard(store.as_ref(), &a, &xml, limit)).await;
        match result {
            Ok(()) => {
                let photo = if removed { Photo::NoVcard } else { photo };
                self.photos.insert(account.clone(), photo);
                Some(stanza::iq_result(&req.iq))
            }
            Err(ProfileError::TooLarge { size, limit, .. }) => {
                let text = format!("the vCard is {size} bytes; the limit is {limit}");
                stanza::error_reply(&req.iq, Condition::NotAcceptable, Some(&text))
            }
            Err(e) => {
                tracing::warn!(%account, error = %e, "storing a vCard");
                stanza::error_reply(&req.iq, Condition::InternalServerError, None)
            }
        }
    }

    /// The account's photo state, from the cache or storage (`None` if storage fails:
    /// presence then goes out as the client sent it).
    async fn photo(&self, core: &Arc<Core>, account: &Account) -> Option<Photo> {
        if let Some(p) = self.photos.get(account) {
            return Some(p.clone());
        }
        let store = core.storage.account_data.clone();
        let a = account.clone();
        let xml = match core
            .storage
            .read(move || profiles::vcard(store.as_ref(), &a))
            .await
        {
            Ok(xml) => xml,
            Err(e) => {
                tracing::warn!(%account, error = %e, "reading a vCard for its photo hash");
                return None;
            }
        };
        let photo = match xml {
            None => Photo::NoVcard,
            Some(xml) => {
                let limits = core.parser_limits_for(Some(&account.domain));
                match parser::parse_element(xml.as_bytes(), VCARD, limits) {
                    Ok(card) => photo_of(&card),
                    Err(_) => Photo::None,
                }
            }
        };
        self.photos.insert(account.clone(), photo.clone());
        Some(photo)
    }

    /// Adds `<x xmlns='vcard-temp:x:update'><photo>hash</photo></x>` unless the client
    /// put one there itself or the account has no vCard.
    async fn decorate(
        &self,
        core: &Arc<Core>,
        account: &Account,
        mut presence: Element,
    ) -> Element {
        if presence.has_child("x", VCARD_UPDATE) {
            return presence;
        }
        let mut photo = Element::new("photo", VCARD_UPDATE);
        match self.photo(core, account).await {
            None | Some(Photo::NoVcard) => return presence,
            Some(Photo::None) => {}
            Some(Photo::Hash(h)) => photo.push_text(h),
        }
        presence.push_child(Element::new("x", VCARD_UPDATE).with_child(photo));
        presence
    }
}

/// The photo state of a vCard: the SHA-1 of its `PHOTO/BINVAL` bytes (XEP-0153 §3.1).
fn photo_of(card: &Element) -> Photo {
    let Some(binval) = card
        .child("PHOTO", VCARD)
        .and_then(|p| p.child_text("BINVAL", VCARD))
    else {
        return Photo::None;
    };
    let compact: String = binval.split_whitespace().collect();
    match base64::engine::general_purpose::STANDARD.decode(compact) {
        Ok(bytes) if !bytes.is_empty() => Photo::Hash(hex(&Sha1::digest(&bytes))),
        _ => Photo::None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn photo_hash_is_the_sha1_of_the_decoded_binval() {
        let card = Element::new("vCard", VCARD).with_child(
            Element::new("PHOTO", VCARD)
                .with_child(Element::new("TYPE", VCARD).with_text("image/png"))
                // "hello" split over lines, as clients wrap base64.
                .with_child(Element::new("BINVAL", VCARD).with_text("aGVs\n bG8=")),
        );
        assert_eq!(
            photo_of(&card),
            Photo::Hash("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d".into())
        );
        assert_eq!(photo_of(&Element::new("vCard", VCARD)), Photo::None);
    }
}
