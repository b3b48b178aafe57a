//! Stanza helpers shared by the session core and the services: kinds, addressing,
//! stanza errors (RFC 6120 §8.3) and iq replies.

use heliograph_xml::{Element, ns};

/// The three stanza kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Message,
    Presence,
    Iq,
}

impl Kind {
    /// The kind of a top-level element in `jabber:client`, if it is a stanza.
    pub fn of(el: &Element) -> Option<Kind> {
        if el.ns() != ns::CLIENT {
            return None;
        }
        match el.name() {
            "message" => Some(Kind::Message),
            "presence" => Some(Kind::Presence),
            "iq" => Some(Kind::Iq),
            _ => None,
        }
    }
}

/// `type` attribute of a stanza ("" when absent).
pub fn stanza_type(el: &Element) -> &str {
    el.attr("type").unwrap_or("")
}

/// Stanza error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// Stanza error conditions with their default error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    SubscriptionRequired,
    UndefinedCondition,
    UnexpectedRequest,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::Conflict => "conflict",
            Condition::FeatureNotImplemented => "feature-not-implemented",
            Condition::Forbidden => "forbidden",
            Condition::InternalServerError => "internal-server-error",
            Condition::ItemNotFound => "item-not-found",
            Condition::JidMalformed => "jid-malformed",
            Condition::NotAcceptable => "not-acceptable",
            Condition::NotAllowed => "not-allowed",
            Condition::NotAuthorized => "not-authorized",
            Condition::PolicyViolation => "policy-violation",
            Condition::RecipientUnavailable => "recipient-unavailable",
            Condition::RegistrationRequired => "registration-required",
            Condition::RemoteServerNotFound => "remote-server-not-found",
            Condition::RemoteServerTimeout => "remote-server-timeout",
            Condition::ResourceConstraint => "resource-constraint",
            Condition::ServiceUnavailable => "service-unavailable",
            Condition::SubscriptionRequired => "subscription-required",
            Condition::UndefinedCondition => "undefined-condition",
            Condition::UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120 §8.3.3 associates with the condition.
    pub fn default_type(self) -> ErrorType {
        match self {
            Condition::BadRequest
            | Condition::JidMalformed
            | Condition::NotAcceptable
            | Condition::PolicyViolation => ErrorType::Modify,
            Condition::Forbidden
            | Condition::NotAuthorized
            | Condition::RegistrationRequired
            | Condition::SubscriptionRequired => ErrorType::Auth,
            Condition::InternalServerError
            | Condition::RecipientUnavailable
            | Condition::RemoteServerTimeout
            | Condition::ResourceConstraint
            | Condition::UnexpectedRequest => ErrorType::Wait,
            _ => ErrorType::Cancel,
        }
    }
}

/// Builds the `<error/>` child for a condition.
pub fn error_element(cond: Condition, text: Option<&str>) -> Element {
    let mut err = Element::new("error", ns::CLIENT).with_attr("type", cond.default_type().as_str());
    err.push_child(Element::new(cond.name(), ns::STANZAS_ERRORS));
    if let Some(t) = text {
        err.push_child(
            Element::new("text", ns::STANZAS_ERRORS)
                .with_attr("xml:lang", "en")
                .with_text(t),
        );
    }
    err
}

/// True when a stanza must never be answered with an error (it is an error itself).
pub fn is_error(el: &Element) -> bool {
    stanza_type(el) == "error"
}

/// The error reply to `original`: addresses swapped, `type='error'`, the original payload
/// kept (RFC 6120 §8.3.1 allows it) and the error appended. `None` if the original was an
/// error itself (errors are never answered).
pub fn error_reply(original: &Element, cond: Condition, text: Option<&str>) -> Option<Element> {
    if is_error(original) {
        return None;
    }
    heliograph_metrics::stanza_error(cond.name());
    let mut reply = Element::new(original.name(), ns::CLIENT);
    if let Some(id) = original.attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(from) = original.attr("to") {
        reply.set_attr("from", from);
    }
    if let Some(to) = original.attr("from") {
        reply.set_attr("to", to);
    }
    reply.set_attr("type", "error");
    // Keep only the first payload child of iqs, all children of others (bounded by the
    // original's own size limit).
    for child in original.children() {
        reply.push_child(child.clone());
        if original.name() == "iq" {
            break;
        }
    }
    reply.push_child(error_element(cond, text));
    Some(reply)
}

/// An empty `type='result'` answer to an iq.
pub fn iq_result(iq: &Element) -> Element {
    let mut reply = Element::new("iq", ns::CLIENT).with_attr("type", "result");
    if let Some(id) = iq.attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(from) = iq.attr("to") {
        reply.set_attr("from", from);
    }
    if let Some(to) = iq.attr("from") {
        reply.set_attr("to", to);
    }
    reply
}

/// `iq_result` with one payload child.
pub fn iq_result_with(iq: &Element, payload: Element) -> Element {
    iq_result(iq).with_child(payload)
}

/// The iq's payload (its first child element).
pub fn iq_payload(iq: &Element) -> Option<&Element> {
    iq.first_child()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_reply_swaps_addresses_and_keeps_payload() {
        let iq = Element::new("iq", ns::CLIENT)
            .with_attr("id", "1")
            .with_attr("type", "get")
            .with_attr("from", "a@x/r")
            .with_attr("to", "x")
            .with_child(Element::new("query", "urn:example"));
        let r = error_reply(&iq, Condition::ServiceUnavailable, None).unwrap();
        assert_eq!(
            r.to_string_in(ns::CLIENT),
            "<iq id=\"1\" from=\"x\" to=\"a@x/r\" type=\"error\"><query xmlns=\"urn:example\"/>\
             <error type=\"cancel\"><service-unavailable xmlns=\"urn:ietf:params:xml:ns:xmpp-stanzas\"/></error></iq>"
        );
        let err = Element::new("message", ns::CLIENT).with_attr("type", "error");
        assert!(error_reply(&err, Condition::BadRequest, None).is_none());
    }
}
