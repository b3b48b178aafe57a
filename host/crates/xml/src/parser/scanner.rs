//! The byte-level scanner: finds where the stream header, each top-level stanza and the
//! stream close begin and end, without building anything.
//!
//! It looks at every byte exactly once and keeps its position in the markup (inside a tag,
//! an attribute value, a CDATA section, a reference, ...) across calls, so the total work is
//! linear in the input however it is chunked. Because it sees every byte as it arrives, it
//! is also where the size and depth limits and the restricted-XML rules (no DTD, comments,
//! processing instructions or custom entities) are enforced, before anything is buffered
//! whole. Well-formedness details that need the complete element (matching end tags,
//! namespaces, duplicate attributes, UTF-8) are left to the tree builder.

use std::collections::VecDeque;

use super::syntax::{
    MAX_REFERENCE_LEN, decode_reference, is_forbidden_control, is_name_start_byte,
    is_reference_byte, is_whitespace,
};
use super::tree::check_xml_declaration;
use super::{ParseError, ParserLimits, absolute_slice, malformed, restricted};

/// What the scanner is reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// An XMPP stream: a header, top-level stanzas, then the close tag.
    Stream,
    /// One standalone element (a BOSH body, a WebSocket frame).
    Document,
}

/// A complete piece of input, ready to be turned into an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UnitKind {
    /// The stream header start tag.
    Header,
    /// A complete top-level element.
    Stanza,
    /// The stream close tag.
    Close,
    /// A self-closing stream header (`<stream:stream .../>`) closes the stream at once.
    ImpliedClose,
}

/// A complete unit: bytes `start..end` as absolute offsets in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unit {
    pub kind: UnitKind,
    pub start: u64,
    pub end: u64,
}

/// Where we are in the document as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the stream header (or the document's root element).
    Prolog,
    /// Inside the stream (or inside the root element).
    Body,
    /// After the stream close (or after the root element).
    Epilog,
}

/// Where we are in the markup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Character data, or whitespace between top-level elements.
    Content,
    /// Just after `<`.
    TagOpen,
    /// Inside a start tag; `quote` is set inside an attribute value.
    StartTag {
        quote: Option<u8>,
        after_slash: bool,
    },
    /// Inside an end tag.
    EndTag,
    /// After `<!`, having matched `matched` bytes of `[CDATA[`.
    MarkupDeclaration { matched: usize },
    /// Inside a CDATA section, after `brackets` consecutive `]`.
    CData { brackets: u8 },
    /// Inside `<?...?>` (only the XML declaration gets this far).
    Declaration { after_question: bool },
    /// After the `&` at absolute offset `start`; `quote` is set inside an attribute value.
    Reference { start: u64, quote: Option<u8> },
}

const CDATA_OPEN: &[u8] = b"[CDATA[";

#[derive(Debug)]
pub(super) struct Scanner {
    mode: Mode,
    limits: ParserLimits,
    phase: Phase,
    state: State,
    /// Open elements in the current unit (the stream header is not counted).
    depth: usize,
    /// Absolute offset of the first byte of the unit being scanned, if any.
    unit_start: Option<u64>,
    /// True until the first markup: only then may an XML declaration appear.
    declaration_allowed: bool,
    /// Hashes of the names of the open elements of the current unit, so that a mismatched
    /// end tag is refused as soon as it arrives rather than leaving the stanza open forever.
    open_names: Vec<u64>,
    /// Hash of the tag name being scanned, while `in_name`.
    name_hash: u64,
    in_name: bool,
    /// The start tag being scanned opened an element whose name must be remembered.
    remember_name: bool,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME)
}

/// Bytes that end a tag name.
fn ends_name(byte: u8) -> bool {
    is_whitespace(byte) || byte == b'/' || byte == b'>'
}

impl Scanner {
    pub fn new(mode: Mode, limits: ParserLimits) -> Self {
        Scanner {
            mode,
            limits,
            phase: Phase::Prolog,
            state: State::Content,
            depth: 0,
            unit_start: None,
            declaration_allowed: true,
            open_names: Vec::new(),
            name_hash: FNV_OFFSET,
            in_name: false,
            remember_name: false,
        }
    }

