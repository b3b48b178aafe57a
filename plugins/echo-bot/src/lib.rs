//! `echo-bot`: a Wasm-hosted component (world `component`) for a tenant's subdomain.
//!
//! - chat and normal messages with a body are answered with the same body (prefixed by
//!   the configuration's `prefix`, default none) and an
//!   `<echo xmlns='urn:heliograph:echo-bot:0' count='N'/>` element, N being how many
//!   messages the bot has echoed so far (kept in the key-value store, so it survives
//!   restarts and version swaps);
//! - iq `jabber:iq:version` answers name `echo-bot` and the configuration's `version`
//!   (default the crate version);
//! - iq disco#info answers an identity (`component`/`generic`, named by `name`, default
//!   "Echo bot") and its features; disco#items an empty list;
//! - other iq requests get `service-unavailable`; presence and other messages are ignored.

use heliograph_plugin_sdk::prelude::*;

const ECHO_NS: &str = "urn:heliograph:echo-bot:0";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const VERSION: &str = "jabber:iq:version";

pub struct EchoBot;

impl Component for EchoBot {
    fn handle(stanza: Stanza) -> HandleResult {
        match stanza.kind {
            StanzaKind::Message => Ok(echo(&stanza).into_iter().collect()),
            StanzaKind::Iq if stanza.is_request() => Ok(vec![answer_iq(&stanza).to_xml()]),
            _ => Ok(Vec::new()),
        }
    }
}

heliograph_plugin_sdk::component!(EchoBot);

fn echo(stanza: &Stanza) -> Option<String> {
    if !matches!(stanza.stanza_type.as_str(), "" | "normal" | "chat") {
        return None;
    }
    let el = stanza.element()?;
    let body = el.find("body", xml::CLIENT)?.text_content();
    let count = bump_count();
    let prefix = config::get("prefix").unwrap_or_default();
    let mut reply = Element::new("message", xml::CLIENT)
        .attr("from", &stanza.to)
        .attr("to", &stanza.from)
        .attr(
            "type",
            if stanza.stanza_type.is_empty() {
                "normal"
            } else {
                &stanza.stanza_type
            },
        )
        .child(Element::new("body", xml::CLIENT).text(&format!("{prefix}{body}")))
        .child(Element::new("echo", ECHO_NS).attr("count", &count.to_string()));
    if !stanza.id.is_empty() {
        reply.set_attr("id", &stanza.id);
    }
    Some(reply.to_xml())
}

/// Adds one to the stored message count and returns it (0 if the store is unavailable:
/// the echo itself matters more than the count).
fn bump_count() -> u64 {
    let current = kv::get("count")
        .ok()
        .flatten()
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    let next = current + 1;
    match kv::set("count", next.to_string().as_bytes()) {
        Ok(()) => next,
        Err(e) => {
            log::warn("count not stored", &[("error", &e.to_string())]);
            0
        }
    }
}

fn answer_iq(stanza: &Stanza) -> Element {
    let payload_ns = stanza
        .element()
        .and_then(|el| el.elements().next().map(|p| p.ns.clone()))
        .unwrap_or_default();
    match (stanza.stanza_type.as_str(), payload_ns.as_str()) {
        ("get", VERSION) => {
            let version =
                config::get("version").unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
            stanza.iq_result(Some(
                Element::new("query", VERSION)
                    .child(Element::new("name", VERSION).text("echo-bot"))
                    .child(Element::new("version", VERSION).text(&version)),
            ))
        }
        ("get", DISCO_INFO) => {
            let name = config::get("name").unwrap_or_else(|| "Echo bot".to_string());
            let mut q = Element::new("query", DISCO_INFO).child(
                Element::new("identity", DISCO_INFO)
                    .attr("category", "component")
                    .attr("type", "generic")
                    .attr("name", &name),
            );
            for f in [DISCO_INFO, DISCO_ITEMS, VERSION, ECHO_NS] {
                q = q.child(Element::new("feature", DISCO_INFO).attr("var", f));
            }
            stanza.iq_result(Some(q))
        }
        ("get", DISCO_ITEMS) => stanza.iq_result(Some(Element::new("query", DISCO_ITEMS))),
        _ => stanza.error_reply("cancel", "service-unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heliograph_plugin_sdk::testing::FakeHost;

    fn stanza(kind: StanzaKind, ty: &str, xml: &str) -> Stanza {
        Stanza {
            kind,
            from: "alice@acme.test/phone".into(),
            to: "echo.acme.test".into(),
            stanza_type: ty.into(),
            id: "i1".into(),
            domain: "echo.acme.test".into(),
            xml: xml.into(),
        }
    }

    #[test]
    fn echoes_and_counts() {
        let _host = FakeHost::new().config_json(r#"{"prefix": "> "}"#).install();
        let msg = r#"<message xmlns="jabber:client" type="chat" id="i1"><body>hi &amp; bye</body></message>"#;
        for n in 1..=2 {
            let out = EchoBot::handle(stanza(StanzaKind::Message, "chat", msg)).unwrap();
            let reply = Element::parse(&out[0]).unwrap();
            assert_eq!(reply.get_attr("to"), Some("alice@acme.test/phone"));
            assert_eq!(
                reply.find("body", xml::CLIENT).unwrap().text_content(),
                "> hi & bye"
            );
            assert_eq!(
                reply.find("echo", ECHO_NS).unwrap().get_attr("count"),
                Some(n.to_string().as_str())
            );
        }
        // Errors and groupchat are never echoed.
        assert!(
            EchoBot::handle(stanza(StanzaKind::Message, "error", msg))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn answers_version_disco_and_refuses_the_rest() {
        let _host = FakeHost::new().install();
        let out = EchoBot::handle(stanza(
            StanzaKind::Iq,
            "get",
            r#"<iq xmlns="jabber:client" type="get" id="i1"><query xmlns="jabber:iq:version"/></iq>"#,
        ))
        .unwrap();
        let iq = Element::parse(&out[0]).unwrap();
        assert_eq!(iq.get_attr("type"), Some("result"));
        assert_eq!(
            iq.find("query", VERSION)
                .unwrap()
                .find("name", VERSION)
                .unwrap()
                .text_content(),
            "echo-bot"
        );
        let out = EchoBot::handle(stanza(
            StanzaKind::Iq,
            "get",
            r#"<iq xmlns="jabber:client" type="get" id="i1"><query xmlns="http://jabber.org/protocol/disco#info"/></iq>"#,
        ))
        .unwrap();
        assert!(out[0].contains("identity"));
        let out = EchoBot::handle(stanza(
            StanzaKind::Iq,
            "set",
            r#"<iq xmlns="jabber:client" type="set" id="i1"><x xmlns="urn:other"/></iq>"#,
        ))
        .unwrap();
        assert!(out[0].contains("service-unavailable"));
    }
}
