//! Incremental XMPP stream parser.
//!
//! Bytes arrive in arbitrary chunks; [`StreamParser`] yields the stream header, whole
//! top-level stanzas (as namespace-resolved [`Element`]s) and the stream close. Limits on
//! stanza size and depth are enforced while scanning, before a stanza is buffered whole.
//! XMPP's restricted XML profile (RFC 6120 §11.1) is enforced: DTDs, comments, processing
//! instructions (other than the XML declaration) and entity references other than the five
//! predefined ones and character references are refused.
//!
//! STUB: the real implementation is being written; the interface below is fixed.

use super::Element;

/// Size and depth limits applied while parsing.
#[derive(Debug, Clone, Copy)]
pub struct ParserLimits {
    /// Maximum serialized size of one top-level stanza in bytes (default 256 KiB).
    pub max_stanza_bytes: usize,
    /// Maximum element nesting depth inside a stanza (default 32).
    pub max_depth: usize,
}

impl Default for ParserLimits {
    fn default() -> Self {
        ParserLimits { max_stanza_bytes: 256 * 1024, max_depth: 32 }
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
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
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
}

impl StreamParser {
    pub fn new(limits: ParserLimits) -> Self {
        StreamParser { limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> ParserLimits {
        self.limits
    }

    /// Appends received bytes. Fails as soon as the bytes seen so far violate a limit or
    /// the restricted-XML profile, without buffering past the limit.
    pub fn feed(&mut self, _data: &[u8]) -> Result<(), ParseError> {
        todo!()
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, ParseError> {
        todo!()
    }

    /// Discards all state and expects a new stream header (stream restart after STARTTLS or
    /// SASL success).
    pub fn reset(&mut self) {
        todo!()
    }

    /// Bytes currently buffered (for memory accounting).
    pub fn buffered(&self) -> usize {
        0
    }
}

/// Parses one complete standalone element (a BOSH `<body/>`, a WebSocket frame). Elements
/// without an `xmlns` inherit `default_ns`. The same restrictions and limits apply.
pub fn parse_element(_data: &[u8], _default_ns: &str, _limits: ParserLimits) -> Result<Element, ParseError> {
    todo!()
}
