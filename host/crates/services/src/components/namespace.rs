//! Stanzas on a component stream are in `jabber:component:accept`; inside the server they
//! are in `jabber:client` like every other stanza. These helpers move a stanza (and every
//! descendant that inherited the stream's default namespace) from one to the other.

use crate::xml::{Element, ns};

/// Rewrites `from_ns` to `to_ns` on `el` and every descendant in `from_ns`.
fn retag(el: &mut Element, from_ns: &str, to_ns: &str) {
    if el.ns() == from_ns {
        el.set_ns(to_ns);
    }
    for child in el.children_mut() {
        retag(child, from_ns, to_ns);
    }
}

/// A stanza read from a component stream, as the server routes it.
pub fn into_server(mut el: Element) -> Element {
    retag(&mut el, ns::COMPONENT, ns::CLIENT);
    el
}

/// A stanza the server routes, as written on a component stream.
pub fn into_component(mut el: Element) -> Element {
    retag(&mut el, ns::CLIENT, ns::COMPONENT);
    el
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_inherited_namespaces_only() {
        let el = Element::new("message", ns::COMPONENT)
            .with_child(Element::new("body", ns::COMPONENT).with_text("hi"))
            .with_child(Element::new("x", "urn:other"));
        let s = into_server(el);
        assert_eq!(s.ns(), ns::CLIENT);
        assert!(s.child("body", ns::CLIENT).is_some());
        assert!(s.child("x", "urn:other").is_some());
        let back = into_component(s);
        assert_eq!(
            back.to_string_in(ns::COMPONENT),
            "<message><body>hi</body><x xmlns=\"urn:other\"/></message>"
        );
    }
}
