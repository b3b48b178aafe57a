//! XEP-0388 (SASL2) framing with XEP-0386 (Bind 2) and XEP-0484 (FAST) inline: the
//! `<authentication/>` feature, the client's `<authenticate/>` request, and the
//! `<challenge/>`, `<success/>` and `<failure/>` elements. The exchange itself is the same
//! as legacy SASL (the session core drives it); only the wrapping and what happens on
//! success differ (no stream restart, inline bind, FAST tokens).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::sasl::{Mechanism, SaslFailure};
use crate::tokens::fast::HtMechanism;
use crate::xml::{Element, ns};

/// What the client asked for in `<authenticate/>`, besides the mechanism.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sasl2Request {
    /// `<user-agent id=...>`.
    pub user_agent_id: Option<String>,
    /// `<bind xmlns='urn:xmpp:bind:0'>` was present; its `<tag/>`, if any.
    pub bind: Option<BindRequest>,
    /// `<request-token xmlns='urn:xmpp:fast:0' mechanism=.../>`.
    pub request_token: Option<HtMechanism>,
    /// `<fast xmlns='urn:xmpp:fast:0'/>`: `count` and `invalidate`.
    pub fast: Option<FastRequest>,
    /// `<resume xmlns='urn:xmpp:sm:3'/>`: resume this stream management session instead
    /// of binding a new one.
    pub resume: Option<ResumeRequest>,
}

/// Bind 2 request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindRequest {
    pub tag: Option<String>,
    /// `<enable xmlns='urn:xmpp:sm:3'/>` inline: stream management from the start.
    pub sm: Option<SmEnable>,
}

/// A stream management `<enable/>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmEnable {
    /// `resume='true'`
    pub resume: bool,
    /// The client's preferred longest resumption time, in seconds.
    pub max: Option<u64>,
}

impl SmEnable {
    /// Reads an `<enable/>` element.
    pub fn parse(el: &Element) -> SmEnable {
        SmEnable {
            resume: matches!(el.attr("resume"), Some("true" | "1")),
            max: el.attr("max").and_then(|m| m.trim().parse().ok()),
        }
    }
}

/// A stream management `<resume/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRequest {
    pub previd: String,
    /// The client's `h`.
    pub handled: u32,
}

impl ResumeRequest {
    /// Reads a `<resume/>` element (`previd` and `h` are required).
    pub fn parse(el: &Element) -> Option<ResumeRequest> {
        Some(ResumeRequest {
            previd: el.attr("previd").filter(|p| !p.is_empty())?.to_string(),
            handled: super::sm::h_of(el)?,
        })
    }
}

/// A FAST authentication's options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FastRequest {
    pub count: Option<u64>,
    pub invalidate: bool,
}

/// The mechanism named by `<authenticate mechanism=.../>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sasl2Mechanism {
    Sasl(Mechanism),
    Fast(HtMechanism),
}

/// Why an `<authenticate/>` cannot be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Sasl2Error {
    #[error("unknown mechanism")]
    Mechanism,
    #[error("invalid base64 in the initial response")]
    Encoding,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

impl Sasl2Error {
    pub fn failure(&self) -> SaslFailure {
        match self {
            Sasl2Error::Mechanism => SaslFailure::InvalidMechanism,
            Sasl2Error::Encoding => SaslFailure::IncorrectEncoding,
            Sasl2Error::Malformed(_) => SaslFailure::MalformedRequest,
        }
    }
}

fn decode(text: &str) -> Result<Vec<u8>, Sasl2Error> {
    let t = text.trim();
    if t.is_empty() || t == "=" {
        return Ok(Vec::new());
    }
    B64.decode(t).map_err(|_| Sasl2Error::Encoding)
}

