//! The tree builder: turns one complete unit found by the scanner (the stream header, a
//! stanza, the close tag, the XML declaration) into its value, checking everything the
//! scanner left out: UTF-8, tag and attribute syntax, matching end tags, duplicate
//! attributes and namespace resolution.
//!
//! Elements are built with an explicit stack of open elements, never by recursion; the
//! scanner has already capped the depth, and it is checked again here.

use std::collections::HashSet;

use super::syntax::{
    TextKind, XML_NS, decode_text, is_name_byte, is_name_start_byte, is_whitespace, push_cdata,
};
use super::{ParseError, StreamHeader, malformed, policy_violation};
use crate::element::same_name;
use crate::{Element, Node};

/// Most attributes accepted on one element; bounds the cost of duplicate checks.
const MAX_ATTRIBUTES: usize = 128;

/// A namespace binding: prefix (`""` for the default namespace) and URI.
pub(super) type Binding = (String, String);

/// Parses the stream header start tag. Returns the header, its qualified name as written
/// (the close tag must match it) and the namespace declarations it makes, which stay in
/// scope for every stanza.
pub(super) fn parse_header(
    unit: &[u8],
) -> Result<(StreamHeader, String, Vec<Binding>), ParseError> {
    let mut cursor = Cursor::new(to_str(unit)?);
    let tag = RawStartTag::parse(&mut cursor)?;
    let qname = tag.qname.to_owned();
    let mut scope = Scope::new(&[]);
    let element = start_element(tag, &mut scope)?;
    let bindings: Vec<Binding> = scope
        .local
        .into_iter()
        .map(|(prefix, uri)| (prefix.to_owned(), uri))
        .collect();
    let default_ns = bindings
        .iter()
        .rev()
        .find(|(prefix, _)| prefix.is_empty())
        .map(|(_, uri)| uri.clone());
    let header = StreamHeader {
        name: element.name().to_owned(),
        ns: element.ns().to_owned(),
        default_ns: default_ns.unwrap_or_default(),
        attrs: element
            .attrs()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    };
    Ok((header, qname, bindings))
}

/// Checks that `unit` is an end tag closing the stream opened with `header_qname`.
pub(super) fn check_close(unit: &[u8], header_qname: &str) -> Result<(), ParseError> {
    let mut cursor = Cursor::new(to_str(unit)?);
    if cursor.parse_end_tag()? != header_qname {
        return Err(malformed("stream closed with a mismatched end tag"));
    }
    Ok(())
}

/// Builds the element in `unit` (exactly one element, nothing around it). `inherited` are
/// the namespace bindings in scope around it.
pub(super) fn parse_element_tree(
    unit: &[u8],
    inherited: &[Binding],
    max_depth: usize,
) -> Result<Element, ParseError> {
    let text = to_str(unit)?;
    if text.contains(['\u{FFFE}', '\u{FFFF}']) {
        return Err(malformed("character not allowed in XML"));
    }
    let mut builder = TreeBuilder {
        cursor: Cursor::new(text),
        scope: Scope::new(inherited),
        open: Vec::new(),
        max_depth,
    };
    let root = builder.build()?;
    if !builder.cursor.rest().is_empty() {
        return Err(malformed("content after the element"));
    }
    Ok(root)
}

/// Checks an XML declaration `<?xml version='1.0' encoding='UTF-8'?>`.
pub(super) fn check_xml_declaration(unit: &[u8]) -> Result<(), ParseError> {
    let mut cursor = Cursor::new(to_str(unit)?);
    cursor.expect("<?")?;
    if cursor.parse_name()? != "xml" {
        return Err(super::restricted("processing instructions are not allowed"));
    }
    let mut seen_version = false;
    loop {
        let had_space = cursor.skip_whitespace();
        if cursor.eat("?>") {
            break;
        }
        if !had_space {
            return Err(malformed("malformed XML declaration"));
        }
        let (name, value) = cursor.parse_attribute()?;
        match name {
            "version" if !seen_version && value.starts_with("1.") => seen_version = true,
            "encoding" if seen_version && !value.eq_ignore_ascii_case("UTF-8") => {
                return Err(ParseError::UnsupportedEncoding(
                    "only UTF-8 is supported".to_owned(),
                ));
            }
            "encoding" | "standalone" if seen_version => {}
            _ => return Err(malformed("malformed XML declaration")),
        }
    }
    if !seen_version || !cursor.rest().is_empty() {
        return Err(malformed("malformed XML declaration"));
    }
    Ok(())
}