    /// Replaces the limits for the rest of the scan.
    pub fn set_limits(&mut self, limits: ParserLimits) {
        self.limits = limits;
    }

    /// Start of the incomplete unit being scanned: bytes before it are no longer needed.
    pub fn unit_start(&self) -> Option<u64> {
        self.unit_start
    }

    /// True once the stream close has been seen (stream mode): later bytes are ignored.
    pub fn stream_closed(&self) -> bool {
        self.mode == Mode::Stream && self.phase == Phase::Epilog
    }

    /// True when a whole document was scanned and nothing but whitespace followed it.
    pub fn document_complete(&self) -> bool {
        self.phase == Phase::Epilog && self.state == State::Content
    }

    /// Scans `buf[from..]`, where `buf[0]` is at absolute offset `base`, appending completed
    /// units to `out`. Returns the index in `buf` where scanning stopped: `buf.len()`, or
    /// just after the stream close.
    pub fn scan(
        &mut self,
        buf: &[u8],
        base: u64,
        from: usize,
        out: &mut VecDeque<Unit>,
    ) -> Result<usize, ParseError> {
        for (index, &byte) in buf.iter().enumerate().skip(from) {
            if self.stream_closed() {
                return Ok(index);
            }
            let pos = base + index as u64;
            if is_forbidden_control(byte) {
                return Err(self.control_character_error(byte));
            }
            // Checked before the step, which may complete the unit with this byte.
            self.check_unit_size(pos)?;
            self.step(byte, pos, buf, base, out)?;
        }
        Ok(buf.len())
    }

    fn step(
        &mut self,
        byte: u8,
        pos: u64,
        buf: &[u8],
        base: u64,
        out: &mut VecDeque<Unit>,
    ) -> Result<(), ParseError> {
        match self.state {
            State::Content => self.content(byte, pos),
            State::TagOpen => self.tag_open(byte),
            State::StartTag {
                quote: Some(quote), ..
            } => self.attribute_value(byte, pos, quote),
            State::StartTag {
                quote: None,
                after_slash,
            } => self.start_tag(byte, pos, after_slash, out),
            State::EndTag => self.end_tag(byte, pos, out),
            State::MarkupDeclaration { matched } => self.markup_declaration(byte, matched),
            State::CData { brackets } => {
                self.cdata(byte, brackets);
                Ok(())
            }
            State::Declaration { after_question } => {
                self.declaration(byte, pos, after_question, buf, base)
            }
            State::Reference { start, quote } => self.reference(byte, pos, start, quote, buf, base),
        }
    }

    fn content(&mut self, byte: u8, pos: u64) -> Result<(), ParseError> {
        match byte {
            b'<' => {
                if self.depth == 0 {
                    self.unit_start = Some(pos);
                }
                self.state = State::TagOpen;
            }
            _ if self.depth > 0 => {
                if byte == b'&' {
                    self.state = State::Reference {
                        start: pos,
                        quote: None,
                    };
                }
            }
            _ if is_whitespace(byte) => {}
            _ => return Err(self.text_outside_element_error(byte)),
        }
        Ok(())
    }

    fn tag_open(&mut self, byte: u8) -> Result<(), ParseError> {
        let declaration_allowed = std::mem::replace(&mut self.declaration_allowed, false);
        self.state = match byte {
            b'/' => {
                if self.depth == 0 && !(self.mode == Mode::Stream && self.phase == Phase::Body) {
                    return Err(malformed("unexpected end tag"));
                }
                self.name_hash = FNV_OFFSET;
                self.in_name = true;
                State::EndTag
            }
            b'!' => State::MarkupDeclaration { matched: 0 },
            b'?' if declaration_allowed && self.phase == Phase::Prolog => State::Declaration {
                after_question: false,
            },
            b'?' => return Err(restricted("processing instructions are not allowed")),
            _ if is_name_start_byte(byte) => {
                self.open_element()?;
                self.name_hash = fnv(FNV_OFFSET, byte);
                self.in_name = true;
                State::StartTag {
                    quote: None,
                    after_slash: false,
                }
            }
            _ => return Err(malformed("'<' not followed by a name")),
        };
        Ok(())
    }