/// Parses `<authenticate/>`: the mechanism, the initial response (`None` when absent) and
/// the inline requests.
pub fn parse_authenticate(
    el: &Element,
) -> Result<(Sasl2Mechanism, Option<Vec<u8>>, Sasl2Request), Sasl2Error> {
    let name = el.attr("mechanism").unwrap_or("");
    let mech = match (Mechanism::from_name(name), HtMechanism::from_name(name)) {
        (Some(m), _) => Sasl2Mechanism::Sasl(m),
        (None, Some(h)) => Sasl2Mechanism::Fast(h),
        (None, None) => return Err(Sasl2Error::Mechanism),
    };
    let initial = match el.child("initial-response", ns::SASL2) {
        Some(ir) => Some(decode(&ir.text())?),
        None => None,
    };
    let mut req = Sasl2Request::default();
    if let Some(ua) = el.child("user-agent", ns::SASL2) {
        let id = ua.attr("id").unwrap_or("").trim();
        if id.is_empty() || id.len() > 256 {
            return Err(Sasl2Error::Malformed("user-agent id"));
        }
        req.user_agent_id = Some(id.to_string());
    }
    if let Some(b) = el.child("bind", ns::BIND2) {
        let tag = b.child_text("tag", ns::BIND2).map(|t| t.trim().to_string());
        req.bind = Some(BindRequest {
            tag: tag.filter(|t| !t.is_empty()),
            sm: b.child("enable", super::sm::NS).map(SmEnable::parse),
        });
    }
    if let Some(r) = el.child("resume", super::sm::NS) {
        req.resume =
            Some(ResumeRequest::parse(r).ok_or(Sasl2Error::Malformed("resume previd or h"))?);
    }
    if let Some(rt) = el.child("request-token", ns::FAST) {
        req.request_token = Some(
            rt.attr("mechanism")
                .and_then(HtMechanism::from_name)
                .ok_or(Sasl2Error::Malformed("request-token mechanism"))?,
        );
    }
    if let Some(f) = el.child("fast", ns::FAST) {
        let count = match f.attr("count") {
            Some(c) => Some(
                c.parse::<u64>()
                    .map_err(|_| Sasl2Error::Malformed("fast count"))?,
            ),
            None => None,
        };
        req.fast = Some(FastRequest {
            count,
            invalidate: matches!(f.attr("invalidate"), Some("1" | "true")),
        });
    }
    Ok((mech, initial, req))
}

/// Decodes a SASL2 `<response/>`.
pub fn decode_response(el: &Element) -> Result<Vec<u8>, SaslFailure> {
    decode(&el.text()).map_err(|_| SaslFailure::IncorrectEncoding)
}

/// The `<authentication/>` stream feature; with `sm`, stream management can be resumed
/// inline and enabled inline with Bind 2.
pub fn feature(mechs: &[Mechanism], fast: &[HtMechanism], sm: bool) -> Element {
    let mut auth = Element::new("authentication", ns::SASL2);
    for m in mechs {
        auth.push_child(Element::new("mechanism", ns::SASL2).with_text(m.name()));
    }
    let mut inline = Element::new("inline", ns::SASL2);
    let mut bind = Element::new("bind", ns::BIND2);
    if sm {
        bind.push_child(
            Element::new("inline", ns::BIND2)
                .with_child(Element::new("feature", ns::BIND2).with_attr("var", super::sm::NS)),
        );
        inline.push_child(Element::new("sm", super::sm::NS));
    }
    inline.push_child(bind);
    if !fast.is_empty() {
        let mut f = Element::new("fast", ns::FAST);
        for m in fast {
            f.push_child(Element::new("mechanism", ns::FAST).with_text(m.name()));
        }
        inline.push_child(f);
    }
    auth.push_child(inline);
    auth
}

/// `<challenge xmlns='urn:xmpp:sasl:2'>`.
pub fn challenge(data: &[u8]) -> Element {
    let text = if data.is_empty() {
        "=".to_string()
    } else {
        B64.encode(data)
    };
    Element::new("challenge", ns::SASL2).with_text(text)
}

/// `<failure xmlns='urn:xmpp:sasl:2'>` with a RFC 6120 condition.
pub fn failure(cond: SaslFailure, text: Option<&str>) -> Element {
    let mut el =
        Element::new("failure", ns::SASL2).with_child(Element::new(cond.condition(), ns::SASL));
    if let Some(t) = text {
        el.push_child(Element::new("text", ns::SASL2).with_text(t));
    }
    el
}

/// What goes into `<success/>`.
pub struct SuccessParts<'a> {
    pub additional_data: Option<&'a [u8]>,
    /// Bare JID, or full JID when bound inline or resumed.
    pub authorization_identifier: &'a str,
    /// Bound inline: the children of `<bound/>` (stream management's `<enabled/>`).
    pub bound: Option<Vec<Element>>,
    /// A new FAST token and its expiry (seconds since the epoch).
    pub token: Option<(&'a str, u64)>,
}

/// `<success xmlns='urn:xmpp:sasl:2'>`.
pub fn success(parts: SuccessParts<'_>) -> Element {
    let mut el = Element::new("success", ns::SASL2);
    if let Some(d) = parts.additional_data {
        el.push_child(Element::new("additional-data", ns::SASL2).with_text(B64.encode(d)));
    }
    el.push_child(
        Element::new("authorization-identifier", ns::SASL2)
            .with_text(parts.authorization_identifier),
    );
    if let Some(children) = parts.bound {
        let mut bound = Element::new("bound", ns::BIND2);
        for c in children {
            bound.push_child(c);
        }
        el.push_child(bound);
    }
    if let Some((token, expiry)) = parts.token {
        let expiry = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(expiry),
        );
        el.push_child(
            Element::new("token", ns::FAST)
                .with_attr("token", token)
                .with_attr("expiry", expiry.to_string()),
        );
    }
    el
}

