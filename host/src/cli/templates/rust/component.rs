//! {{name}}: a Heliograph component (WIT world `component`): answers every chat message
//! with its text, counts them in the key-value store, and answers iq requests with
//! `service-unavailable`.

use heliograph_plugin_sdk::prelude::*;

pub struct {{Type}};

impl Component for {{Type}} {
    fn handle(stanza: Stanza) -> HandleResult {
        if stanza.is_request() {
            // Answer every iq request, or the sender waits: here with an error.
            return Ok(vec![
                stanza
                    .error_reply("cancel", "service-unavailable")
                    .to_xml(),
            ]);
        }
        let Some(body) = stanza
            .element()
            .and_then(|m| m.find("body", xml::CLIENT).map(|b| b.text_content()))
        else {
            return Ok(vec![]);
        };
        let count = kv::get_string("count")
            .map_err(|e| e.to_string())?
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        kv::set("count", count.to_string()).map_err(|e| e.to_string())?;
        let reply = Element::new("message", xml::CLIENT)
            .attr("from", &stanza.to)
            .attr("to", &stanza.from)
            .attr("type", "chat")
            .child(Element::new("body", xml::CLIENT).text(&format!("you said {body} (#{count})")));
        Ok(vec![reply.to_xml()])
    }
}

heliograph_plugin_sdk::component!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;
    use heliograph_plugin_sdk::testing::FakeHost;

    fn stanza(kind: StanzaKind, stanza_type: &str, xml: &str) -> Stanza {
        Stanza {
            kind,
            from: "alice@example.com/phone".into(),
            to: "bot.example.com".into(),
            stanza_type: stanza_type.into(),
            id: "1".into(),
            domain: "bot.example.com".into(),
            xml: xml.into(),
        }
    }

    #[test]
    fn echoes_messages_and_refuses_requests() {
        let host = FakeHost::new().install();
        let msg = stanza(
            StanzaKind::Message,
            "chat",
            "<message xmlns='jabber:client' type='chat'><body>hi</body></message>",
        );
        let out = {{Type}}::handle(msg).unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].contains("you said hi (#1)"), "{}", out[0]);
        assert_eq!(host.kv_value("count"), Some(b"1".to_vec()));
        let iq = stanza(
            StanzaKind::Iq,
            "get",
            "<iq xmlns='jabber:client' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
        );
        let out = {{Type}}::handle(iq).unwrap();
        assert!(out[0].contains("service-unavailable"), "{}", out[0]);
    }
}
