//! Client side of XEP-0198 stream management for the load scenarios: a cheap, incremental
//! scanner over the raw bytes the server sends after login, which counts the stanzas the
//! client receives (its `h`) and finds the server's `<r/>` (to answer with `<a h='…'/>`),
//! the server's `<a h='…'/>`, a stream error and the end of the stream.
//!
//! The scanner is a byte state machine that tracks element depth, so only top-level
//! elements count (a `<message>` inside a forwarded message does not), attribute values
//! are skipped whole (a `>` or `<` inside quotes does not confuse it), and a tag split
//! across reads is handled: it keeps only its state between calls, not the bytes. It
//! assumes what a server sends once the stream is open: no comments, processing
//! instructions, CDATA or DTD (XMPP forbids them in a stream).

/// `urn:xmpp:sm:3`
pub const NS: &str = "urn:xmpp:sm:3";

/// `<enable/>` asking for a resumable session.
pub fn enable_resumable() -> String {
    format!("<enable xmlns='{NS}' resume='true'/>")
}

/// `<a h='…'/>`
pub fn ack(h: u32) -> String {
    format!("<a xmlns='{NS}' h='{h}'/>")
}

/// Appends `<a h='…'/>` to an output buffer.
pub fn write_ack(out: &mut Vec<u8>, h: u32) {
    use std::io::Write as _;
    let _ = write!(out, "<a xmlns='{NS}' h='{h}'/>");
}

/// `<r/>`
pub fn request() -> String {
    format!("<r xmlns='{NS}'/>")
}

/// `<resume/>` of session `previd` having handled `h` stanzas.
pub fn resume(previd: &str, h: u32) -> String {
    format!("<resume xmlns='{NS}' previd='{previd}' h='{h}'/>")
}

/// True for the top-level elements stream management counts.
pub fn is_stanza(name: &[u8]) -> bool {
    matches!(name, b"message" | b"presence" | b"iq")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Character data (or nothing) between tags.
    Text,
    /// Just after `<`.
    Open,
    /// In the element name of a tag.
    Name,
    /// In a tag, after its name.
    Tag,
    /// In a quoted attribute value (the quote character).
    Quote(u8),
}

/// What one [`SmScanner::scan`] call found, in order where order matters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found {
    /// One entry per server `<r/>`: the client's `h` at that point (what to answer).
    pub requests: Vec<u32>,
    /// The `h` of every server `<a/>`.
    pub acks: Vec<u32>,
    /// Top-level stanzas counted in this call.
    pub stanzas: u32,
    /// A `<stream:error>` began (its raw bytes as far as this read holds them).
    pub stream_error: Option<String>,
    /// The stream ended (`</stream:stream>`).
    pub closed: bool,
    /// A malformed SM element (an `<a/>` without a numeric `h`).
    pub malformed: Option<String>,
}

impl Found {
    /// Clears for reuse (keeps the allocations).
    pub fn clear(&mut self) {
        self.requests.clear();
        self.acks.clear();
        self.stanzas = 0;
        self.stream_error = None;
        self.closed = false;
        self.malformed = None;
    }
}

/// Longest tag kept to read attributes from (SM elements are short; stanza tags are only
/// classified by name).
const TAG_CAP: usize = 256;

/// The incremental scanner (see the module docs).
#[derive(Debug, Clone)]
pub struct SmScanner {
    state: State,
    /// Element depth: 1 inside the stream (top-level stanzas open at depth 1).
    depth: u32,
    /// The current tag is a closing tag (`</…>`).
    closing: bool,
    /// The last byte of the tag outside quotes was `/` (a self-closing tag).
    slash: bool,
    /// Name of the current tag (prefix included, e.g. `stream:error`).
    name: Vec<u8>,
    /// Bytes of the current top-level tag (up to [`TAG_CAP`]), for SM attributes.
    tag: Vec<u8>,
    /// Stanzas received since the scanner started (the client's `h`, mod 2^32).
    h: u32,
}

