//! JID normalization as the server compares addresses (RFC 7622, through the `jid` crate).

/// Normalizes a username to a localpart of `domain` (nodeprep); `None` if it is not a
/// valid localpart.
pub fn normalize_localpart(username: &str, domain: &str) -> Option<String> {
    if username.is_empty() || username.contains(['@', '/']) {
        return None;
    }
    let bare = jid::BareJid::new(&format!("{username}@{domain}")).ok()?;
    bare.node().map(|n| n.as_str().to_string())
}

/// A domain as the server compares it: a valid JID domainpart, lowercase, no trailing
/// dot. `None` if invalid.
pub fn normalize_domain(d: &str) -> Option<String> {
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    let j = jid::BareJid::new(&d).ok()?;
    if j.node().is_some() || d.contains('/') {
        return None;
    }
    Some(j.domain().as_str().to_string())
}

/// The bare form of a JID string (unchanged if it is not a valid JID).
pub fn bare(jid: &str) -> String {
    match jid::Jid::new(jid) {
        Ok(j) => j.to_bare().to_string(),
        Err(_) => jid.to_string(),
    }
}

/// A JID's parts, borrowed from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JidParts<'a> {
    pub node: Option<&'a str>,
    pub domain: &'a str,
    pub resource: Option<&'a str>,
}

/// The parts of `jid` if a check that needs no Unicode tables shows it is already in
/// normal form (RFC 7622): ASCII only, a localpart of lowercase letters, digits and
/// `.` `_` `-`, a lowercase host name as domain, a resource of visible ASCII. Such a JID
/// normalizes to itself. `None` means only "not recognised here": the `jid` crate decides
/// then. Every stanza's `to` is checked, and the full normalization was about 4% of the
/// server's CPU per chat message.
pub fn normal_ascii(jid: &str) -> Option<JidParts<'_>> {
    const MAX_PART: usize = 1023;
    let (bare, resource) = match jid.split_once('/') {
        Some((bare, resource)) => (bare, Some(resource)),
        None => (jid, None),
    };
    let (node, domain) = match bare.split_once('@') {
        Some((node, domain)) => (Some(node), domain),
        None => (None, bare),
    };
    let node_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= MAX_PART
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    };
    let resource_ok =
        |r: &str| !r.is_empty() && r.len() <= MAX_PART && r.bytes().all(|b| b.is_ascii_graphic());
    if node.is_some_and(|n| !node_ok(n))
        || resource.is_some_and(|r| !resource_ok(r))
        || !is_plain_host_name(domain)
    {
        return None;
    }
    Some(JidParts {
        node,
        domain,
        resource,
    })
}

/// A lowercase ASCII host name (RFC 1123 labels, no punycode), which IDNA leaves as is.
fn is_plain_host_name(domain: &str) -> bool {
    domain.len() <= 253
        && domain.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
                && !(b.len() >= 4 && b[2] == b'-' && b[3] == b'-')
                && b.iter()
                    .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        })
}

/// A JID read from a stanza: borrowed when [`normal_ascii`] recognises it, normalized by
/// the `jid` crate otherwise.
#[derive(Debug, Clone)]
pub enum ParsedJid<'a> {
    Normal(JidParts<'a>),
    Prepared(jid::Jid),
}

impl<'a> ParsedJid<'a> {
    /// Parses `text`; an error if it is not a valid JID.
    pub fn parse(text: &'a str) -> Result<ParsedJid<'a>, jid::Error> {
        match normal_ascii(text) {
            Some(parts) => Ok(ParsedJid::Normal(parts)),
            None => jid::Jid::new(text).map(ParsedJid::Prepared),
        }
    }

    /// True if the text it was read from is its normal form.
    pub fn was_normal(&self) -> bool {
        matches!(self, ParsedJid::Normal(_))
    }

    pub fn node(&self) -> Option<&str> {
        match self {
            ParsedJid::Normal(p) => p.node,
            ParsedJid::Prepared(j) => j.node().map(|n| n.as_str()),
        }
    }

    pub fn domain(&self) -> &str {
        match self {
            ParsedJid::Normal(p) => p.domain,
            ParsedJid::Prepared(j) => j.domain().as_str(),
        }
    }

    pub fn resource(&self) -> Option<&str> {
        match self {
            ParsedJid::Normal(p) => p.resource,
            ParsedJid::Prepared(j) => j.resource().map(|r| r.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the `jid` crate makes of `text`, as parts.
    fn prepared(text: &str) -> Option<(Option<String>, String, Option<String>)> {
        let j = jid::Jid::new(text).ok()?;
        Some((
            j.node().map(|n| n.as_str().to_string()),
            j.domain().as_str().to_string(),
            j.resource().map(|r| r.as_str().to_string()),
        ))
    }

    fn check_agrees(text: &str) {
        if let Some(p) = normal_ascii(text) {
            let j = jid::Jid::new(text)
                .unwrap_or_else(|e| panic!("{text:?} recognised but invalid: {e}"));
            assert_eq!(j.to_string(), text, "{text:?} is not its normal form");
            assert_eq!(
                prepared(text),
                Some((
                    p.node.map(str::to_string),
                    p.domain.to_string(),
                    p.resource.map(str::to_string)
                ))
            );
        }
    }

    #[test]
    fn recognises_common_jids_and_leaves_the_rest_to_the_jid_crate() {
        for text in [
            "alice@example.com",
            "alice@example.com/phone-1",
            "room@conference.example.com/Nick Name",
            "example.com",
            "a.b_c-d@x1.example/res/with/slashes@and@ats",
        ] {
            check_agrees(text);
        }
        assert!(normal_ascii("alice@example.com/phone").is_some());
        assert!(
            normal_ascii("room@muc.example/Nick Name").is_none(),
            "space"
        );
        for other in [
            "Alice@example.com",
            "alice@Example.com",
            "alice@example.com.",
            "alice@xn--bcher-kva.example",
            "alice@-bad.example",
            "alice@ex_ample.com",
            "alice@[::1]",
            "alice@127.0.0.1:5222",
            "@example.com",
            "alice@",
            "alice@example.com/",
            "alice@@example.com",
            "älice@example.com",
            "alice@example..com",
        ] {
            assert!(normal_ascii(other).is_none(), "{other:?}");
        }
        let j = ParsedJid::parse("Alice@Example.com/Phone").expect("valid");
        assert!(!j.was_normal());
        assert_eq!(
            (j.node(), j.domain(), j.resource()),
            (Some("alice"), "example.com", Some("Phone"))
        );
        assert!(ParsedJid::parse("a@b@c").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn recognised_jids_are_valid_and_already_normal(
            text in "([a-z0-9._A-Z-]{1,8}@)?[a-z0-9.-]{1,16}(/[ -~]{1,8})?"
        ) {
            check_agrees(&text);
        }

        #[test]
        fn arbitrary_text_never_disagrees(text in "\\PC{0,24}") {
            check_agrees(&text);
        }
    }
}
