//! A compact binary form of an [`Element`] for trusted peers (the nodes of a cluster pass
//! stanzas in it): every string as its length and bytes, nothing to escape, scan or
//! resolve, so reading it back costs little more than the allocations of the tree. The
//! element comes back exactly as it was (names, namespaces, attributes in order, text
//! nodes as they were split), which a round trip through XML text does not promise.
//!
//! The form: an element is its name, its namespace (`0`: its parent's, `1` and the
//! URI), the number of attributes and each name and value, the number of children and
//! each child (`0` and text, `1` and an element). Numbers and lengths are LEB128.
//! Decoding checks lengths, counts, UTF-8 and depth: malformed input is an error, never a
//! panic or an allocation larger than the input.

use crate::element::{Element, Node};

/// Why bytes are not an element in the compact form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    #[error("compact element cut short")]
    Truncated,
    #[error("compact element: a string is not UTF-8")]
    NotUtf8,
    #[error("compact element nested deeper than {0}")]
    TooDeep(usize),
    #[error("compact element: unknown tag {0}")]
    UnknownTag(u8),
    #[error("compact element: a count larger than the input")]
    CountTooLarge,
    #[error("compact element followed by {0} more bytes")]
    Trailing(usize),
}

/// Appends `el` in the compact form, its namespace relative to `parent_ns`.
pub fn encode(el: &Element, parent_ns: &str, out: &mut Vec<u8>) {
    put_str(out, el.name());
    if el.ns() == parent_ns {
        out.push(0);
    } else {
        out.push(1);
        put_str(out, el.ns());
    }
    put_len(out, el.attrs().count());
    for (name, value) in el.attrs() {
        put_str(out, name);
        put_str(out, value);
    }
    put_len(out, el.nodes().len());
    for node in el.nodes() {
        match node {
            Node::Text(text) => {
                out.push(0);
                put_str(out, text);
            }
            Node::Element(child) => {
                out.push(1);
                encode(child, el.ns(), out);
            }
        }
    }
}

/// Reads the element that is the whole of `bytes`, relative to `parent_ns`, nested at
/// most `max_depth` deep.
pub fn decode(bytes: &[u8], parent_ns: &str, max_depth: usize) -> Result<Element, CompactError> {
    let mut reader = Reader {
        rest: bytes,
        max_depth,
    };
    let el = reader.element(parent_ns, max_depth)?;
    match reader.rest.len() {
        0 => Ok(el),
        n => Err(CompactError::Trailing(n)),
    }
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    rest: &'a [u8],
    max_depth: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, CompactError> {
        let (&b, rest) = self.rest.split_first().ok_or(CompactError::Truncated)?;
        self.rest = rest;
        Ok(b)
    }

    fn len(&mut self) -> Result<usize, CompactError> {
        let mut n: usize = 0;
        for shift in (0..usize::BITS).step_by(7) {
            let b = self.byte()?;
            n |= usize::from(b & 0x7f)
                .checked_shl(shift)
                .ok_or(CompactError::CountTooLarge)?;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(CompactError::CountTooLarge)
    }

    /// A count of items that take at least `min_bytes` each: never more than the input
    /// could hold, so no allocation outgrows it.
    fn count(&mut self, min_bytes: usize) -> Result<usize, CompactError> {
        let n = self.len()?;
        if n > self.rest.len() / min_bytes {
            return Err(CompactError::CountTooLarge);
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, CompactError> {
        let n = self.len()?;
        if n > self.rest.len() {
            return Err(CompactError::Truncated);
        }
        let (bytes, rest) = self.rest.split_at(n);
        self.rest = rest;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| CompactError::NotUtf8)
    }

    /// An element and its descendants, at most `levels` deep.
    fn element(&mut self, parent_ns: &str, levels: usize) -> Result<Element, CompactError> {
        let Some(below) = levels.checked_sub(1) else {
            return Err(CompactError::TooDeep(self.max_depth));
        };
        let name = self.string()?;
        let ns = match self.byte()? {
            0 => parent_ns.to_owned(),
            1 => self.string()?,
            tag => return Err(CompactError::UnknownTag(tag)),
        };
        // An attribute is at least two empty strings; a child a tag and one more byte.
        let attr_count = self.count(2)?;
        let mut attrs = Vec::with_capacity(attr_count);
        for _ in 0..attr_count {
            attrs.push((self.string()?, self.string()?));
        }
        let child_count = self.count(2)?;
        let mut children = Vec::with_capacity(child_count);
        for _ in 0..child_count {
            children.push(match self.byte()? {
                0 => Node::Text(self.string()?),
                1 => Node::Element(self.element(&ns, below)?),
                tag => return Err(CompactError::UnknownTag(tag)),
            });
        }
        Ok(Element::from_parts(name, ns, attrs, children))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ns;

    fn message() -> Element {
        Element::new("message", ns::CLIENT)
            .with_attr("from", "alice@example.com/phone")
            .with_attr("to", "bob@example.com/laptop")
            .with_attr("xml:lang", "en")
            .with_child(Element::new("body", ns::CLIENT).with_text("a < b & \"c\" ✓"))
            .with_child(
                Element::new("stanza-id", "urn:xmpp:sid:0")
                    .with_attr("by", "bob@example.com")
                    .with_attr("id", "1234"),
            )
            .with_text("tail")
            .with_text(" split")
    }

    #[test]
    fn an_element_comes_back_exactly() {
        let el = message();
        for parent in [ns::CLIENT, "", ns::SERVER] {
            let mut out = Vec::new();
            encode(&el, parent, &mut out);
            assert_eq!(decode(&out, parent, 64).unwrap(), el);
        }
        // Smaller than its XML text.
        let mut out = Vec::new();
        encode(&el, ns::CLIENT, &mut out);
        assert!(
            out.len() < el.to_string_in(ns::CLIENT).len(),
            "{}",
            out.len()
        );
        // Long strings take multi-byte lengths.
        let long = Element::new("x", "").with_text("y".repeat(100_000));
        let mut out = Vec::new();
        encode(&long, "", &mut out);
        assert_eq!(decode(&out, "", 64).unwrap(), long);
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let mut out = Vec::new();
        encode(&message(), ns::CLIENT, &mut out);
        for cut in 0..out.len() {
            assert!(decode(&out[..cut], ns::CLIENT, 64).is_err(), "cut at {cut}");
        }
        // Every byte changed to every value: an error or some element, never a panic.
        for at in 0..out.len() {
            for b in [0u8, 1, 2, 0x7f, 0x80, 0xff] {
                let mut bad = out.clone();
                bad[at] = b;
                let _ = decode(&bad, ns::CLIENT, 64);
            }
        }
        let mut trailing = out.clone();
        trailing.push(0);
        assert_eq!(
            decode(&trailing, ns::CLIENT, 64),
            Err(CompactError::Trailing(1))
        );
        // A count no input could hold.
        assert_eq!(
            decode(&[1, b'a', 0, 0xff, 0xff, 0xff, 0x7f], "", 64),
            Err(CompactError::CountTooLarge)
        );
        assert_eq!(decode(&[1, 0xff, 0], "", 64), Err(CompactError::NotUtf8));
    }

    #[test]
    fn depth_is_bounded() {
        let mut el = Element::new("leaf", "");
        for _ in 0..10 {
            el = Element::new("x", "").with_child(el);
        }
        let mut out = Vec::new();
        encode(&el, "", &mut out);
        assert_eq!(decode(&out, "", 11).unwrap(), el);
        assert_eq!(decode(&out, "", 10), Err(CompactError::TooDeep(10)));
    }
}
