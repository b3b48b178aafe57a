//! Resource binding (RFC 6120 §7): validating or generating the resource.

use rand::Rng;

use crate::stanza::Condition;
use crate::xml::{Element, ns};

/// A fresh server-generated resource.
pub fn generate_resource() -> String {
    let mut rng = rand::rng();
    let n: u64 = rng.random();
    format!("hg-{n:016x}")
}

/// The resource requested in a bind iq, normalized, or a generated one when absent.
pub fn requested_resource(iq: &Element, account_jid: &str) -> Result<String, Condition> {
    let bind = iq.child("bind", ns::BIND).ok_or(Condition::BadRequest)?;
    let requested = bind.child_text("resource", ns::BIND).unwrap_or_default();
    let requested = requested.trim();
    if requested.is_empty() {
        return Ok(generate_resource());
    }
    if requested.len() > 1023 {
        return Err(Condition::BadRequest);
    }
    let full = jid::FullJid::new(&format!("{account_jid}/{requested}"))
        .map_err(|_| Condition::BadRequest)?;
    Ok(full.resource().as_str().to_string())
}

/// The bind result payload.
pub fn bind_result(full_jid: &str) -> Element {
    Element::new("bind", ns::BIND).with_child(Element::new("jid", ns::BIND).with_text(full_jid))
}
