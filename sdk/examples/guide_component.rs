//! The guide's component (sdk/README.md, "Components"), compiled and tested by
//! `cargo test` (`tests/guide.rs` checks the guide's block is this code, verbatim).

use heliograph_plugin_sdk::prelude::*;

struct Hello;

impl Component for Hello {
    fn handle(stanza: Stanza) -> HandleResult {
        if stanza.is_request() {
            // Answer every iq request, or the sender waits: here with an error.
            return Ok(vec![
                stanza.error_reply("cancel", "service-unavailable").to_xml(),
            ]);
        }
        let Some(body) = stanza
            .element()
            .and_then(|m| m.find("body", xml::CLIENT).map(|b| b.text_content()))
        else {
            return Ok(vec![]);
        };
        let reply = Element::new("message", xml::CLIENT)
            .attr("from", &stanza.to)
            .attr("to", &stanza.from)
            .attr("type", "chat")
            .child(Element::new("body", xml::CLIENT).text(&format!("you said {body}")));
        Ok(vec![reply.to_xml()])
    }
}

heliograph_plugin_sdk::component!(Hello);

#[cfg(test)]
mod tests {
    use super::*;

    fn stanza(kind: StanzaKind, stanza_type: &str, xml: &str) -> Stanza {
        Stanza {
            kind,
            from: "alice@example.com/phone".into(),
            to: "hello.example.com".into(),
            stanza_type: stanza_type.into(),
            id: "1".into(),
            domain: "hello.example.com".into(),
            xml: xml.into(),
        }
    }

    #[test]
    fn echoes_messages_and_refuses_requests() {
        let msg = stanza(
            StanzaKind::Message,
            "chat",
            "<message xmlns='jabber:client' type='chat'><body>hi</body></message>",
        );
        let out = Hello::handle(msg).unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].contains("you said hi"), "{}", out[0]);
        let iq = stanza(
            StanzaKind::Iq,
            "get",
            "<iq xmlns='jabber:client' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
        );
        assert!(Hello::handle(iq).unwrap()[0].contains("service-unavailable"));
    }
}
