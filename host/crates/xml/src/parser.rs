//! Incremental XMPP stream parser.
//!
//! Bytes arrive in arbitrary chunks; [`StreamParser`] yields the stream header, whole
//! top-level stanzas (as namespace-resolved [`Element`]s) and the stream close. Limits on
//! stanza size and depth are enforced while scanning, before a stanza is buffered whole.
//! XMPP's restricted XML profile (RFC 6120 §11.1) is enforced: DTDs, comments, processing
//! instructions (other than the XML declaration) and entity references other than the five
//! predefined ones and character references are refused.
//!
//! How it works: the `scanner` module looks at each byte once as it is fed, tracking where
//! it is in the markup, and records where each header, stanza and close tag ends (enforcing
//! limits and the restricted profile as it goes). The `tree` module then builds each
//! complete unit from its slice of the buffer, resolving namespaces against the bindings
//! the stream header made (`syntax` holds the character-level rules both share).
//! Consumed bytes are dropped from the buffer as events are taken, and a large, empty
//! buffer is released, so an idle stream holds almost no memory.

mod scanner;
mod syntax;
mod tree;

use std::collections::VecDeque;

use scanner::{Mode, Scanner, Unit, UnitKind};
use tree::Binding;

use super::Element;

/// Size and depth limits applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserLimits {
    /// Maximum serialized size of one top-level stanza in bytes (default 256 KiB).
    pub max_stanza_bytes: usize,
    /// Maximum element nesting depth inside a stanza (default 32).
    pub max_depth: usize,
}

impl Default for ParserLimits {
    fn default() -> Self {
        ParserLimits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 32,
        }
    }
}

/// The opening `<stream:stream>` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// Local name of the root element (must be `stream`).
    pub name: String,
    /// Resolved namespace of the root element (must be the streams namespace).
    pub ns: String,
    /// The default namespace declared on the header (`jabber:client`, ...), empty if none.
    pub default_ns: String,
    /// Attributes other than namespace declarations, as written (`to`, `from`, `version`,
    /// `xml:lang`, `id`).
    pub attrs: Vec<(String, String)>,
}

impl StreamHeader {
    /// Value of an attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the parser yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Open(StreamHeader),
    Stanza(Element),
    Close,
}

/// Why the stream must be closed. Each maps to one stream error condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// `not-well-formed`
    #[error("not well-formed: {0}")]
    NotWellFormed(String),
    /// `restricted-xml`
    #[error("restricted XML: {0}")]
    RestrictedXml(String),
    /// `policy-violation` (stanza too large or too deep)
    #[error("policy violation: {0}")]
    PolicyViolation(String),
    /// `unsupported-encoding`
    #[error("unsupported encoding: {0}")]
    UnsupportedEncoding(String),
}

/// Incremental stream parser; see the module docs.
#[derive(Debug)]
pub struct StreamParser {
    limits: ParserLimits,
    /// Received bytes not yet consumed; `buf[0]` is at absolute stream offset `base`.
    buf: Vec<u8>,
    base: u64,
    scanner: Scanner,
    /// Complete units found by the scanner, not yet turned into events.
    ready: VecDeque<Unit>,
    /// Set once the header has been yielded.
    stream: Option<OpenStream>,
    /// Once set, the stream is dead: every later call reports it.
    failure: Option<ParseError>,
}

/// What the stream header established for the rest of the stream.
#[derive(Debug)]
struct OpenStream {
    /// The header's qualified name as written; the close tag must repeat it.
    qname: String,
    /// Namespace declarations on the header, in scope for every stanza.
    bindings: Vec<Binding>,
}

/// Above this capacity an empty buffer is released rather than kept for reuse.
const RETAINED_BUFFER_CAPACITY: usize = 8 * 1024;

