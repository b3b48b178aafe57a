//! The `<body/>` wrapper of BOSH (XEP-0124 §4, XEP-0206): parsing a client request into
//! its attributes and payload, and rendering responses and terminal errors. Pure parsing
//! and rendering, no I/O: the HTTP side is in the transports crate (`http::bosh`), which
//! re-exports this module as `http::bosh::body`.

use heliograph_xml::parser::parse_element;
use heliograph_xml::{Element, ParseError, ParserLimits, ns};

/// `http://jabber.org/protocol/httpbind`
pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
/// `urn:xmpp:xbosh` (XEP-0206 attributes)
pub const NS_XBOSH: &str = "urn:xmpp:xbosh";

/// Why a request body is refused: each is `bad-request` (XEP-0124 §17).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body is not XML: {0}")]
    Xml(#[from] ParseError),
    #[error("root element must be <body xmlns='{NS_HTTPBIND}'/>")]
    NotBody,
    #[error("missing or invalid rid")]
    Rid,
    #[error("invalid value for attribute {0}")]
    Attribute(&'static str),
}

/// A parsed client request.
#[derive(Debug, Clone, Default)]
pub struct BodyRequest {
    pub rid: u64,
    pub sid: Option<String>,
    pub to: Option<String>,
    pub wait: Option<u64>,
    pub hold: Option<u32>,
    /// `ack` on the session creation request asks for acknowledgements; on later ones it
    /// acknowledges responses.
    pub ack: Option<u64>,
    pub pause: Option<u64>,
    /// `type='terminate'`
    pub terminate: bool,
    /// `xmpp:restart='true'`
    pub restart: bool,
    pub lang: Option<String>,
    pub payload: Vec<Element>,
}

impl BodyRequest {
    /// Parses a request body with the server's XML restrictions and limits.
    pub fn parse(data: &[u8], limits: ParserLimits) -> Result<BodyRequest, BodyError> {
        let mut body = parse_element(data, NS_HTTPBIND, limits)?;
        if !body.is("body", NS_HTTPBIND) {
            return Err(BodyError::NotBody);
        }
        let rid = body
            .attr("rid")
            .and_then(|r| r.trim().parse::<u64>().ok())
            .filter(|r| *r > 0 && *r < (1u64 << 53))
            .ok_or(BodyError::Rid)?;
        let num = |name: &'static str| -> Result<Option<u64>, BodyError> {
            body.attr(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| BodyError::Attribute(name))
                })
                .transpose()
        };
        let hold = num("hold")?
            .map(|h| u32::try_from(h).map_err(|_| BodyError::Attribute("hold")))
            .transpose()?;
        let mut req = BodyRequest {
            rid,
            sid: body.attr("sid").map(str::to_string),
            to: body.attr("to").map(str::to_string),
            wait: num("wait")?,
            hold,
            ack: num("ack")?,
            pause: num("pause")?,
            terminate: body.attr("type") == Some("terminate"),
            restart: prefixed_attr(&body, "restart") == Some("true"),
            lang: body.attr("xml:lang").map(str::to_string),
            payload: Vec::new(),
        };
        let children = std::mem::take(body.nodes_mut());
        for node in children {
            if let heliograph_xml::Node::Element(mut el) = node {
                // Stanzas written without their own xmlns inherit the body's namespace;
                // they are client stanzas.
                client_namespace(&mut el);
                req.payload.push(el);
            }
        }
        Ok(req)
    }

    /// No payload and nothing else asked: an empty poll (for the polling rule).
    pub fn is_empty_poll(&self) -> bool {
        self.payload.is_empty() && !self.restart && !self.terminate && self.pause.is_none()
    }
}

/// Value of `prefix:name` for the XEP-0206 attributes (`xmpp:restart`, `xmpp:version`),
/// whatever prefix the client bound to `urn:xmpp:xbosh`.
fn prefixed_attr<'a>(el: &'a Element, local: &str) -> Option<&'a str> {
    el.attrs()
        .find(|(k, _)| {
            k.split_once(':')
                .is_some_and(|(p, l)| l == local && p != "xml")
        })
        .map(|(_, v)| v)
}

fn client_namespace(el: &mut Element) {
    if el.ns() == NS_HTTPBIND {
        el.set_ns(ns::CLIENT);
        for c in el.children_mut() {
            client_namespace(c);
        }
    }
}