fn to_str(unit: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(unit).map_err(|_| malformed("invalid UTF-8"))
}

/// A start tag as written, before namespace resolution.
struct RawStartTag<'a> {
    qname: &'a str,
    attrs: Vec<(&'a str, String)>,
    self_closing: bool,
}

impl<'a> RawStartTag<'a> {
    fn parse(cursor: &mut Cursor<'a>) -> Result<Self, ParseError> {
        cursor.expect("<")?;
        let qname = cursor.parse_name()?;
        let mut attrs = Vec::new();
        loop {
            let had_space = cursor.skip_whitespace();
            if cursor.eat(">") {
                return Ok(RawStartTag {
                    qname,
                    attrs,
                    self_closing: false,
                });
            }
            if cursor.eat("/>") {
                return Ok(RawStartTag {
                    qname,
                    attrs,
                    self_closing: true,
                });
            }
            if !had_space {
                return Err(malformed("malformed start tag"));
            }
            if attrs.len() == MAX_ATTRIBUTES {
                return Err(policy_violation(format!(
                    "more than {MAX_ATTRIBUTES} attributes on one element"
                )));
            }
            attrs.push(cursor.parse_attribute()?);
        }
    }
}

/// Namespace bindings in scope: those declared inside the unit being built (innermost
/// last) on top of those inherited from outside it.
struct Scope<'a, 'b> {
    inherited: &'b [Binding],
    local: Vec<(&'a str, String)>,
}

impl<'a, 'b> Scope<'a, 'b> {
    fn new(inherited: &'b [Binding]) -> Self {
        Scope {
            inherited,
            local: Vec::new(),
        }
    }

    fn declare(&mut self, prefix: &'a str, uri: String) -> Result<(), ParseError> {
        let reserved_prefix_misused = match prefix {
            "xmlns" => true,
            "xml" => uri != XML_NS,
            _ => uri == XML_NS || uri == "http://www.w3.org/2000/xmlns/",
        };
        if reserved_prefix_misused {
            return Err(malformed("reserved namespace prefix or URI misused"));
        }
        if !prefix.is_empty() && uri.is_empty() {
            return Err(malformed("a namespace prefix cannot be undeclared"));
        }
        self.local.push((prefix, uri));
        Ok(())
    }

    /// The URI bound to `prefix`; the default namespace for `""` (empty if none).
    fn resolve(&self, prefix: &str) -> Result<&str, ParseError> {
        if prefix == "xml" {
            return Ok(XML_NS);
        }
        let local = self
            .local
            .iter()
            .rev()
            .find(|(p, _)| same_name(p, prefix))
            .map(|(_, uri)| uri.as_str());
        let inherited = || {
            self.inherited
                .iter()
                .rev()
                .find(|(p, _)| same_name(p, prefix))
                .map(|(_, uri)| uri.as_str())
        };
        match local.or_else(inherited) {
            Some(uri) => Ok(uri),
            None if prefix.is_empty() => Ok(""),
            None => Err(malformed("unbound namespace prefix")),
        }
    }

    /// Marks the current bindings, to drop those of an element when it ends.
    fn mark(&self) -> usize {
        self.local.len()
    }

    fn pop_to(&mut self, mark: usize) {
        self.local.truncate(mark);
    }
}

/// Applies a start tag's namespace declarations to `scope` and builds its element, with
/// the declarations removed from the attributes.
fn start_element<'a>(
    tag: RawStartTag<'a>,
    scope: &mut Scope<'a, '_>,
) -> Result<Element, ParseError> {
    if has_duplicate_names(&tag.attrs) {
        return Err(malformed("duplicate attribute"));
    }
    let mut attrs = Vec::with_capacity(tag.attrs.len());
    for (name, value) in tag.attrs {
        match split_qname(name)? {
            (None, "xmlns") => scope.declare("", value)?,
            (Some("xmlns"), prefix) => scope.declare(prefix, value)?,
            _ => attrs.push((name, value)),
        }
    }
    let (prefix, local) = split_qname(tag.qname)?;
    let mut element = Element::new(local, scope.resolve(prefix.unwrap_or_default())?);
    let mut expanded_names = Vec::new();
    for (name, _) in &attrs {
        if let (Some(prefix), local) = split_qname(name)? {
            expanded_names.push((scope.resolve(prefix)?, local));
        }
    }
    if has_duplicates(&expanded_names) {
        return Err(malformed("duplicate attribute"));
    }
    for (name, value) in attrs {
        element.set_attr(name, value);
    }
    Ok(element)
}

