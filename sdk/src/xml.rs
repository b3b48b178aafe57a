//! A small XML element tree for components: parse the stanza the host hands over, build
//! answers, serialize them. Namespaces are resolved (`xmlns` and prefixes); comments,
//! processing instructions and DTDs are refused (XMPP's restricted XML never has them).

use std::fmt::Write as _;

/// `jabber:client`, the namespace of the stanzas a component gets and sends.
pub const CLIENT: &str = "jabber:client";

/// An element: name, resolved namespace, attributes and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub ns: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
}

/// A child: an element or text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// Why XML could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid XML: {}", self.0)
    }
}

impl Element {
    pub fn new(name: &str, ns: &str) -> Element {
        Element {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: sets an attribute.
    pub fn attr(mut self, name: &str, value: &str) -> Element {
        self.set_attr(name, value);
        self
    }

    /// Builder: adds a child element.
    pub fn child(mut self, child: Element) -> Element {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: adds text.
    pub fn text(mut self, text: &str) -> Element {
        self.children.push(Node::Text(text.into()));
        self
    }

    pub fn set_attr(&mut self, name: &str, value: &str) {
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value.into(),
            None => self.attrs.push((name.into(), value.into())),
        }
    }

    pub fn get_attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element named `name` in `ns`.
    pub fn find(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.name == name && e.ns == ns)
    }

    /// The concatenated text children.
    pub fn text_content(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Serializes with `xmlns` declared where the namespace changes (the root always
    /// declares its own).
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, "");
        out
    }

    fn write(&self, out: &mut String, parent_ns: &str) {
        out.push('<');
        out.push_str(&self.name);
        if self.ns != parent_ns {
            out.push_str(" xmlns=\"");
            escape(&self.ns, out, true);
            out.push('"');
        }
        for (k, v) in &self.attrs {
            let _ = write!(out, " {k}=\"");
            escape(v, out, true);
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for n in &self.children {
            match n {
                Node::Element(e) => e.write(out, &self.ns),
                Node::Text(t) => escape(t, out, false),
            }
        }
        let _ = write!(out, "</{}>", self.name);
    }

    /// Parses one element (surrounding whitespace allowed).
    pub fn parse(xml: &str) -> Result<Element, ParseError> {
        let mut p = Parser {
            s: xml.as_bytes(),
            i: 0,
        };
        p.skip_ws();
        if p.s[p.i..].starts_with(b"<?xml") {
            let end = find(p.s, p.i, b"?>").ok_or_else(|| err("unterminated declaration"))?;
            p.i = end + 2;
            p.skip_ws();
        }
        let el = p.element(&[("", "")], 0)?;
        p.skip_ws();
        if p.i != p.s.len() {
            return Err(err("content after the element"));
        }
        Ok(el)
    }
}

fn err(s: &str) -> ParseError {
    ParseError(s.into())
}

fn find(s: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    s.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|p| p + from)
}

fn escape(s: &str, out: &mut String, attr: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attr => out.push_str("&quot;"),
            '\'' if attr => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

fn unescape(s: &str) -> Result<String, ParseError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let semi = rest[amp..]
            .find(';')
            .ok_or_else(|| err("unterminated entity"))?;
        let ent = &rest[amp + 1..amp + semi];
        let c = match ent {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = ent.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = ent.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| err("unknown entity"))?
            }
        };
        out.push(c);
        rest = &rest[amp + semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn name(&mut self) -> Result<String, ParseError> {
        let start = self.i;
        while self.i < self.s.len()
            && !self.s[self.i].is_ascii_whitespace()
            && !matches!(self.s[self.i], b'>' | b'/' | b'=' | b'<')
        {
            self.i += 1;
        }
        if start == self.i {
            return Err(err("expected a name"));
        }
        std::str::from_utf8(&self.s[start..self.i])
            .map(str::to_string)
            .map_err(|_| err("invalid UTF-8"))
    }

    fn element(&mut self, scope: &[(&str, &str)], depth: usize) -> Result<Element, ParseError> {
        if depth > MAX_DEPTH {
            return Err(err("too deep"));
        }
        if self.s.get(self.i) != Some(&b'<') {
            return Err(err("expected '<'"));
        }
        self.i += 1;
        if matches!(self.s.get(self.i), Some(b'!' | b'?')) {
            return Err(err(
                "comments, DTDs and processing instructions are not allowed",
            ));
        }
        let qname = self.name()?;
        let mut raw_attrs = Vec::new();
        loop {
            self.skip_ws();
            match self.s.get(self.i) {
                Some(b'/') | Some(b'>') => break,
                None => return Err(err("unexpected end")),
                _ => {}
            }
            let key = self.name()?;
            self.skip_ws();
            if self.s.get(self.i) != Some(&b'=') {
                return Err(err("expected '='"));
            }
            self.i += 1;
            self.skip_ws();
            let quote = *self.s.get(self.i).ok_or_else(|| err("unexpected end"))?;
            if quote != b'"' && quote != b'\'' {
                return Err(err("expected a quoted value"));
            }
            let start = self.i + 1;
            let end = start
                + self.s[start..]
                    .iter()
                    .position(|&b| b == quote)
                    .ok_or_else(|| err("unterminated value"))?;
            let value =
                std::str::from_utf8(&self.s[start..end]).map_err(|_| err("invalid UTF-8"))?;
            raw_attrs.push((key, unescape(value)?));
            self.i = end + 1;
        }
        // Namespace declarations of this element, then resolution.
        let mut own: Vec<(String, String)> = Vec::new();
        let mut attrs = Vec::new();
        for (k, v) in raw_attrs {
            if k == "xmlns" {
                own.push((String::new(), v));
            } else if let Some(prefix) = k.strip_prefix("xmlns:") {
                own.push((prefix.to_string(), v));
            } else {
                attrs.push((k, v));
            }
        }
        let mut inner: Vec<(&str, &str)> = scope.to_vec();
        for (p, u) in &own {
            inner.push((p.as_str(), u.as_str()));
        }
        let (prefix, local) = match qname.split_once(':') {
            Some((p, l)) => (p, l),
            None => ("", qname.as_str()),
        };
        let ns = inner
            .iter()
            .rev()
            .find(|(p, _)| *p == prefix)
            .map(|(_, u)| u.to_string())
            .ok_or_else(|| err("undeclared prefix"))?;
        let mut el = Element {
            name: local.to_string(),
            ns,
            attrs,
            children: Vec::new(),
        };
        if self.s.get(self.i) == Some(&b'/') {
            self.i += 1;
            if self.s.get(self.i) != Some(&b'>') {
                return Err(err("expected '>'"));
            }
            self.i += 1;
            return Ok(el);
        }
        self.i += 1; // '>'
        loop {
            let text_start = self.i;
            while self.i < self.s.len() && self.s[self.i] != b'<' {
                self.i += 1;
            }
            if self.i > text_start {
                let raw = std::str::from_utf8(&self.s[text_start..self.i])
                    .map_err(|_| err("invalid UTF-8"))?;
                el.children.push(Node::Text(unescape(raw)?));
            }
            if self.i >= self.s.len() {
                return Err(err("unexpected end"));
            }
            if self.s.get(self.i + 1) == Some(&b'/') {
                self.i += 2;
                let close = self.name()?;
                if close != qname {
                    return Err(err("mismatched close tag"));
                }
                self.skip_ws();
                if self.s.get(self.i) != Some(&b'>') {
                    return Err(err("expected '>'"));
                }
                self.i += 1;
                return Ok(el);
            }
            let child = self.element(&inner, depth + 1)?;
            el.children.push(Node::Element(child));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resolves_and_round_trips() {
        let xml = r#"<message xmlns="jabber:client" from="a@b/c" type='chat'><body>1 &lt; 2 &amp; &#x263A;</body><x:y xmlns:x="urn:x" k="v"/></message>"#;
        let el = Element::parse(xml).unwrap();
        assert_eq!(el.ns, CLIENT);
        assert_eq!(el.get_attr("type"), Some("chat"));
        assert_eq!(el.find("body", CLIENT).unwrap().text_content(), "1 < 2 & ☺");
        assert_eq!(el.find("y", "urn:x").unwrap().get_attr("k"), Some("v"));
        let again = Element::parse(&el.to_xml()).unwrap();
        assert_eq!(again, el);
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            "<a>",
            "<a></b>",
            "<a><!-- c --></a>",
            "<p:a/>",
            "<a x=1/>",
            "<a/><b/>",
            "<a>&bogus;</a>",
        ] {
            assert!(Element::parse(bad).is_err(), "{bad}");
        }
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(Element::parse(&deep).is_err());
    }
}
