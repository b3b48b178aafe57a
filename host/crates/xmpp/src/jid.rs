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
