//! The in-memory XML tree used for every stanza: a namespace-resolved [`Element`]
//! with ordered attributes and children, plus its serializer.
//!
//! Elements carry the resolved namespace URI of their own name. Serialization emits an
//! `xmlns` declaration only where an element's namespace differs from its parent's, and
//! writes elements in the stream namespace with the conventional `stream:` prefix that the
//! stream header declares.

use std::fmt::Write as _;

use super::ns;

/// A child of an [`Element`]: another element or character data (already unescaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// A namespace-resolved XML element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    name: String,
    ns: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

/// `a == b` for short names (attribute names, namespace prefixes), compared in line:
/// `==` on strings calls `memcmp` even for two bytes, and these comparisons run several
/// times per stanza (about 5% of a chat message's server CPU went to those calls).
#[inline]
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
}

impl Element {
    /// A new empty element `name` in namespace `ns`.
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Element {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// An element from its parts as they are (the compact form's reader).
    pub(crate) fn from_parts(
        name: String,
        ns: String,
        attrs: Vec<(String, String)>,
        children: Vec<Node>,
    ) -> Self {
        Element {
            name,
            ns,
            attrs,
            children,
        }
    }

    /// The local name (no prefix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace URI.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// True when the element has this local name and namespace.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// Changes the namespace of this element (not of its children).
    pub fn set_ns(&mut self, ns: impl Into<String>) {
        self.ns = ns.into();
    }

    /// The value of attribute `name` (qualified as written, e.g. `xml:lang`).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| same_name(k, name))
            .map(|(_, v)| v.as_str())
    }

    /// All attributes in document order.
    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets (or replaces) an attribute.
    pub fn set_attr(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(k, _)| same_name(k, &name)) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name, value)),
        }
    }

    /// Removes an attribute, returning its value.
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| same_name(k, name))?;
        Some(self.attrs.remove(pos).1)
    }

    /// Builder form of [`Element::set_attr`].
    pub fn with_attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder form of [`Element::set_attr`] that skips `None`.
    pub fn with_opt_attr(
        mut self,
        name: impl Into<String>,
        value: Option<impl Into<String>>,
    ) -> Self {
        if let Some(v) = value {
            self.set_attr(name, v);
        }
        self
    }

    /// Builder: appends a child element.
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: appends text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// Appends a child element.
    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// Appends character data.
    pub fn push_text(&mut self, text: impl Into<String>) {
        self.children.push(Node::Text(text.into()));
    }

    /// Appends any node.
    pub fn push_node(&mut self, node: Node) {
        self.children.push(node);
    }

    /// All child nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.children
    }

    /// Mutable access to the child nodes.
    pub fn nodes_mut(&mut self) -> &mut Vec<Node> {
        &mut self.children
    }

    /// Child elements in order.
    pub fn children(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// Mutable child elements in order.
    pub fn children_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children().find(|e| e.is(name, ns))
    }

    /// Mutable first child with this name and namespace.
    pub fn child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children_mut().find(|e| e.is(name, ns))
    }

    /// True if a child with this name and namespace exists.
    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.child(name, ns).is_some()
    }

    /// Removes every child element with this name and namespace.
    pub fn remove_children(&mut self, name: &str, ns: &str) {
        self.children
            .retain(|n| !matches!(n, Node::Element(e) if e.is(name, ns)));
    }

    /// The first child element (of any name).
    pub fn first_child(&self) -> Option<&Element> {
        self.children().next()
    }

    /// Concatenated direct text content.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Text of the first child with this name and namespace.
    pub fn child_text(&self, name: &str, ns: &str) -> Option<String> {
        self.child(name, ns).map(Element::text)
    }

    /// Serializes as a top-level stanza whose parent default namespace is `parent_ns`.
    pub fn write_to(&self, out: &mut String, parent_ns: &str) {
        let stream_prefixed = self.ns == ns::STREAM;
        out.push('<');
        if stream_prefixed {
            out.push_str("stream:");
        }
        out.push_str(&self.name);
        if !stream_prefixed && self.ns != parent_ns {
            out.push_str(" xmlns=\"");
            escape_attr(&self.ns, out);
            out.push('"');
        }
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("=\"");
            escape_attr(v, out);
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        let child_parent = if stream_prefixed {
            parent_ns
        } else {
            self.ns.as_str()
        };
        for n in &self.children {
            match n {
                Node::Element(e) => e.write_to(out, child_parent),
                Node::Text(t) => escape_text(t, out),
            }
        }
        out.push_str("</");
        if stream_prefixed {
            out.push_str("stream:");
        }
        out.push_str(&self.name);
        out.push('>');
    }

    /// Serializes with `parent_ns` as the inherited default namespace.
    pub fn to_string_in(&self, parent_ns: &str) -> String {
        let mut s = String::with_capacity(128);
        self.write_to(&mut s, parent_ns);
        s
    }

    /// Approximate serialized size in bytes, for limits and accounting.
    pub fn approx_size(&self) -> usize {
        let mut n = self.name.len() * 2 + 5;
        for (k, v) in &self.attrs {
            n += k.len() + v.len() + 4;
        }
        for c in &self.children {
            n += match c {
                Node::Element(e) => e.approx_size(),
                Node::Text(t) => t.len(),
            };
        }
        n
    }
}