/// Splits `prefix:local`; at most one colon, with both sides non-empty.
/// Names are short: a byte loop finds the colon faster than a string pattern.
fn split_qname(qname: &str) -> Result<(Option<&str>, &str), ParseError> {
    let bytes = qname.as_bytes();
    let Some(colon) = bytes.iter().position(|&b| b == b':') else {
        return Ok((None, qname));
    };
    let (prefix, local) = (&qname[..colon], &qname[colon + 1..]);
    if prefix.is_empty() || local.is_empty() || local.as_bytes().contains(&b':') {
        return Err(malformed("malformed qualified name"));
    }
    Ok((Some(prefix), local))
}

/// True if two attributes of a start tag have the same name as written.
fn has_duplicate_names(attrs: &[(&str, String)]) -> bool {
    if attrs.len() <= 8 {
        return attrs.iter().enumerate().any(|(i, (name, _))| {
            attrs[..i]
                .iter()
                .any(|(earlier, _)| same_name(earlier, name))
        });
    }
    let mut seen = HashSet::with_capacity(attrs.len());
    !attrs.iter().all(|(name, _)| seen.insert(*name))
}

fn has_duplicates<T: Eq + std::hash::Hash>(items: &[T]) -> bool {
    if items.len() <= 8 {
        return items
            .iter()
            .enumerate()
            .any(|(i, item)| items.iter().take(i).any(|earlier| earlier == item));
    }
    let mut seen = HashSet::with_capacity(items.len());
    !items.iter().all(|item| seen.insert(item))
}

/// An element whose end tag has not been reached yet.
struct OpenElement<'a> {
    element: Element,
    qname: &'a str,
    scope_mark: usize,
}

struct TreeBuilder<'a, 'b> {
    cursor: Cursor<'a>,
    scope: Scope<'a, 'b>,
    open: Vec<OpenElement<'a>>,
    max_depth: usize,
}

impl<'a> TreeBuilder<'a, '_> {
    /// Builds the element at the cursor, leaving the cursor after its end.
    fn build(&mut self) -> Result<Element, ParseError> {
        if let Some(element) = self.start_element()? {
            return Ok(element);
        }
        loop {
            if self.cursor.starts_with("</") {
                if let Some(root) = self.end_element()? {
                    return Ok(root);
                }
            } else if self.cursor.eat("<![CDATA[") {
                let raw = self
                    .cursor
                    .take_until("]]>")
                    .ok_or_else(|| malformed("unterminated CDATA section"))?;
                push_cdata(raw, self.current_text()?);
            } else if self.cursor.starts_with("<") {
                if let Some(child) = self.start_element()? {
                    self.current()?.push_child(child);
                }
            } else if self.cursor.rest().is_empty() {
                return Err(malformed("unclosed element"));
            } else {
                let raw = self.cursor.take_text();
                if raw.contains("]]>") {
                    return Err(malformed("']]>' in character data"));
                }
                decode_text(raw, TextKind::CharacterData, self.current_text()?)?;
            }
        }
    }

    /// Parses a start tag. A self-closing element is returned; otherwise it is opened.
    fn start_element(&mut self) -> Result<Option<Element>, ParseError> {
        if self.open.len() >= self.max_depth {
            return Err(policy_violation(format!(
                "elements nested deeper than {}",
                self.max_depth
            )));
        }
        let tag = RawStartTag::parse(&mut self.cursor)?;
        let scope_mark = self.scope.mark();
        let (qname, self_closing) = (tag.qname, tag.self_closing);
        let element = start_element(tag, &mut self.scope)?;
        if self_closing {
            self.scope.pop_to(scope_mark);
            return Ok(Some(element));
        }
        self.open.push(OpenElement {
            element,
            qname,
            scope_mark,
        });
        Ok(None)
    }

    /// Parses an end tag and closes the innermost element, returning it if it was the root.
    fn end_element(&mut self) -> Result<Option<Element>, ParseError> {
        let qname = self.cursor.parse_end_tag()?;
        let closed = self
            .open
            .pop()
            .ok_or_else(|| malformed("unexpected end tag"))?;
        if closed.qname != qname {
            return Err(malformed("mismatched end tag"));
        }
        self.scope.pop_to(closed.scope_mark);
        match self.open.last_mut() {
            Some(parent) => {
                parent.element.push_child(closed.element);
                Ok(None)
            }
            None => Ok(Some(closed.element)),
        }
    }

    fn current(&mut self) -> Result<&mut Element, ParseError> {
        self.open
            .last_mut()
            .map(|open| &mut open.element)
            .ok_or_else(|| malformed("text outside an element"))
    }

    /// The text node that character data goes to: the last child if it is text, so that
    /// adjacent text and CDATA become one node.
    fn current_text(&mut self) -> Result<&mut String, ParseError> {
        let nodes = self.current()?.nodes_mut();
        if !matches!(nodes.last(), Some(Node::Text(_))) {
            nodes.push(Node::Text(String::new()));
        }
        match nodes.last_mut() {
            Some(Node::Text(text)) => Ok(text),
            _ => Err(malformed("internal tree builder error")),
        }
    }
}