impl Default for SmScanner {
    fn default() -> Self {
        SmScanner::in_stream()
    }
}

impl SmScanner {
    /// A scanner for bytes inside an open stream (the stream header already read).
    pub fn in_stream() -> Self {
        SmScanner {
            state: State::Text,
            depth: 1,
            closing: false,
            slash: false,
            name: Vec::with_capacity(16),
            tag: Vec::with_capacity(64),
            h: 0,
        }
    }

    /// [`SmScanner::in_stream`] for a session that received `handled` stanzas before.
    pub fn in_stream_at(handled: u32) -> Self {
        SmScanner {
            h: handled,
            ..SmScanner::in_stream()
        }
    }

    /// Stanzas counted so far (the client's `h`).
    pub fn handled(&self) -> u32 {
        self.h
    }

    /// Scans the next bytes of the stream; results are appended to `found`.
    pub fn scan(&mut self, bytes: &[u8], found: &mut Found) {
        let mut i = 0;
        // Where the current tag began in `bytes` (0 if it began in an earlier read).
        let mut tag_start = 0;
        while i < bytes.len() {
            match self.state {
                State::Text => match bytes[i..].iter().position(|&b| b == b'<') {
                    Some(p) => {
                        i += p + 1;
                        tag_start = i - 1;
                        self.state = State::Open;
                        self.closing = false;
                        self.slash = false;
                        self.name.clear();
                        self.tag.clear();
                        if self.depth <= 1 {
                            self.tag.push(b'<');
                        }
                        continue;
                    }
                    None => return,
                },
                State::Open => {
                    let b = bytes[i];
                    self.keep(b);
                    if b == b'/' {
                        self.closing = true;
                    } else {
                        self.name.push(b);
                    }
                    self.state = State::Name;
                }
                State::Name => {
                    let b = bytes[i];
                    match b {
                        b'>' => self.end_tag(bytes, tag_start, found),
                        b'/' => {
                            self.keep(b);
                            self.slash = true;
                            self.state = State::Tag;
                        }
                        b' ' | b'\t' | b'\r' | b'\n' => {
                            self.keep(b);
                            self.state = State::Tag;
                        }
                        _ => {
                            self.keep(b);
                            if self.name.len() < 64 {
                                self.name.push(b);
                            }
                        }
                    }
                }
                State::Tag => {
                    let b = bytes[i];
                    match b {
                        b'>' => self.end_tag(bytes, tag_start, found),
                        b'\'' | b'"' => {
                            self.keep(b);
                            self.slash = false;
                            self.state = State::Quote(b);
                        }
                        b' ' | b'\t' | b'\r' | b'\n' => self.keep(b),
                        _ => {
                            self.keep(b);
                            self.slash = b == b'/';
                        }
                    }
                }
                State::Quote(q) => {
                    // Skip the value in one step when its end is in this read.
                    match bytes[i..].iter().position(|&b| b == q) {
                        Some(p) => {
                            for &b in &bytes[i..i + p + 1] {
                                self.keep(b);
                            }
                            i += p;
                            self.state = State::Tag;
                        }
                        None => {
                            for &b in &bytes[i..] {
                                self.keep(b);
                            }
                            return;
                        }
                    }
                }
            }
            i += 1;
        }
    }

    /// Keeps a byte of a top-level tag (bounded).
    fn keep(&mut self, b: u8) {
        if self.depth <= 1 && self.tag.len() < TAG_CAP {
            self.tag.push(b);
        }
    }

    /// The `>` of a tag.
    fn end_tag(&mut self, bytes: &[u8], tag_start: usize, found: &mut Found) {
        self.keep(b'>');
        self.state = State::Text;
        if self.closing {
            self.depth = self.depth.saturating_sub(1);
            if self.depth == 0 && self.name == b"stream:stream" {
                found.closed = true;
            }
            return;
        }
        if self.depth == 0 {
            // A stream header (after a restart): stanzas follow at depth 1.
            if self.name == b"stream:stream" {
                self.depth = 1;
            }
            return;
        }
        if self.depth == 1 {
            self.top_level(bytes, tag_start, found);
        }
        if !self.slash {
            self.depth += 1;
        }
    }