impl std::fmt::Display for Element {
    /// Standalone serialization: always declares the element's own namespace.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.to_string_in("");
        f.write_str(&s)
    }
}

/// Escapes character data for element content.
pub fn escape_text(s: &str, out: &mut String) {
    escape_with(s, out, |b| match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        // A raw CR would be read back as LF (XML 1.0 §2.11 line-end normalization).
        b'\r' => Some("&#13;"),
        _ => None,
    });
}

/// Copies `s` to `out`, replacing each byte `escape` names: runs without one are copied
/// whole (most text and attribute values have none). Only ASCII bytes are replaced, so
/// the runs between them are whole characters.
#[inline]
fn escape_with(s: &str, out: &mut String, escape: impl Fn(u8) -> Option<&'static str>) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if let Some(replacement) = escape(b) {
            out.push_str(&s[start..i]);
            out.push_str(replacement);
            start = i + 1;
        }
    }
    out.push_str(&s[start..]);
}

/// Escapes an attribute value for a double-quoted attribute.
pub fn escape_attr(s: &str, out: &mut String) {
    escape_with(s, out, |b| match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'"' => Some("&quot;"),
        b'\'' => Some("&apos;"),
        b'\t' => Some("&#9;"),
        b'\n' => Some("&#10;"),
        b'\r' => Some("&#13;"),
        _ => None,
    });
}

/// Escapes a string for use as text, returning a new string.
pub fn escaped_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_text(s, &mut out);
    out
}

/// Formats `<name attr="...">` style opening tags where the caller needs raw output
/// (the stream header). Values are escaped.
pub fn open_tag(name: &str, attrs: &[(&str, &str)]) -> String {
    let mut s = String::with_capacity(64 + attrs.len() * 32);
    let _ = write!(s, "<{name}");
    for (k, v) in attrs {
        s.push(' ');
        s.push_str(k);
        s.push_str("=\"");
        escape_attr(v, &mut s);
        s.push('"');
    }
    s.push('>');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_escaping_and_namespaces() {
        let el = Element::new("message", ns::CLIENT)
            .with_attr("to", "a&b@example.com")
            .with_attr("q", "say \"hi\" <'x'>")
            .with_child(Element::new("body", ns::CLIENT).with_text("1 < 2 & 3 > 2"))
            .with_child(Element::new("ping", "urn:xmpp:ping"));
        assert_eq!(
            el.to_string_in(ns::CLIENT),
            "<message to=\"a&amp;b@example.com\" q=\"say &quot;hi&quot; &lt;&apos;x&apos;&gt;\">\
             <body>1 &lt; 2 &amp; 3 &gt; 2</body><ping xmlns=\"urn:xmpp:ping\"/></message>"
        );
    }

    #[test]
    fn stream_namespace_uses_prefix() {
        let el = Element::new("features", ns::STREAM).with_child(Element::new("bind", ns::BIND));
        assert_eq!(
            el.to_string_in(ns::CLIENT),
            "<stream:features><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/></stream:features>"
        );
    }

    #[test]
    fn attribute_whitespace_is_preserved_by_escaping() {
        let el = Element::new("x", "n").with_attr("a", "l1\nl2\tt");
        assert_eq!(el.to_string_in("n"), "<x a=\"l1&#10;l2&#9;t\"/>");
    }

    #[test]
    fn child_lookup_and_text() {
        let mut el = Element::new("iq", ns::CLIENT).with_child(
            Element::new("query", "jabber:iq:roster")
                .with_text("a")
                .with_text("b"),
        );
        assert_eq!(el.child("query", "jabber:iq:roster").unwrap().text(), "ab");
        assert!(el.child("query", "other").is_none());
        el.remove_children("query", "jabber:iq:roster");
        assert!(el.first_child().is_none());
    }
}