/// A read position in a complete unit. All slicing goes through `str::get`, so malformed
/// input can only produce errors, never panics.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or_default()
    }

    fn starts_with(&self, prefix: &str) -> bool {
        self.rest().starts_with(prefix)
    }

    /// Consumes `prefix` if the input continues with it.
    fn eat(&mut self, prefix: &str) -> bool {
        let found = self.starts_with(prefix);
        if found {
            self.pos += prefix.len();
        }
        found
    }

    fn expect(&mut self, prefix: &str) -> Result<(), ParseError> {
        if self.eat(prefix) {
            Ok(())
        } else {
            Err(malformed("malformed tag"))
        }
    }

    /// Consumes bytes while `keep` holds; stops only at ASCII bytes, so at char boundaries.
    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.bytes().position(|b| !keep(b)).unwrap_or(rest.len());
        self.pos += len;
        rest.get(..len).unwrap_or_default()
    }

    /// Returns whether any whitespace was skipped.
    fn skip_whitespace(&mut self) -> bool {
        !self.take_while(is_whitespace).is_empty()
    }

    /// Consumes everything up to `end` and `end` itself, returning what came before it.
    fn take_until(&mut self, end: &str) -> Option<&'a str> {
        let rest = self.rest();
        let len = rest.find(end)?;
        self.pos += len + end.len();
        rest.get(..len)
    }

    /// Like [`Cursor::take_until`] for one ASCII character, found with a byte search
    /// (a string pattern goes through the general substring searcher).
    fn take_until_char(&mut self, end: char) -> Option<&'a str> {
        let rest = self.rest();
        let len = rest.find(end)?;
        self.pos += len + end.len_utf8();
        rest.get(..len)
    }

    /// Character data up to the next `<` or the end.
    fn take_text(&mut self) -> &'a str {
        self.take_while(|b| b != b'<')
    }

    fn parse_name(&mut self) -> Result<&'a str, ParseError> {
        match self.rest().as_bytes().first() {
            Some(&b) if is_name_start_byte(b) => Ok(self.take_while(is_name_byte)),
            _ => Err(malformed("expected a name")),
        }
    }

    /// `name = 'value'` (either quote), with the value decoded.
    fn parse_attribute(&mut self) -> Result<(&'a str, String), ParseError> {
        let name = self.parse_name()?;
        self.skip_whitespace();
        self.expect("=")?;
        self.skip_whitespace();
        let quote = if self.eat("'") {
            '\''
        } else if self.eat("\"") {
            '"'
        } else {
            return Err(malformed("attribute value not quoted"));
        };
        let raw = self
            .take_until_char(quote)
            .ok_or_else(|| malformed("unterminated attribute value"))?;
        let mut value = String::with_capacity(raw.len());
        decode_text(raw, TextKind::AttributeValue, &mut value)?;
        Ok((name, value))
    }

    /// `</name>`, returning the name.
    fn parse_end_tag(&mut self) -> Result<&'a str, ParseError> {
        self.expect("</")?;
        let name = self.parse_name()?;
        self.skip_whitespace();
        self.expect(">")?;
        Ok(name)
    }
}