impl StreamParser {
    pub fn new(limits: ParserLimits) -> Self {
        StreamParser {
            limits,
            buf: Vec::new(),
            base: 0,
            scanner: Scanner::new(Mode::Stream, limits),
            ready: VecDeque::new(),
            stream: None,
            failure: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> ParserLimits {
        self.limits
    }

    /// Appends received bytes. Fails as soon as the bytes seen so far violate a limit or
    /// the restricted-XML profile, without buffering past the limit.
    ///
    /// Events completed before the offending bytes can still be taken with
    /// [`StreamParser::next_event`], which then reports the same error. Bytes after the
    /// stream close are ignored.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), ParseError> {
        if let Some(error) = &self.failure {
            return Err(error.clone());
        }
        if self.scanner.stream_closed() {
            return Ok(());
        }
        self.release_consumed();
        let from = self.buf.len();
        self.buf.extend_from_slice(data);
        match self
            .scanner
            .scan(&self.buf, self.base, from, &mut self.ready)
        {
            Ok(end) => {
                self.buf.truncate(end);
                if self.ready.is_empty() {
                    self.release_consumed();
                }
                Ok(())
            }
            Err(error) => {
                self.fail(error.clone());
                Err(error)
            }
        }
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, ParseError> {
        let Some(unit) = self.ready.pop_front() else {
            return match &self.failure {
                Some(error) => Err(error.clone()),
                None => Ok(None),
            };
        };
        let event = self.build_event(unit);
        if self.ready.is_empty() {
            self.release_consumed();
        }
        match event {
            Ok(event) => Ok(Some(event)),
            Err(error) => {
                self.ready.clear();
                self.fail(error.clone());
                Err(error)
            }
        }
    }

    /// Discards all state and expects a new stream header (stream restart after STARTTLS or
    /// SASL success).
    pub fn reset(&mut self) {
        *self = StreamParser::new(self.limits);
    }

    /// Changes the limits from now on (the tenant's own limits apply once the stream's
    /// domain is known); they also apply after every later reset.
    pub fn set_limits(&mut self, limits: ParserLimits) {
        self.limits = limits;
        self.scanner.set_limits(limits);
    }

    /// True when `next_event` has something to return (an event or a refusal).
    pub fn has_events(&self) -> bool {
        !self.ready.is_empty() || self.failure.is_some()
    }

    /// Bytes currently buffered (for memory accounting).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn build_event(&mut self, unit: Unit) -> Result<StreamEvent, ParseError> {
        let bytes = unit_bytes(&self.buf, self.base, unit)?;
        match (unit.kind, &self.stream) {
            (UnitKind::Header, _) => {
                let (header, qname, bindings) = tree::parse_header(bytes)?;
                self.stream = Some(OpenStream { qname, bindings });
                Ok(StreamEvent::Open(header))
            }
            (UnitKind::Stanza, Some(stream)) => {
                tree::parse_element_tree(bytes, &stream.bindings, self.limits.max_depth)
                    .map(StreamEvent::Stanza)
            }
            (UnitKind::Close, Some(stream)) => {
                tree::check_close(bytes, &stream.qname)?;
                Ok(StreamEvent::Close)
            }
            (UnitKind::ImpliedClose, Some(_)) => Ok(StreamEvent::Close),
            (_, None) => Err(malformed("stream header missing")),
        }
    }

    /// Drops bytes no unit needs any more, and releases a large buffer once it is empty.
    fn release_consumed(&mut self) {
        let end = self.base + self.buf.len() as u64;
        let keep_from = self
            .ready
            .front()
            .map(|unit| unit.start)
            .or(self.scanner.unit_start())
            .unwrap_or(end);
        let consumed = usize::try_from(keep_from.saturating_sub(self.base))
            .unwrap_or(usize::MAX)
            .min(self.buf.len());
        self.buf.drain(..consumed);
        self.base += consumed as u64;
        self.shrink_if_mostly_unused();
    }

    fn shrink_if_mostly_unused(&mut self) {
        if self.buf.is_empty() {
            // Nothing pending (the common idle state): hold no memory at all.
            self.buf = Vec::new();
            return;
        }
        if self.buf.capacity() > RETAINED_BUFFER_CAPACITY
            && self.buf.len() < self.buf.capacity() / 4
        {
            self.buf.shrink_to(self.buf.len() * 2);
        }
    }

    /// Records a fatal error and drops every byte not needed by an already complete unit.
    fn fail(&mut self, error: ParseError) {
        self.failure = Some(error);
        let keep_until = self.ready.back().map_or(self.base, |unit| unit.end);
        self.buf
            .truncate(usize::try_from(keep_until.saturating_sub(self.base)).unwrap_or(usize::MAX));
        self.shrink_if_mostly_unused();
    }
}

/// Parses one complete standalone element (a BOSH `<body/>`, a WebSocket frame). Elements
/// without an `xmlns` inherit `default_ns`. The same restrictions and limits apply.
pub fn parse_element(
    data: &[u8],
    default_ns: &str,
    limits: ParserLimits,
) -> Result<Element, ParseError> {
    let mut scanner = Scanner::new(Mode::Document, limits);
    let mut units = VecDeque::with_capacity(1);
    scanner.scan(data, 0, 0, &mut units)?;
    let root = match units.pop_front() {
        Some(unit) if scanner.document_complete() => unit,
        _ => return Err(malformed("incomplete element")),
    };
    let inherited = [(String::new(), default_ns.to_owned())];
    tree::parse_element_tree(unit_bytes(data, 0, root)?, &inherited, limits.max_depth)
}

/// The bytes of `unit` in `buf`, whose first byte is at absolute offset `base`.
fn unit_bytes(buf: &[u8], base: u64, unit: Unit) -> Result<&[u8], ParseError> {
    absolute_slice(buf, base, unit.start, unit.end)
}

/// `buf[start..end]` for absolute stream offsets, where `buf[0]` is at offset `base`.
fn absolute_slice(buf: &[u8], base: u64, start: u64, end: u64) -> Result<&[u8], ParseError> {
    let index = |offset: u64| {
        offset
            .checked_sub(base)
            .and_then(|i| usize::try_from(i).ok())
    };
    index(start)
        .zip(index(end))
        .and_then(|(start, end)| buf.get(start..end))
        .ok_or_else(|| malformed("internal parser error"))
}

fn malformed(description: &str) -> ParseError {
    ParseError::NotWellFormed(description.to_owned())
}

fn restricted(description: &str) -> ParseError {
    ParseError::RestrictedXml(description.to_owned())
}

fn policy_violation(description: String) -> ParseError {
    ParseError::PolicyViolation(description)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::ns;

    const HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
                          to='example.com' version='1.0'>";

    /// A realistic client stream exercising most of the syntax the parser must handle.
    const CLIENT_STREAM: &str = concat!(
        "<?xml version='1.0' encoding='UTF-8'?>\n",
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' ",
        "version=\"1.0\" to='example.com' xml:lang='en'>",
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGp1bGlldABzZWNyZXQ=</auth>",
        " \n\t ",
        "<iq type='get' id='r1'><query xmlns='jabber:iq:roster' ver=\"v&amp;1\"/></iq>",
        "\n",
        "<message to='romeo@example.net' id=\"m&lt;1\" note='a > b /> c' xml:lang='fr'>",
        "<body>&amp;&lt;&gt;&quot;&apos; &#65;&#x1F600; <![CDATA[<b>bold</b> & ]]]]></body>",
        "<p:x xmlns:p='urn:example:p' p:flag='yes'><p:y>héllo ✓ 😀</p:y></p:x>",
        "<html xmlns='http://jabber.org/protocol/xhtml-im'>",
        "<body xmlns='http://www.w3.org/1999/xhtml'><p>hi</p></body></html>",
        "</message>",
        "\n \n",
        "</stream:stream>",
    );

    fn expected_client_events() -> Vec<StreamEvent> {
        let header = StreamHeader {
            name: "stream".into(),
            ns: ns::STREAM.into(),
            default_ns: ns::CLIENT.into(),
            attrs: vec![
                ("version".into(), "1.0".into()),
                ("to".into(), "example.com".into()),
                ("xml:lang".into(), "en".into()),
            ],
        };
        let auth = Element::new("auth", ns::SASL)
            .with_attr("mechanism", "PLAIN")
            .with_text("AGp1bGlldABzZWNyZXQ=");
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "r1")
            .with_child(Element::new("query", ns::ROSTER).with_attr("ver", "v&1"));
        let message = Element::new("message", ns::CLIENT)
            .with_attr("to", "romeo@example.net")
            .with_attr("id", "m<1")
            .with_attr("note", "a > b /> c")
            .with_attr("xml:lang", "fr")
            .with_child(Element::new("body", ns::CLIENT).with_text("&<>\"' A😀 <b>bold</b> & ]]"))
            .with_child(
                Element::new("x", "urn:example:p")
                    .with_attr("p:flag", "yes")
                    .with_child(Element::new("y", "urn:example:p").with_text("héllo ✓ 😀")),
            )
            .with_child(
                Element::new("html", "http://jabber.org/protocol/xhtml-im").with_child(
                    Element::new("body", "http://www.w3.org/1999/xhtml").with_child(
                        Element::new("p", "http://www.w3.org/1999/xhtml").with_text("hi"),
                    ),
                ),
            );
        vec![
            StreamEvent::Open(header),
            StreamEvent::Stanza(auth),
            StreamEvent::Stanza(iq),
            StreamEvent::Stanza(message),
            StreamEvent::Close,
        ]
    }

