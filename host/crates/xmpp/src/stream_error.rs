//! Stream error conditions (RFC 6120 §4.9.3) and the `<stream:error/>` element.

use heliograph_xml::{Element, ParseError, ns};

/// The stream error conditions the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamErrorCondition {
    BadFormat,
    Conflict,
    ConnectionTimeout,
    HostGone,
    HostUnknown,
    ImproperAddressing,
    InternalServerError,
    InvalidFrom,
    InvalidNamespace,
    InvalidXml,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    ResourceConstraint,
    RestrictedXml,
    SeeOtherHost,
    SystemShutdown,
    UndefinedCondition,
    UnsupportedEncoding,
    UnsupportedStanzaType,
    UnsupportedVersion,
}

impl StreamErrorCondition {
    pub fn name(self) -> &'static str {
        use StreamErrorCondition::*;
        match self {
            BadFormat => "bad-format",
            Conflict => "conflict",
            ConnectionTimeout => "connection-timeout",
            HostGone => "host-gone",
            HostUnknown => "host-unknown",
            ImproperAddressing => "improper-addressing",
            InternalServerError => "internal-server-error",
            InvalidFrom => "invalid-from",
            InvalidNamespace => "invalid-namespace",
            InvalidXml => "invalid-xml",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            ResourceConstraint => "resource-constraint",
            RestrictedXml => "restricted-xml",
            SeeOtherHost => "see-other-host",
            SystemShutdown => "system-shutdown",
            UndefinedCondition => "undefined-condition",
            UnsupportedEncoding => "unsupported-encoding",
            UnsupportedStanzaType => "unsupported-stanza-type",
            UnsupportedVersion => "unsupported-version",
        }
    }

    /// The condition for a parser refusal.
    pub fn from_parse_error(e: &ParseError) -> Self {
        match e {
            ParseError::NotWellFormed(_) => StreamErrorCondition::NotWellFormed,
            ParseError::RestrictedXml(_) => StreamErrorCondition::RestrictedXml,
            ParseError::PolicyViolation(_) => StreamErrorCondition::PolicyViolation,
            ParseError::UnsupportedEncoding(_) => StreamErrorCondition::UnsupportedEncoding,
        }
    }

    /// `<stream:error>` with this condition and optional text.
    pub fn to_element(self, text: Option<&str>) -> Element {
        // `see-other-host` carries the new host as its content (RFC 6120 4.9.3.19).
        if let (StreamErrorCondition::SeeOtherHost, Some(host)) = (self, text) {
            return Element::new("error", ns::STREAM)
                .with_child(Element::new(self.name(), ns::STREAMS_ERRORS).with_text(host));
        }
        let mut el = Element::new("error", ns::STREAM)
            .with_child(Element::new(self.name(), ns::STREAMS_ERRORS));
        if let Some(t) = text {
            el.push_child(
                Element::new("text", ns::STREAMS_ERRORS)
                    .with_attr("xml:lang", "en")
                    .with_text(t),
            );
        }
        el
    }
}
