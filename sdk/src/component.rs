//! The `component` world: a Wasm-hosted component serving a subdomain of its tenant.
//!
//! The host calls [`Component::handle`] with each stanza addressed to the component's
//! domain (or a JID on it), in a fresh instance, and sends the stanzas it returns. Build
//! answers with [`crate::xml::Element`] and [`Stanza::reply`]-style helpers; keep state in
//! [`crate::kv`].

/// Message, presence or iq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
}

/// One stanza addressed to the component, with its addressing attributes parsed by the
/// host (empty strings for absent attributes) and the whole stanza as XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    pub kind: StanzaKind,
    /// The sender's JID (a user's full JID, usually).
    pub from: String,
    /// The JID on the component's domain it is addressed to.
    pub to: String,
    /// The `type` attribute.
    pub stanza_type: String,
    /// The `id` attribute.
    pub id: String,
    /// The component domain the stanza is for.
    pub domain: String,
    /// The stanza as XML (`jabber:client`).
    pub xml: String,
}

impl Stanza {
    /// The stanza parsed (`None` if the XML is not well-formed, which the host never sends).
    pub fn element(&self) -> Option<crate::xml::Element> {
        crate::xml::Element::parse(&self.xml).ok()
    }

    /// True for an iq `get` or `set`, which must be answered with a result or an error.
    pub fn is_request(&self) -> bool {
        self.kind == StanzaKind::Iq && matches!(self.stanza_type.as_str(), "get" | "set")
    }

    /// An iq `result` to this request from the address it was sent to, with `payload`.
    pub fn iq_result(&self, payload: Option<crate::xml::Element>) -> crate::xml::Element {
        let mut iq = crate::xml::Element::new("iq", crate::xml::CLIENT)
            .attr("type", "result")
            .attr("id", &self.id)
            .attr("from", &self.to)
            .attr("to", &self.from);
        if let Some(p) = payload {
            iq = iq.child(p);
        }
        iq
    }

    /// An error reply of the stanza's own kind (RFC 6120 §8.3): `condition` is a
    /// defined condition such as `item-not-found`, `error_type` `cancel`, `modify`, ...
    pub fn error_reply(&self, error_type: &str, condition: &str) -> crate::xml::Element {
        let name = match self.kind {
            StanzaKind::Message => "message",
            StanzaKind::Presence => "presence",
            StanzaKind::Iq => "iq",
        };
        let mut el = crate::xml::Element::new(name, crate::xml::CLIENT)
            .attr("type", "error")
            .attr("from", &self.to)
            .attr("to", &self.from);
        if !self.id.is_empty() {
            el = el.attr("id", &self.id);
        }
        el.child(
            crate::xml::Element::new("error", crate::xml::CLIENT)
                .attr("type", error_type)
                .child(crate::xml::Element::new(
                    condition,
                    "urn:ietf:params:xml:ns:xmpp-stanzas",
                )),
        )
    }
}

/// The stanzas to send (XML text), or a refusal the host turns into an error reply.
pub type HandleResult = Result<Vec<String>, String>;

/// A plugin of the `component` world. Each call runs in a fresh instance, so keep state
/// in [`crate::kv`], not in statics.
pub trait Component {
    /// Handles one stanza; returns the stanzas to send, each with a `from` on the
    /// component's domain.
    fn handle(stanza: Stanza) -> HandleResult;

    /// Called once when the plugin is installed, with its configuration (JSON text).
    /// Return an error to refuse the configuration. The default accepts anything.
    fn init(config: &str) -> Result<(), String> {
        let _ = config;
        Ok(())
    }
}