    /// Feeds `chunks` in order, taking every event after each feed.
    fn parse_chunks<'a>(
        limits: ParserLimits,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<StreamEvent>, ParseError> {
        let mut parser = StreamParser::new(limits);
        let mut events = Vec::new();
        for chunk in chunks {
            parser.feed(chunk)?;
            while let Some(event) = parser.next_event()? {
                events.push(event);
            }
        }
        Ok(events)
    }

    fn parse_whole(input: &[u8]) -> Result<Vec<StreamEvent>, ParseError> {
        parse_chunks(ParserLimits::default(), [input])
    }

    fn parse_bytewise(input: &[u8]) -> Result<Vec<StreamEvent>, ParseError> {
        parse_chunks(ParserLimits::default(), input.chunks(1))
    }

    /// The error a stream must fail with, checked to be the same whether it arrives whole
    /// or one byte at a time.
    fn refusal(input: impl AsRef<[u8]>) -> ParseError {
        let input = input.as_ref();
        let whole = parse_whole(input).expect_err("input must be refused");
        assert_eq!(
            parse_bytewise(input).expect_err("input must be refused bytewise"),
            whole
        );
        whole
    }

    fn in_stream(body: &str) -> String {
        format!("{HEADER}{body}")
    }

    #[test]
    fn client_stream_whole_yields_expected_events() {
        assert_eq!(
            parse_whole(CLIENT_STREAM.as_bytes()).unwrap(),
            expected_client_events()
        );
    }

