//! XEP-0115 entity capabilities as PEP uses them: which nodes a resource wants
//! notifications for (`NODE+notify` features). The server reads the `<c/>` element of a
//! session's last available presence, keeps each verification string's features once
//! verified (SHA-1 over the disco#info answer, XEP-0115 §5), and asks a resource with an
//! unknown hash for its disco#info once (concurrent askers wait for nothing: they get
//! `None` and the next presence or publish finds the answer cached). An answer that does
//! not hash to the advertised string is never
//! cached by hash: it is kept for that one session only, until it ends or advertises
//! another string.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use dashmap::DashMap;
use heliograph_core::Core;
use sha1::{Digest, Sha1};

use crate::router::SessionEntry;
use crate::xml::{Element, ns};

pub const CAPS: &str = "http://jabber.org/protocol/caps";

/// How long a resource has to answer the disco#info query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(20);

/// A resource's advertised capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caps {
    pub node: String,
    pub ver: String,
    pub hash: String,
}

/// The features of a resource.
pub type Features = Arc<HashSet<String>>;

/// Features by verification string, and the strings being asked for.
#[derive(Default)]
pub struct CapsCache {
    known: DashMap<String, Features>,
    asking: DashMap<String, ()>,
    /// Unverified answers, by full JID: (advertised string, features).
    by_session: DashMap<String, (String, Features)>,
    /// Disco#info queries sent (for tests and metrics).
    queries: std::sync::atomic::AtomicU64,
}

/// The caps of a presence stanza, if it has any.
pub fn caps_of(presence: &Element) -> Option<Caps> {
    let c = presence.child("c", CAPS)?;
    Some(Caps {
        node: c.attr("node")?.to_string(),
        ver: c.attr("ver")?.to_string(),
        hash: c.attr("hash").unwrap_or("sha-1").to_string(),
    })
}

/// Whether the session's last presence carries caps at all.
pub fn advertises_caps(entry: &SessionEntry) -> bool {
    entry
        .presence()
        .last
        .as_ref()
        .is_some_and(|p| caps_of(p).is_some())
}

impl CapsCache {
    /// The session's features if its caps are known (no waiting).
    pub fn known(&self, entry: &SessionEntry) -> Option<Features> {
        let caps = caps_of(entry.presence().last.as_ref()?)?;
        self.known_for(&entry.full_jid, &caps)
    }

    /// The features of the resource `full_jid` advertising `caps`, if known.
    pub fn known_for(&self, full_jid: &str, caps: &Caps) -> Option<Features> {
        if let Some(f) = self.known.get(&caps.ver) {
            return Some(f.clone());
        }
        let own = self.by_session.get(full_jid)?;
        (own.0 == caps.ver).then(|| own.1.clone())
    }

    /// The session ended: its unverified answer goes.
    pub fn forget(&self, entry: &SessionEntry) {
        self.forget_jid(&entry.full_jid);
    }

    /// The resource `full_jid` went away: its unverified answer goes.
    pub fn forget_jid(&self, full_jid: &str) {
        self.by_session.remove(full_jid);
    }

    /// Number of disco#info queries sent so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The session's features, asking it once if its hash is unknown. `None` when it
    /// advertises no caps, does not answer, or another call is asking already.
    pub async fn resolve(&self, core: &Arc<Core>, entry: &SessionEntry) -> Option<Features> {
        let caps = caps_of(entry.presence().last.as_ref()?)?;
        self.resolve_for(core, &entry.account.domain, &entry.full_jid, &caps)
            .await
    }

    /// Like [`CapsCache::resolve`] for any resource (one on another server too), asked
    /// from the local domain `from`.
    pub async fn resolve_for(
        &self,
        core: &Arc<Core>,
        from: &str,
        full_jid: &str,
        caps: &Caps,
    ) -> Option<Features> {
        if let Some(f) = self.known_for(full_jid, caps) {
            return Some(f);
        }
        if self.asking.insert(caps.ver.clone(), ()).is_some() {
            return None;
        }
        self.queries
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let features = ask(core, from, full_jid, caps).await;
        self.asking.remove(&caps.ver);
        let (features, verified) = features?;
        let features: Features = Arc::new(features);
        if verified {
            self.known.insert(caps.ver.clone(), features.clone());
        } else {
            self.by_session
                .insert(full_jid.to_string(), (caps.ver.clone(), features.clone()));
        }
        Some(features)
    }
}