    /// A start tag begins: the stream header, a top-level element or a child.
    fn open_element(&mut self) -> Result<(), ParseError> {
        match (self.mode, self.phase) {
            (Mode::Stream, Phase::Prolog) => return Ok(()),
            (Mode::Document, Phase::Epilog) => {
                return Err(malformed("content after the root element"));
            }
            (Mode::Document, Phase::Prolog) => self.phase = Phase::Body,
            _ => {}
        }
        self.depth += 1;
        self.remember_name = true;
        if self.depth > self.limits.max_depth {
            return Err(super::policy_violation(format!(
                "elements nested deeper than {}",
                self.limits.max_depth
            )));
        }
        Ok(())
    }

    fn start_tag(
        &mut self,
        byte: u8,
        pos: u64,
        after_slash: bool,
        out: &mut VecDeque<Unit>,
    ) -> Result<(), ParseError> {
        if self.in_name {
            if !ends_name(byte) {
                self.name_hash = fnv(self.name_hash, byte);
            } else {
                self.in_name = false;
                if std::mem::take(&mut self.remember_name) {
                    self.open_names.push(self.name_hash);
                }
            }
        }
        match byte {
            b'>' => {
                self.state = State::Content;
                self.close_start_tag(pos, after_slash, out)?;
            }
            b'"' | b'\'' => {
                self.state = State::StartTag {
                    quote: Some(byte),
                    after_slash: false,
                }
            }
            b'<' => return Err(malformed("'<' inside a tag")),
            b'&' => return Err(malformed("'&' outside an attribute value")),
            _ => {
                self.state = State::StartTag {
                    quote: None,
                    after_slash: byte == b'/',
                }
            }
        }
        Ok(())
    }