    #[test]
    fn client_stream_split_at_every_byte_boundary_yields_same_events() {
        let input = CLIENT_STREAM.as_bytes();
        let expected = expected_client_events();
        for split in 0..=input.len() {
            let (first, second) = input.split_at(split);
            assert_eq!(
                parse_chunks(ParserLimits::default(), [first, second]).unwrap(),
                expected,
                "split at {split}"
            );
        }
    }

    #[test]
    fn client_stream_fed_one_byte_at_a_time_yields_same_events() {
        assert_eq!(
            parse_bytewise(CLIENT_STREAM.as_bytes()).unwrap(),
            expected_client_events()
        );
    }

    #[test]
    fn events_are_buffered_until_taken() {
        let mut parser = StreamParser::new(ParserLimits::default());
        parser.feed(CLIENT_STREAM.as_bytes()).unwrap();
        let mut events = Vec::new();
        while let Some(event) = parser.next_event().unwrap() {
            events.push(event);
        }
        assert_eq!(events, expected_client_events());
        assert_eq!(parser.buffered(), 0);
        parser.feed(b"<ignored after close/>").unwrap();
        assert_eq!(parser.next_event().unwrap(), None);
    }

    #[test]
    fn header_without_declaration_and_stanza_without_xmlns_inherit_default_ns() {
        let events = parse_whole(in_stream("<presence/><stream:features/>").as_bytes()).unwrap();
        let [
            StreamEvent::Open(header),
            StreamEvent::Stanza(presence),
            StreamEvent::Stanza(features),
        ] = &events[..]
        else {
            panic!("unexpected events {events:?}");
        };
        assert_eq!(
            (
                header.name.as_str(),
                header.ns.as_str(),
                header.default_ns.as_str()
            ),
            ("stream", ns::STREAM, ns::CLIENT)
        );
        assert_eq!(header.attr("to"), Some("example.com"));
        assert_eq!(*presence, Element::new("presence", ns::CLIENT));
        assert_eq!(*features, Element::new("features", ns::STREAM));
    }

    #[test]
    fn line_ends_and_attribute_whitespace_are_normalized() {
        let events = parse_whole(
            in_stream("<message a='x\r\ny\tz'><body>1\r\n2\r3</body></message>").as_bytes(),
        )
        .unwrap();
        let expected = Element::new("message", ns::CLIENT)
            .with_attr("a", "x y z")
            .with_child(Element::new("body", ns::CLIENT).with_text("1\n2\n3"));
        assert_eq!(events.get(1), Some(&StreamEvent::Stanza(expected)));
    }

    #[test]
    fn refuses_doctype() {
        let input = format!("<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]>{HEADER}");
        assert!(matches!(refusal(input), ParseError::RestrictedXml(_)));
    }

    #[test]
    fn refuses_entity_declaration() {
        assert!(matches!(
            refusal(in_stream("<!ENTITY x 'y'>")),
            ParseError::RestrictedXml(_)
        ));
        assert!(matches!(
            refusal(in_stream("<message><!ENTITY x 'y'></message>")),
            ParseError::RestrictedXml(_)
        ));
    }

    #[test]
    fn refuses_comments() {
        assert!(matches!(
            refusal(in_stream("<!-- hi -->")),
            ParseError::RestrictedXml(_)
        ));
        assert!(matches!(
            refusal(in_stream("<message><!-- hi --></message>")),
            ParseError::RestrictedXml(_)
        ));
        assert!(matches!(
            refusal(format!("<!-- hi -->{HEADER}")),
            ParseError::RestrictedXml(_)
        ));
    }

