//! Character-level rules of XML 1.0 shared by the scanner and the tree builder: which
//! characters and bytes are allowed where, entity and character references, and the
//! decoding of character data and attribute values.

use super::{ParseError, malformed, restricted};

/// The namespace permanently bound to the `xml` prefix.
pub(super) const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Longest entity or character reference name accepted (`#x0010FFFF` is 10 bytes).
pub(super) const MAX_REFERENCE_LEN: usize = 32;

/// XML whitespace (`S` production).
pub(super) fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// ASCII control bytes that XML 1.0 forbids everywhere.
pub(super) fn is_forbidden_control(b: u8) -> bool {
    b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')
}

/// Bytes that may start a name. Non-ASCII bytes are accepted here; UTF-8 validity is
/// checked separately.
pub(super) fn is_name_start_byte(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

/// Bytes that may continue a name.
pub(super) fn is_name_byte(b: u8) -> bool {
    is_name_start_byte(b) || b.is_ascii_digit() || b == b'-' || b == b'.'
}

/// Bytes that may appear between `&` and `;` (names and `#x1F600` forms).
pub(super) fn is_reference_byte(b: u8) -> bool {
    is_name_byte(b) || b == b'#'
}

/// Characters allowed in an XML 1.0 document (`Char` production).
pub(super) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Decodes the reference between `&` and `;`. Only the five predefined entities and
/// character references are allowed.
pub(super) fn decode_reference(name: &[u8]) -> Result<char, ParseError> {
    match name {
        b"amp" => Ok('&'),
        b"lt" => Ok('<'),
        b"gt" => Ok('>'),
        b"quot" => Ok('"'),
        b"apos" => Ok('\''),
        [b'#', b'x', hex @ ..] => char_from_code(parse_number(hex, 16)),
        [b'#', decimal @ ..] => char_from_code(parse_number(decimal, 10)),
        [first, rest @ ..]
            if is_name_start_byte(*first) && rest.iter().all(|&b| is_name_byte(b)) =>
        {
            Err(restricted("only the predefined entities may be referenced"))
        }
        _ => Err(malformed("malformed entity reference")),
    }
}

/// Parses the digits of a character reference; `None` if empty, invalid or too large.
fn parse_number(digits: &[u8], radix: u32) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &b| {
        let digit = char::from(b).to_digit(radix)?;
        acc.checked_mul(radix)?.checked_add(digit)
    })
}

fn char_from_code(code: Option<u32>) -> Result<char, ParseError> {
    code.and_then(char::from_u32)
        .filter(|&c| is_xml_char(c))
        .ok_or_else(|| malformed("character reference to a character not allowed in XML"))
}

/// Where decoded text is going: attribute values also normalize whitespace to spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextKind {
    CharacterData,
    AttributeValue,
}

/// Appends `raw` to `out`, resolving references and normalizing line ends (XML 1.0 §2.11,
/// and §3.3.3 for attribute values).
pub(super) fn decode_text(raw: &str, kind: TextKind, out: &mut String) -> Result<(), ParseError> {
    let bytes = raw.as_bytes();
    let is_special = |b: u8| match b {
        b'&' | b'\r' | b'<' => true,
        b'\t' | b'\n' => kind == TextKind::AttributeValue,
        _ => false,
    };
    let whitespace = if kind == TextKind::AttributeValue {
        ' '
    } else {
        '\n'
    };
    let mut plain_from = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if !is_special(b) {
            i += 1;
            continue;
        }
        out.push_str(raw.get(plain_from..i).unwrap_or_default());
        match b {
            b'&' => {
                let name_len = bytes
                    .get(i + 1..)
                    .and_then(|rest| {
                        rest.iter()
                            .take(MAX_REFERENCE_LEN + 1)
                            .position(|&b| b == b';')
                    })
                    .ok_or_else(|| malformed("unterminated entity reference"))?;
                out.push(decode_reference(
                    bytes.get(i + 1..i + 1 + name_len).unwrap_or_default(),
                )?);
                i += name_len + 2;
            }
            b'<' => return Err(malformed("'<' in an attribute value")),
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                out.push(whitespace);
                i += 2;
            }
            b'\r' => {
                out.push(whitespace);
                i += 1;
            }
            _ => {
                out.push(' ');
                i += 1;
            }
        }
        plain_from = i;
    }
    out.push_str(raw.get(plain_from..).unwrap_or_default());
    Ok(())
}

/// Appends CDATA content to `out`, normalizing line ends only.
pub(super) fn push_cdata(raw: &str, out: &mut String) {
    let mut lines = raw.split('\r');
    if let Some(first) = lines.next() {
        out.push_str(first);
    }
    for line in lines {
        out.push('\n');
        out.push_str(line.strip_prefix('\n').unwrap_or(line));
    }
}
