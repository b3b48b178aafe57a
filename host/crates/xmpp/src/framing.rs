//! XMPP over WebSocket framing (RFC 7395): one element per text frame, the stream opened
//! by `<open/>` and closed by `<close/>` in the framing namespace. Pure parsing and
//! serialization of frames, no I/O: the WebSocket link itself is in the transports crate
//! (`http::websocket`).

use heliograph_xml::parser::parse_element;
use heliograph_xml::{Element, ParseError, ParserLimits, StreamEvent, StreamHeader, ns};

/// `urn:ietf:params:xml:ns:xmpp-framing`
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// One client frame, as the core sees it: `<open/>` as the stream header, `<close/>` as
/// the stream close, anything else as a stanza (elements without `xmlns` are
/// `jabber:client`).
pub fn frame_event(text: &str, limits: ParserLimits) -> Result<StreamEvent, ParseError> {
    let el = parse_element(text.as_bytes(), ns::CLIENT, limits)?;
    if el.ns() == NS_FRAMING {
        match el.name() {
            "open" => {
                return Ok(StreamEvent::Open(StreamHeader {
                    name: "stream".into(),
                    ns: ns::STREAM.into(),
                    default_ns: ns::CLIENT.into(),
                    attrs: el
                        .attrs()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                }));
            }
            "close" => return Ok(StreamEvent::Close),
            _ => {}
        }
    }
    Ok(StreamEvent::Stanza(el))
}

/// Serializes an element as a standalone frame (namespaces declared).
pub fn frame_text(el: &Element) -> String {
    let mut s = el.to_string_in("");
    if el.ns() == ns::STREAM {
        let at = "<stream:".len() + el.name().len();
        s.insert_str(at, &format!(" xmlns:stream=\"{}\"", ns::STREAM));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_map_to_stream_events() {
        let l = ParserLimits::default();
        match frame_event(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>",
            l,
        )
        .unwrap()
        {
            StreamEvent::Open(h) => {
                assert_eq!(h.attr("to"), Some("localhost"));
                assert_eq!(h.default_ns, ns::CLIENT);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            frame_event("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>", l).unwrap(),
            StreamEvent::Close
        );
        assert!(matches!(
            frame_event("<message xmlns='jabber:client' to='a@b'/>", l).unwrap(),
            StreamEvent::Stanza(_)
        ));
        assert!(frame_event("<message", l).is_err());
    }

    #[test]
    fn stream_elements_declare_their_prefix() {
        let f = Element::new("features", ns::STREAM).with_child(Element::new("bind", ns::BIND));
        assert_eq!(
            frame_text(&f),
            "<stream:features xmlns:stream=\"http://etherx.jabber.org/streams\"><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/></stream:features>"
        );
    }
}