/// The resource for a Bind 2 request: `tag.` plus a stable suffix derived from the
/// user-agent id (the same client gets the same resource back), else a random one.
pub fn bind2_resource(tag: Option<&str>, user_agent_id: Option<&str>) -> String {
    let suffix = match user_agent_id {
        Some(id) => crate::tokens::fast::client_key(id)[..8].to_string(),
        None => format!("{:08x}", rand::random::<u32>()),
    };
    let tag: String = tag
        .unwrap_or("hg")
        .chars()
        .filter(|c| !c.is_control() && *c != '/' && *c != '@')
        .take(64)
        .collect();
    let tag = if tag.is_empty() { "hg".into() } else { tag };
    format!("{tag}.{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        crate::xml::parser::parse_element(
            xml.as_bytes(),
            ns::CLIENT,
            crate::xml::ParserLimits::default(),
        )
        .unwrap()
    }

    #[test]
    fn parses_a_full_authenticate() {
        let el = parse(
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'>\
             <initial-response>AGFsaWNlAHB3</initial-response>\
             <user-agent id='d4565fa7-4d72-4749-b3d3-740edbf87770'><software>X</software></user-agent>\
             <bind xmlns='urn:xmpp:bind:0'><tag>AwesomeXMPP</tag>\
             <enable xmlns='urn:xmpp:sm:3' resume='true' max='600'/></bind>\
             <request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>\
             <resume xmlns='urn:xmpp:sm:3' previd='abc' h='3'/>\
             </authenticate>",
        );
        let (mech, initial, req) = parse_authenticate(&el).unwrap();
        assert_eq!(mech, Sasl2Mechanism::Sasl(Mechanism::Plain));
        assert_eq!(initial.as_deref(), Some(&b"\0alice\0pw"[..]));
        assert_eq!(
            req.user_agent_id.as_deref(),
            Some("d4565fa7-4d72-4749-b3d3-740edbf87770")
        );
        let bind = req.bind.unwrap();
        assert_eq!(bind.tag.as_deref(), Some("AwesomeXMPP"));
        assert_eq!(
            bind.sm,
            Some(SmEnable {
                resume: true,
                max: Some(600)
            })
        );
        assert_eq!(
            req.resume,
            Some(ResumeRequest {
                previd: "abc".into(),
                handled: 3
            })
        );
        assert_eq!(req.request_token, Some(HtMechanism::None));
        let el = parse(
            "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='HT-SHA-256-EXPR'>\
             <fast xmlns='urn:xmpp:fast:0' count='7' invalidate='true'/></authenticate>",
        );
        let (mech, initial, req) = parse_authenticate(&el).unwrap();
        assert_eq!(mech, Sasl2Mechanism::Fast(HtMechanism::Exporter));
        assert_eq!(initial, None);
        assert_eq!(
            req.fast,
            Some(FastRequest {
                count: Some(7),
                invalidate: true
            })
        );
    }

    #[test]
    fn refuses_bad_requests() {
        for (xml, want) in [
            (
                "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='NOPE'/>",
                Sasl2Error::Mechanism,
            ),
            (
                "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>!!</initial-response></authenticate>",
                Sasl2Error::Encoding,
            ),
            (
                "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><user-agent/></authenticate>",
                Sasl2Error::Malformed("user-agent id"),
            ),
            (
                "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><request-token xmlns='urn:xmpp:fast:0' mechanism='X'/></authenticate>",
                Sasl2Error::Malformed("request-token mechanism"),
            ),
            (
                "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='HT-SHA-256-NONE'><fast xmlns='urn:xmpp:fast:0' count='-1'/></authenticate>",
                Sasl2Error::Malformed("fast count"),
            ),
            (
                "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><resume xmlns='urn:xmpp:sm:3' previd='x' h='-2'/></authenticate>",
                Sasl2Error::Malformed("resume previd or h"),
            ),
        ] {
            assert_eq!(parse_authenticate(&parse(xml)).unwrap_err(), want, "{xml}");
        }
    }

    #[test]
    fn bind2_resources_are_stable_per_client() {
        let a = bind2_resource(Some("App"), Some("ua-1"));
        assert_eq!(a, bind2_resource(Some("App"), Some("ua-1")));
        assert_ne!(a, bind2_resource(Some("App"), Some("ua-2")));
        assert!(a.starts_with("App."));
        assert!(bind2_resource(Some("a/b@c"), None).starts_with("abc."));
    }
}