/// Asks the resource for `node#ver`; returns its features and whether the answer hashes
/// to `ver`.
async fn ask(
    core: &Arc<Core>,
    from: &str,
    full_jid: &str,
    caps: &Caps,
) -> Option<(HashSet<String>, bool)> {
    let query = Element::new("query", ns::DISCO_INFO)
        .with_attr("node", format!("{}#{}", caps.node, caps.ver));
    let iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("from", from.to_string())
        .with_attr("to", full_jid.to_string())
        .with_child(query);
    let answer = crate::pipeline::requests::send(core, iq, QUERY_TIMEOUT)
        .await
        .ok()?;
    if answer.attr("type") != Some("result") {
        return None;
    }
    let query = answer.child("query", ns::DISCO_INFO)?;
    let features: HashSet<String> = query
        .children()
        .filter(|c| c.is("feature", ns::DISCO_INFO))
        .filter_map(|f| f.attr("var").map(str::to_string))
        .collect();
    let computed = verification(query);
    let verified = caps.hash == "sha-1" && computed == caps.ver;
    if !verified {
        tracing::debug!(jid = %full_jid, ver = %caps.ver, computed = %computed,
            "caps did not verify: kept for this session only");
    }
    Some((features, verified))
}

/// The XEP-0115 §5.1 verification string of a disco#info answer, hashed with SHA-1 and
/// base64-encoded.
pub fn verification(query: &Element) -> String {
    // Sorted as strings, then each followed by '<' (sorting with the '<' would put
    // `shim#SubID` before `shim`).
    let mut identities: Vec<String> = query
        .children()
        .filter(|c| c.is("identity", ns::DISCO_INFO))
        .map(|i| {
            format!(
                "{}/{}/{}/{}",
                i.attr("category").unwrap_or_default(),
                i.attr("type").unwrap_or_default(),
                i.attr("xml:lang").unwrap_or_default(),
                i.attr("name").unwrap_or_default()
            )
        })
        .collect();
    identities.sort();
    let mut features: Vec<&str> = query
        .children()
        .filter(|c| c.is("feature", ns::DISCO_INFO))
        .filter_map(|f| f.attr("var"))
        .collect();
    features.sort_unstable();
    let mut forms: Vec<(String, String)> = query
        .children()
        .filter(|c| c.is("x", ns::DATA_FORMS))
        .map(form_string)
        .collect();
    forms.sort();
    let mut s = String::new();
    for part in identities.iter().map(String::as_str).chain(features) {
        s.push_str(part);
        s.push('<');
    }
    for (_, form) in forms {
        s.push_str(&form);
    }
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes()))
}

/// One extended form: its `FORM_TYPE` (the sort key) and its part of the string.
fn form_string(x: &Element) -> (String, String) {
    let values = |f: &Element| -> Vec<String> {
        let mut v: Vec<String> = f
            .children()
            .filter(|c| c.is("value", ns::DATA_FORMS))
            .map(|v| v.text())
            .collect();
        v.sort();
        v
    };
    let fields: Vec<&Element> = x
        .children()
        .filter(|c| c.is("field", ns::DATA_FORMS))
        .collect();
    let form_type = fields
        .iter()
        .find(|f| f.attr("var") == Some("FORM_TYPE"))
        .map(|f| values(f).concat())
        .unwrap_or_default();
    let mut rest: Vec<(String, Vec<String>)> = fields
        .iter()
        .filter(|f| f.attr("var") != Some("FORM_TYPE"))
        .map(|f| (f.attr("var").unwrap_or_default().to_string(), values(f)))
        .collect();
    rest.sort();
    let mut s = format!("{form_type}<");
    for (var, vals) in rest {
        s.push_str(&var);
        s.push('<');
        for v in vals {
            s.push_str(&v);
            s.push('<');
        }
    }
    (form_type, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Features sort as strings: `shim` before `shim#SubID` (slixmpp's answer).
    #[test]
    fn features_sort_before_the_separator_is_added() {
        let mut q = Element::new("query", ns::DISCO_INFO);
        q.push_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "client")
                .with_attr("type", "bot"),
        );
        for f in [
            "http://jabber.org/protocol/disco#info",
            "urn:xmpp:ping",
            "jabber:x:data",
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/shim",
            "http://jabber.org/protocol/shim#SubID",
            "http://jabber.org/protocol/nick+notify",
        ] {
            q.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
        }
        assert_eq!(verification(&q), "QMRgsneA8au6ddsoGejUvTXrpXE=");
    }

    /// The simple example of XEP-0115 §5.2.
    #[test]
    fn verification_string_of_the_xep_example() {
        let mut q = Element::new("query", ns::DISCO_INFO);
        q.push_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "client")
                .with_attr("type", "pc")
                .with_attr("name", "Exodus 0.9.1"),
        );
        for f in [
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "http://jabber.org/protocol/muc",
            "http://jabber.org/protocol/caps",
        ] {
            q.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", f));
        }
        assert_eq!(verification(&q), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }
}