    #[test]
    fn refuses_processing_instructions() {
        assert!(matches!(
            refusal(in_stream("<?php echo 1; ?>")),
            ParseError::RestrictedXml(_)
        ));
        assert!(matches!(
            refusal(in_stream("<message><?x y?></message>")),
            ParseError::RestrictedXml(_)
        ));
        assert!(matches!(
            refusal(format!("<?xml-stylesheet href='a'?>{HEADER}")),
            ParseError::RestrictedXml(_)
        ));
        let second_declaration = format!("<?xml version='1.0'?><?xml version='1.0'?>{HEADER}");
        assert!(matches!(
            refusal(second_declaration),
            ParseError::RestrictedXml(_)
        ));
    }

    #[test]
    fn refuses_custom_entity_references() {
        assert!(matches!(
            refusal(in_stream("<message><body>&nbsp;</body></message>")),
            ParseError::RestrictedXml(_)
        ));
        assert!(matches!(
            refusal(in_stream("<message to='&custom;'/>")),
            ParseError::RestrictedXml(_)
        ));
    }

    #[test]
    fn refuses_references_to_characters_not_allowed_in_xml() {
        for reference in [
            "&#0;",
            "&#x0;",
            "&#xD800;",
            "&#xFFFE;",
            "&#x110000;",
            "&#99999999999;",
            "&#;",
            "&#xZ;",
        ] {
            let input = in_stream(&format!("<message><body>{reference}</body></message>"));
            assert!(
                matches!(refusal(input), ParseError::NotWellFormed(_)),
                "{reference}"
            );
        }
    }

    #[test]
    fn refuses_bare_ampersand() {
        assert!(matches!(
            refusal(in_stream("<message><body>a & b</body></message>")),
            ParseError::NotWellFormed(_)
        ));
    }

    #[test]
    fn refuses_invalid_utf8() {
        let mut input = in_stream("<message><body>").into_bytes();
        input.extend_from_slice(b"\xff\xfe\xc3");
        input.extend_from_slice(b"</body></message>");
        assert!(matches!(refusal(input), ParseError::NotWellFormed(_)));
    }

    #[test]
    fn refuses_control_characters() {
        assert!(matches!(
            refusal(in_stream("<message><body>\u{1}</body></message>")),
            ParseError::NotWellFormed(_)
        ));
        assert!(matches!(
            refusal(in_stream("<message><body>\u{FFFF}</body></message>")),
            ParseError::NotWellFormed(_)
        ));
    }

    #[test]
    fn refuses_mismatched_end_tags() {
        let input = in_stream("<message><body></message></body></stream:stream>");
        assert!(matches!(refusal(input), ParseError::NotWellFormed(_)));
        assert!(matches!(
            refusal(in_stream("</stream:other>")),
            ParseError::NotWellFormed(_)
        ));
    }