/// Renders `<body/>` with these attributes around `payload`.
pub fn render(attrs: &[(&str, &str)], payload: &[Element]) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(&format!(
        "<body xmlns=\"{NS_HTTPBIND}\" xmlns:xmpp=\"{NS_XBOSH}\" xmlns:stream=\"{}\"",
        ns::STREAM
    ));
    for (k, v) in attrs {
        out.push(' ');
        out.push_str(k);
        out.push_str("=\"");
        heliograph_xml::element::escape_attr(v, &mut out);
        out.push('"');
    }
    if payload.is_empty() {
        out.push_str("/>");
        return out;
    }
    out.push('>');
    for el in payload {
        el.write_to(&mut out, NS_HTTPBIND);
    }
    out.push_str("</body>");
    out
}

/// A terminal binding error without a session (`item-not-found`, `bad-request`, ...).
pub fn terminate(condition: &str) -> String {
    render(&[("type", "terminate"), ("condition", condition)], &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<BodyRequest, BodyError> {
        BodyRequest::parse(s.as_bytes(), ParserLimits::default())
    }

    #[test]
    fn parses_creation_request() {
        let r = parse(
            "<body content='text/xml; charset=utf-8' hold='1' rid='1573741820' to='localhost' \
             ver='1.6' wait='60' ack='1' xml:lang='en' xmpp:version='1.0' \
             xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>",
        )
        .unwrap();
        assert_eq!(r.rid, 1573741820);
        assert_eq!(r.hold, Some(1));
        assert_eq!(r.wait, Some(60));
        assert_eq!(r.to.as_deref(), Some("localhost"));
        assert_eq!(r.ack, Some(1));
        assert!(r.sid.is_none());
        assert!(r.is_empty_poll());
    }

    #[test]
    fn payload_in_body_namespace_becomes_client() {
        let r = parse(
            "<body rid='5' sid='s' xmlns='http://jabber.org/protocol/httpbind'>\
             <message to='a@b'><body>hi</body></message>\
             <iq xmlns='jabber:client' type='get' id='1'/></body>",
        )
        .unwrap();
        assert_eq!(r.payload.len(), 2);
        assert!(r.payload[0].is("message", ns::CLIENT));
        assert!(r.payload[0].child("body", ns::CLIENT).is_some());
        assert!(r.payload[1].is("iq", ns::CLIENT));
        assert!(!r.is_empty_poll());
    }

    #[test]
    fn restart_terminate_pause() {
        let r = parse(
            "<body rid='6' sid='s' xmpp:restart='true' xmlns='http://jabber.org/protocol/httpbind' \
             xmlns:xmpp='urn:xmpp:xbosh'/>",
        )
        .unwrap();
        assert!(r.restart);
        let r = parse(
            "<body rid='7' sid='s' type='terminate' xmlns='http://jabber.org/protocol/httpbind'/>",
        )
        .unwrap();
        assert!(r.terminate);
        let r =
            parse("<body rid='8' sid='s' pause='30' xmlns='http://jabber.org/protocol/httpbind'/>")
                .unwrap();
        assert_eq!(r.pause, Some(30));
        assert!(!r.is_empty_poll());
    }

    #[test]
    fn bad_requests() {
        assert!(matches!(parse("<body rid='1'"), Err(BodyError::Xml(_))));
        assert!(matches!(
            parse("<body rid='1' xmlns='jabber:client'/>"),
            Err(BodyError::NotBody)
        ));
        assert!(matches!(
            parse("<body xmlns='http://jabber.org/protocol/httpbind'/>"),
            Err(BodyError::Rid)
        ));
        assert!(matches!(
            parse("<body rid='x' xmlns='http://jabber.org/protocol/httpbind'/>"),
            Err(BodyError::Rid)
        ));
        assert!(matches!(
            parse("<body rid='1' wait='soon' xmlns='http://jabber.org/protocol/httpbind'/>"),
            Err(BodyError::Attribute("wait"))
        ));
        assert!(matches!(
            parse("<!DOCTYPE x><body rid='1' xmlns='http://jabber.org/protocol/httpbind'/>"),
            Err(BodyError::Xml(ParseError::RestrictedXml(_)))
        ));
    }

    #[test]
    fn renders_payload_with_namespaces() {
        let msg = Element::new("message", ns::CLIENT).with_attr("to", "a@b");
        let s = render(&[("sid", "x")], &[msg]);
        assert!(
            s.starts_with("<body xmlns=\"http://jabber.org/protocol/httpbind\""),
            "{s}"
        );
        assert!(
            s.contains("<message xmlns=\"jabber:client\" to=\"a@b\"/>"),
            "{s}"
        );
        assert_eq!(
            terminate("item-not-found"),
            format!(
                "<body xmlns=\"{NS_HTTPBIND}\" xmlns:xmpp=\"{NS_XBOSH}\" xmlns:stream=\"{}\" type=\"terminate\" condition=\"item-not-found\"/>",
                ns::STREAM
            )
        );
    }
}