    fn attribute_value(&mut self, byte: u8, pos: u64, quote: u8) -> Result<(), ParseError> {
        match byte {
            _ if byte == quote => {
                self.state = State::StartTag {
                    quote: None,
                    after_slash: false,
                }
            }
            b'<' => return Err(malformed("'<' in an attribute value")),
            b'&' => {
                self.state = State::Reference {
                    start: pos,
                    quote: Some(quote),
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The `>` of a start tag at `pos`.
    fn close_start_tag(
        &mut self,
        pos: u64,
        self_closing: bool,
        out: &mut VecDeque<Unit>,
    ) -> Result<(), ParseError> {
        if self.mode == Mode::Stream && self.phase == Phase::Prolog {
            self.complete_unit(UnitKind::Header, pos, out);
            if self_closing {
                out.push_back(Unit {
                    kind: UnitKind::ImpliedClose,
                    start: pos + 1,
                    end: pos + 1,
                });
                self.phase = Phase::Epilog;
            } else {
                self.phase = Phase::Body;
            }
        } else if self_closing {
            self.close_element(pos, None, out)?;
        }
        Ok(())
    }

    fn end_tag(&mut self, byte: u8, pos: u64, out: &mut VecDeque<Unit>) -> Result<(), ParseError> {
        if self.in_name {
            if ends_name(byte) {
                self.in_name = false;
            } else {
                self.name_hash = fnv(self.name_hash, byte);
            }
        }
        match byte {
            b'>' if self.depth == 0 => {
                self.state = State::Content;
                self.complete_unit(UnitKind::Close, pos, out);
                self.phase = Phase::Epilog;
            }
            b'>' => {
                self.state = State::Content;
                self.close_element(pos, Some(self.name_hash), out)?;
            }
            b'<' | b'"' | b'\'' | b'&' => return Err(malformed("malformed end tag")),
            _ => {}
        }
        Ok(())
    }

    /// An element ends at `pos`; if it was top-level, its unit is complete. `end_name` is
    /// the hash of the end tag's name (`None` for a self-closing tag).
    fn close_element(
        &mut self,
        pos: u64,
        end_name: Option<u64>,
        out: &mut VecDeque<Unit>,
    ) -> Result<(), ParseError> {
        let opened = self.open_names.pop();
        if let (Some(end), Some(start)) = (end_name, opened)
            && end != start
        {
            return Err(malformed("end tag does not match the start tag"));
        }
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 0 {
            self.complete_unit(UnitKind::Stanza, pos, out);
            if self.mode == Mode::Document {
                self.phase = Phase::Epilog;
            }
        }
        Ok(())
    }

    fn complete_unit(&mut self, kind: UnitKind, last_byte: u64, out: &mut VecDeque<Unit>) {
        let start = self.unit_start.take().unwrap_or(last_byte);
        out.push_back(Unit {
            kind,
            start,
            end: last_byte + 1,
        });
    }

    fn markup_declaration(&mut self, byte: u8, matched: usize) -> Result<(), ParseError> {
        if matched == 0 && byte == b'-' {
            return Err(restricted("comments are not allowed"));
        }
        if matched == 0 && byte.is_ascii_uppercase() {
            return Err(restricted("DTDs and markup declarations are not allowed"));
        }
        if CDATA_OPEN.get(matched) != Some(&byte) {
            return Err(malformed("malformed markup declaration"));
        }
        self.state = if matched + 1 < CDATA_OPEN.len() {
            State::MarkupDeclaration {
                matched: matched + 1,
            }
        } else if self.depth == 0 {
            return Err(malformed("character data outside an element"));
        } else {
            State::CData { brackets: 0 }
        };
        Ok(())
    }

    fn cdata(&mut self, byte: u8, brackets: u8) {
        self.state = match byte {
            b']' => State::CData {
                brackets: (brackets + 1).min(2),
            },
            b'>' if brackets == 2 => State::Content,
            _ => State::CData { brackets: 0 },
        };
    }

    /// Inside `<?...?>` in the prolog: once complete, it must be a valid XML declaration.
    fn declaration(
        &mut self,
        byte: u8,
        pos: u64,
        after_question: bool,
        buf: &[u8],
        base: u64,
    ) -> Result<(), ParseError> {
        if byte == b'>' && after_question {
            let start = self.unit_start.take().unwrap_or(pos);
            check_xml_declaration(absolute_slice(buf, base, start, pos + 1)?)?;
            self.state = State::Content;
        } else {
            self.state = State::Declaration {
                after_question: byte == b'?',
            };
        }
        Ok(())
    }

    /// Inside `&...;`: checked as soon as it is complete.
    fn reference(
        &mut self,
        byte: u8,
        pos: u64,
        start: u64,
        quote: Option<u8>,
        buf: &[u8],
        base: u64,
    ) -> Result<(), ParseError> {
        if byte == b';' {
            decode_reference(absolute_slice(buf, base, start + 1, pos)?)?;
            self.state = match quote {
                Some(quote) => State::StartTag {
                    quote: Some(quote),
                    after_slash: false,
                },
                None => State::Content,
            };
        } else if !is_reference_byte(byte) {
            return Err(malformed("'&' not followed by a reference"));
        } else if pos.saturating_sub(start) > MAX_REFERENCE_LEN as u64 {
            return Err(restricted("only the predefined entities may be referenced"));
        }
        Ok(())
    }

    /// Fails if the unit being scanned would grow beyond the limit with the byte at `pos`.
    fn check_unit_size(&self, pos: u64) -> Result<(), ParseError> {
        match self.unit_start {
            Some(start)
                if (pos + 1).saturating_sub(start) > self.limits.max_stanza_bytes as u64 =>
            {
                Err(super::policy_violation(format!(
                    "stanza larger than {} bytes",
                    self.limits.max_stanza_bytes
                )))
            }
            _ => Ok(()),
        }
    }

    fn control_character_error(&self, byte: u8) -> ParseError {
        if byte == 0 && self.phase == Phase::Prolog {
            return ParseError::UnsupportedEncoding("only UTF-8 is supported".to_owned());
        }
        malformed("control character not allowed in XML")
    }

    fn text_outside_element_error(&self, byte: u8) -> ParseError {
        match self.phase {
            Phase::Prolog if matches!(byte, 0xFE | 0xFF) => {
                ParseError::UnsupportedEncoding("only UTF-8 is supported".to_owned())
            }
            Phase::Prolog if self.mode == Mode::Stream => {
                malformed("unexpected data before the stream header")
            }
            Phase::Body if self.mode == Mode::Stream => malformed("text at stream level"),
            _ => malformed("text outside the root element"),
        }
    }
}