    /// A top-level element starts.
    fn top_level(&mut self, bytes: &[u8], tag_start: usize, found: &mut Found) {
        let name = self.name.as_slice();
        if is_stanza(name) {
            self.h = self.h.wrapping_add(1);
            found.stanzas += 1;
            return;
        }
        let sm = contains(&self.tag, NS.as_bytes());
        match name {
            b"r" if sm => found.requests.push(self.h),
            b"a" if sm => match attr(&self.tag, b"h").and_then(|v| v.parse().ok()) {
                Some(h) => found.acks.push(h),
                None => {
                    found.malformed = Some(String::from_utf8_lossy(&self.tag).into_owned());
                }
            },
            b"stream:error" => {
                let end = bytes.len().min(tag_start + 512);
                found.stream_error =
                    Some(String::from_utf8_lossy(&bytes[tag_start.min(end)..end]).into_owned());
            }
            _ => {}
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The value of attribute `name` in a tag's bytes (no entity decoding: SM values are
/// numbers and ids).
pub fn attr<'a>(tag: &'a [u8], name: &[u8]) -> Option<&'a str> {
    let mut i = 0;
    while i < tag.len() {
        // Start of an attribute name: after whitespace.
        if tag[i].is_ascii_whitespace() {
            let at = i + 1;
            let rest = &tag[at..];
            if rest.starts_with(name) {
                let mut j = at + name.len();
                while j < tag.len() && tag[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < tag.len() && tag[j] == b'=' {
                    j += 1;
                    while j < tag.len() && tag[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    let q = *tag.get(j)?;
                    if q == b'\'' || q == b'"' {
                        let end = tag[j + 1..].iter().position(|&b| b == q)?;
                        return std::str::from_utf8(&tag[j + 1..j + 1 + end]).ok();
                    }
                }
            }
        }
        // Skip quoted values so a name inside a value is not taken for an attribute.
        if tag[i] == b'\'' || tag[i] == b'"' {
            let q = tag[i];
            match tag[i + 1..].iter().position(|&b| b == q) {
                Some(p) => i += p + 1,
                None => return None,
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the server sends to a chat receiver with SM on: stanzas, `<r/>` after each
    /// fifth, an `<a/>` answering the client's own request.
    const STREAM: &str = "<presence from='a@d/load' to='a@d/load' xmlns='jabber:client'/>\
        <message from='b@d/load' to='a@d/load' type='chat' id='m0' xmlns='jabber:client'><body>0 1</body></message>\
        <message from='b@d/load' to='a@d/load' type='chat' id='m1' xmlns='jabber:client'><body>1 2</body></message>\
        <iq type='result' id='p' to='a@d/load' xmlns='jabber:client'/>\
        <message from='b@d/load' to='a@d/load' type='chat' id='m2' xmlns='jabber:client'><body>2 3</body></message>\
        <r xmlns='urn:xmpp:sm:3'/>\
        <message from='b@d/load' to='a@d/load' type='chat' id='x&gt;' xmlns='jabber:client'><body>a &lt;message&gt; in text</body>\
        <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' to='z' id=\"q'>\"><body>3</body></message></forwarded></message>\
        <a xmlns='urn:xmpp:sm:3' h='17'/>\
        <r xmlns=\"urn:xmpp:sm:3\" />";

    fn scan_all(chunks: &[&[u8]]) -> (SmScanner, Found) {
        let mut s = SmScanner::in_stream();
        let mut found = Found::default();
        for c in chunks {
            s.scan(c, &mut found);
        }
        (s, found)
    }

    #[test]
    fn counts_top_level_stanzas_and_answers_requests_with_the_count_so_far() {
        let (s, found) = scan_all(&[STREAM.as_bytes()]);
        // presence, 2 messages, iq, message, then the message with a nested message.
        assert_eq!(s.handled(), 6);
        assert_eq!(found.stanzas, 6);
        assert_eq!(found.requests, vec![5, 6]);
        assert_eq!(found.acks, vec![17]);
        assert_eq!(found.stream_error, None);
        assert!(!found.closed);
        assert_eq!(s.depth, 1);
    }

    #[test]
    fn every_split_of_the_stream_gives_the_same_result() {
        let bytes = STREAM.as_bytes();
        let (_, whole) = scan_all(&[bytes]);
        for cut in 0..bytes.len() {
            let (s, found) = scan_all(&[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(found, whole, "cut at {cut}");
            assert_eq!(s.handled(), 6, "cut at {cut}");
        }
        // Byte by byte.
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        let (_, found) = scan_all(&chunks);
        assert_eq!(found, whole);
    }

    #[test]
    fn counts_wrap_and_a_new_stream_header_is_followed() {
        let mut s = SmScanner::in_stream();
        s.h = u32::MAX;
        let mut found = Found::default();
        s.scan(
            b"<message xmlns='jabber:client'/><r xmlns='urn:xmpp:sm:3'/>",
            &mut found,
        );
        assert_eq!(found.requests, vec![0]);
        // A scanner from before the stream header (depth 0).
        let mut s = SmScanner {
            depth: 0,
            ..SmScanner::in_stream()
        };
        let mut found = Found::default();
        s.scan(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0'><stream:features><sm xmlns='urn:xmpp:sm:3'/></stream:features><iq type='result' id='1'/>",
            &mut found,
        );
        // The XML declaration is not a stream header; only the iq counts.
        assert_eq!(s.handled(), 1);
    }

    #[test]
    fn finds_stream_errors_and_the_end_of_the_stream() {
        let text = "<message xmlns='jabber:client'><body>1 2</body></message>\
            <stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
            <handled-count-too-high xmlns='urn:xmpp:sm:3' h='9' send-count='6'/></stream:error></stream:stream>";
        let (s, found) = scan_all(&[text.as_bytes()]);
        assert_eq!(s.handled(), 1);
        let e = found.stream_error.expect("stream error");
        assert!(e.starts_with("<stream:error><undefined-condition"), "{e}");
        assert!(e.contains("handled-count-too-high"), "{e}");
        assert!(found.closed);
        // The SM element inside the error is no ack.
        assert!(found.acks.is_empty());
    }

    #[test]
    fn elements_of_other_namespaces_named_like_sm_ones_are_ignored() {
        let (_, found) = scan_all(&[b"<r xmlns='urn:example'/><a h='3' xmlns='urn:example'/>"]);
        assert!(found.requests.is_empty() && found.acks.is_empty());
        let (_, found) = scan_all(&[b"<a xmlns='urn:xmpp:sm:3' h='x'/>"]);
        assert!(found.malformed.is_some());
    }

    #[test]
    fn reads_attributes() {
        let tag = b"<a xmlns='urn:xmpp:sm:3' id=\"h='1'\" h = '42'/>";
        assert_eq!(attr(tag, b"h"), Some("42"));
        assert_eq!(attr(tag, b"id"), Some("h='1'"));
        assert_eq!(attr(b"<a hh='1'/>", b"h"), None);
        assert_eq!(attr(b"<a h='1/>", b"h"), None);
    }

    #[test]
    fn builds_sm_elements() {
        assert_eq!(ack(3), "<a xmlns='urn:xmpp:sm:3' h='3'/>");
        let mut out = Vec::new();
        write_ack(&mut out, 4294967295);
        assert_eq!(out, b"<a xmlns='urn:xmpp:sm:3' h='4294967295'/>");
        assert_eq!(request(), "<r xmlns='urn:xmpp:sm:3'/>");
        assert_eq!(
            resume("abc", 7),
            "<resume xmlns='urn:xmpp:sm:3' previd='abc' h='7'/>"
        );
        assert_eq!(
            enable_resumable(),
            "<enable xmlns='urn:xmpp:sm:3' resume='true'/>"
        );
    }
}