    #[test]
    fn refuses_mismatched_end_tag_while_the_stanza_is_still_open() {
        // `</message>` closes `<body>` by depth; the stanza would never complete, so the
        // mismatch must be seen as soon as the end tag arrives.
        let mut p = StreamParser::new(ParserLimits::default());
        let r = p.feed(in_stream("<message><body>unclosed</message>").as_bytes());
        let err = r.err().or_else(|| {
            loop {
                match p.next_event() {
                    Ok(Some(_)) => continue,
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            }
        });
        assert!(matches!(err, Some(ParseError::NotWellFormed(_))), "{err:?}");
    }

    #[test]
    fn refuses_unbound_prefixes() {
        assert!(matches!(
            refusal(in_stream("<foo:bar/>")),
            ParseError::NotWellFormed(_)
        ));
        assert!(matches!(
            refusal(in_stream("<message a:b='1'/>")),
            ParseError::NotWellFormed(_)
        ));
        assert!(matches!(
            refusal("<s:stream xmlns='jabber:client'>"),
            ParseError::NotWellFormed(_)
        ));
    }

    #[test]
    fn refuses_malformed_qualified_names() {
        let bound = "xmlns:a='urn:u'";
        for body in [
            format!("<a:b:c {bound}/>"),
            format!("<:b {bound}/>"),
            format!("<message {bound} a:b:c='1'/>"),
            format!("<message {bound} :x='1'/>"),
        ] {
            assert!(
                matches!(refusal(in_stream(&body)), ParseError::NotWellFormed(_)),
                "{body}"
            );
        }
        let events = parse_whole(in_stream(&format!("<a:m {bound} a:x='1'/>")).as_bytes())
            .expect("a bound prefix is fine");
        let Some(StreamEvent::Stanza(el)) = events.last() else {
            panic!("no stanza: {events:?}");
        };
        assert_eq!((el.name(), el.ns()), ("m", "urn:u"));
    }

    #[test]
    fn refuses_duplicate_attributes() {
        assert!(matches!(
            refusal(in_stream("<message to='a' to='b'/>")),
            ParseError::NotWellFormed(_)
        ));
        // Past eight attributes the names go through a set instead of pairwise checks.
        let many = "<message a='1' b='2' c='3' d='4' e='5' f='6' g='7' h='8' i='9' c='10'/>";
        assert!(matches!(
            refusal(in_stream(many)),
            ParseError::NotWellFormed(_)
        ));
        let distinct = "<message a='1' b='2' c='3' d='4' e='5' f='6' g='7' h='8' i='9'/>";
        assert!(parse_whole(in_stream(distinct).as_bytes()).is_ok());
        let same_expanded_name = "<message xmlns:a='urn:u' xmlns:b='urn:u' a:x='1' b:x='2'/>";
        assert!(matches!(
            refusal(in_stream(same_expanded_name)),
            ParseError::NotWellFormed(_)
        ));
    }

    #[test]
    fn refuses_text_at_stream_level() {
        assert!(matches!(
            refusal(in_stream("hello")),
            ParseError::NotWellFormed(_)
        ));
        assert!(matches!(
            refusal(in_stream("<![CDATA[x]]>")),
            ParseError::NotWellFormed(_)
        ));
    }

    #[test]
    fn refuses_garbage_before_header() {
        assert!(matches!(
            refusal(format!("GET / HTTP/1.1\r\n{HEADER}")),
            ParseError::NotWellFormed(_)
        ));
        assert!(matches!(
            refusal(format!("</x>{HEADER}")),
            ParseError::NotWellFormed(_)
        ));
    }

    #[test]
    fn refuses_other_encodings() {
        let input = format!("<?xml version='1.0' encoding='ISO-8859-1'?>{HEADER}");
        assert!(matches!(refusal(input), ParseError::UnsupportedEncoding(_)));
        let utf16: Vec<u8> = "<?xml version='1.0'?>"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(matches!(refusal(utf16), ParseError::UnsupportedEncoding(_)));
    }

    #[test]
    fn refuses_oversize_stanza_while_it_arrives() {
        let limits = ParserLimits {
            max_stanza_bytes: 1000,
            max_depth: 32,
        };
        let mut parser = StreamParser::new(limits);
        parser.feed(HEADER.as_bytes()).unwrap();
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Open(_)))
        ));
        parser.feed(b"<message><body>").unwrap();
        let chunk = [b'a'; 100];
        let mut fed = 0;
        let error = loop {
            assert!(fed < 10_000, "the stanza was never refused");
            match parser.feed(&chunk) {
                Ok(()) => {
                    assert_eq!(parser.next_event(), Ok(None));
                    assert!(parser.buffered() <= limits.max_stanza_bytes + chunk.len());
                    fed += chunk.len();
                }
                Err(error) => break error,
            }
        };
        assert!(matches!(error, ParseError::PolicyViolation(_)));
        assert!(fed < 1000, "refused only after {fed} bytes");
        assert!(parser.buffered() <= limits.max_stanza_bytes + chunk.len());
        assert_eq!(parser.feed(b"</body></message>"), Err(error.clone()));
        assert_eq!(parser.next_event(), Err(error));
    }

    #[test]
    fn refuses_oversize_header() {
        let limits = ParserLimits {
            max_stanza_bytes: 100,
            max_depth: 32,
        };
        let input = format!(
            "<stream:stream xmlns:stream='{}' to='{}'>",
            ns::STREAM,
            "x".repeat(200)
        );
        let error = parse_chunks(limits, input.as_bytes().chunks(7)).unwrap_err();
        assert!(matches!(error, ParseError::PolicyViolation(_)));
    }

    #[test]
    fn stanza_at_exactly_the_size_limit_is_accepted() {
        // The header is subject to the same limit, so make the stanza the larger of the two.
        let stanza = format!("<presence>{}</presence>", "x".repeat(HEADER.len()));
        let limits = ParserLimits {
            max_stanza_bytes: stanza.len(),
            max_depth: 32,
        };
        let input = format!("{HEADER}{stanza}");
        assert_eq!(parse_chunks(limits, [input.as_bytes()]).unwrap().len(), 2);
        let limits = ParserLimits {
            max_stanza_bytes: stanza.len() - 1,
            max_depth: 32,
        };
        let error = parse_chunks(limits, [HEADER.as_bytes(), stanza.as_bytes()]).unwrap_err();
        assert!(matches!(error, ParseError::PolicyViolation(_)));
    }

    #[test]
    fn refuses_too_deep_nesting() {
        let limits = ParserLimits {
            max_stanza_bytes: 4096,
            max_depth: 4,
        };
        let allowed = in_stream("<a><b><c><d/></c></b></a>");
        assert_eq!(parse_chunks(limits, [allowed.as_bytes()]).unwrap().len(), 2);
        let too_deep = in_stream("<a><b><c><d><e/></d></c></b></a>");
        let error = parse_chunks(limits, too_deep.as_bytes().chunks(1)).unwrap_err();
        assert!(matches!(error, ParseError::PolicyViolation(_)));
        let unclosed = in_stream(&"<a>".repeat(10_000));
        let error = parse_chunks(limits, [unclosed.as_bytes()]).unwrap_err();
        assert!(matches!(error, ParseError::PolicyViolation(_)));
    }

    #[test]
    fn reset_after_stanza_expects_a_new_header() {
        let mut parser = StreamParser::new(ParserLimits::default());
        parser
            .feed(format!("{HEADER}<auth xmlns='{}'/><message><bo", ns::SASL).as_bytes())
            .unwrap();
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Open(_)))
        ));
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Stanza(_)))
        ));
        parser.reset();
        assert_eq!(parser.buffered(), 0);
        let restart = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
                       xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><iq type='get'/>";
        parser.feed(restart.as_bytes()).unwrap();
        let Ok(Some(StreamEvent::Open(header))) = parser.next_event() else {
            panic!("expected a header")
        };
        assert_eq!(header.default_ns, ns::SERVER);
        let expected = Element::new("iq", ns::SERVER).with_attr("type", "get");
        assert_eq!(parser.next_event(), Ok(Some(StreamEvent::Stanza(expected))));
        assert_eq!(parser.next_event(), Ok(None));
    }

    #[test]
    fn reset_clears_a_failure() {
        let mut parser = StreamParser::new(ParserLimits::default());
        assert!(parser.feed(b"garbage").is_err());
        parser.reset();
        parser.feed(HEADER.as_bytes()).unwrap();
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Open(_)))
        ));
    }

    #[test]
    fn self_closing_header_opens_and_closes() {
        let input = format!("<stream:stream xmlns:stream='{}'/>", ns::STREAM);
        let events = parse_whole(input.as_bytes()).unwrap();
        assert!(matches!(
            &events[..],
            [StreamEvent::Open(_), StreamEvent::Close]
        ));
    }

    #[test]
    fn whitespace_keepalives_are_not_kept() {
        let mut parser = StreamParser::new(ParserLimits::default());
        parser.feed(HEADER.as_bytes()).unwrap();
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Open(_)))
        ));
        parser.feed(" \n".repeat(1000).as_bytes()).unwrap();
        assert_eq!(parser.next_event(), Ok(None));
        assert_eq!(parser.buffered(), 0);
    }

    #[test]
    fn idle_parser_releases_a_large_buffer() {
        let mut parser = StreamParser::new(ParserLimits::default());
        let big = format!(
            "{HEADER}<message><body>{}</body></message>",
            "x".repeat(100_000)
        );
        for chunk in big.as_bytes().chunks(4096) {
            parser.feed(chunk).unwrap();
        }
        while parser.next_event().unwrap().is_some() {}
        assert_eq!(parser.buffered(), 0);
        assert!(
            parser.buf.capacity() <= RETAINED_BUFFER_CAPACITY,
            "capacity {}",
            parser.buf.capacity()
        );
        parser.feed(b" <presence/> <pre").unwrap();
        assert!(matches!(
            parser.next_event(),
            Ok(Some(StreamEvent::Stanza(_)))
        ));
        assert_eq!(parser.buffered(), "<pre".len());
    }

    #[test]
    fn parse_element_websocket_open() {
        let frame = b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='x' version='1.0'/>";
        let expected = Element::new("open", "urn:ietf:params:xml:ns:xmpp-framing")
            .with_attr("to", "x")
            .with_attr("version", "1.0");
        assert_eq!(
            parse_element(frame, ns::CLIENT, ParserLimits::default()),
            Ok(expected)
        );
    }

    #[test]
    fn parse_element_bosh_body_with_declaration_and_whitespace() {
        let body = b"<?xml version='1.0' encoding='utf-8'?>\n<body rid='1' xmlns='http://jabber.org/protocol/httpbind'>\
                     <message xmlns='jabber:client' to='a'><body>hi</body></message></body>\r\n";
        let expected = Element::new("body", "http://jabber.org/protocol/httpbind")
            .with_attr("rid", "1")
            .with_child(
                Element::new("message", ns::CLIENT)
                    .with_attr("to", "a")
                    .with_child(Element::new("body", ns::CLIENT).with_text("hi")),
            );
        assert_eq!(
            parse_element(body, ns::CLIENT, ParserLimits::default()),
            Ok(expected)
        );
    }

    #[test]
    fn parse_element_inherits_default_ns() {
        let parsed = parse_element(
            b" <presence type='unavailable'/> ",
            ns::CLIENT,
            ParserLimits::default(),
        );
        assert_eq!(
            parsed,
            Ok(Element::new("presence", ns::CLIENT).with_attr("type", "unavailable"))
        );
    }

    /// The stream error condition an error maps to.
    fn condition(error: &ParseError) -> &'static str {
        match error {
            ParseError::NotWellFormed(_) => "not-well-formed",
            ParseError::RestrictedXml(_) => "restricted-xml",
            ParseError::PolicyViolation(_) => "policy-violation",
            ParseError::UnsupportedEncoding(_) => "unsupported-encoding",
        }
    }

    #[test]
    fn parse_element_refusals() {
        let limits = ParserLimits {
            max_stanza_bytes: 64,
            max_depth: 3,
        };
        let oversize = format!("<a>{}</a>", "x".repeat(60));
        let cases = [
            ("", "not-well-formed"),
            ("<a>", "not-well-formed"),
            ("<a/>x", "not-well-formed"),
            ("<a/><b/>", "not-well-formed"),
            ("<a></b>", "not-well-formed"),
            ("<a/><!-- c -->", "restricted-xml"),
            ("<!DOCTYPE a><a/>", "restricted-xml"),
            ("<a>&foo;</a>", "restricted-xml"),
            (
                "<?xml version='1.0' encoding='latin1'?><a/>",
                "unsupported-encoding",
            ),
            ("<a><b><c><d/></c></b></a>", "policy-violation"),
            (oversize.as_str(), "policy-violation"),
        ];
        for (input, expected) in cases {
            let error = parse_element(input.as_bytes(), ns::CLIENT, limits).expect_err(input);
            assert_eq!(condition(&error), expected, "{input}: {error:?}");
        }
    }

    /// Bytes that are interesting to the scanner, for mutations.
    const MARKUP_BYTES: &[u8] = b"<>/&;'\"![]?:=x# \n\xc3\xa9\x00";

    fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..=out.len());
            match rng.random_range(0..4) {
                0 if at < out.len() => {
                    out[at] = MARKUP_BYTES[rng.random_range(0..MARKUP_BYTES.len())]
                }
                1 => out.insert(at, MARKUP_BYTES[rng.random_range(0..MARKUP_BYTES.len())]),
                2 => {
                    let end = rng.random_range(at..=out.len().min(at + 20));
                    out.drain(at..end);
                }
                _ => {
                    let end = rng.random_range(at..=out.len().min(at + 40));
                    let copy = out[at..end].to_vec();
                    let to = rng.random_range(0..=out.len());
                    out.splice(to..to, copy);
                }
            }
        }
        out
    }

    /// Feeds `input` in random chunks; it may be refused, but nothing may panic and the
    /// buffer must stay within the limit once events are taken.
    fn feed_randomly(rng: &mut StdRng, input: &[u8], limits: ParserLimits) {
        let mut parser = StreamParser::new(limits);
        let mut rest = input;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rng.random_range(1..=rest.len().min(64)));
            rest = tail;
            if parser.feed(chunk).is_err() {
                return;
            }
            loop {
                match parser.next_event() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
            assert!(
                parser.buffered() <= limits.max_stanza_bytes,
                "buffered {}",
                parser.buffered()
            );
        }
    }

    #[test]
    fn random_and_mutated_input_never_panics() {
        let mut rng = StdRng::seed_from_u64(0x4865_6c69_6f67);
        let valid = CLIENT_STREAM.as_bytes();
        for round in 0..3000 {
            let limits = if round % 3 == 0 {
                ParserLimits {
                    max_stanza_bytes: 200,
                    max_depth: 3,
                }
            } else {
                ParserLimits::default()
            };
            let input = if round % 4 == 0 {
                let len = rng.random_range(0..300);
                (0..len).map(|_| rng.random::<u8>()).collect()
            } else {
                mutate(&mut rng, valid)
            };
            feed_randomly(&mut rng, &input, limits);
            let _ = parse_element(&input, ns::CLIENT, limits);
            if let Some(start) = input.iter().position(|&b| b == b'<') {
                let _ = parse_element(&input[start..], ns::CLIENT, limits);
            }
        }
    }
}
