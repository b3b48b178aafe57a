//! Answers the server's XEP-0199 pings on a raw chat stream. Without stream management a
//! cluster node pings a client after handing it messages another node sent (see
//! docs/CLUSTER.md, "In-flight messages"): the answer shows the client read them, and
//! only then does the sending node let its copy go. A client that never answered would
//! leave every cross-node message kept in both nodes' memory, which no real client does.

/// Scans received bytes for `<iq type='get'>` pings, across reads split anywhere.
#[derive(Debug, Default)]
pub struct PingAnswers {
    /// Bytes from the start of an `<iq` whose end has not arrived yet (or a tail that
    /// may be the start of one).
    pending: Vec<u8>,
}

const OPEN: &[u8] = b"<iq";
const CLOSE: &[u8] = b"</iq>";
/// An iq this long without its end is not a ping: dropped rather than buffered.
const MAX_PENDING: usize = 64 * 1024;

impl PingAnswers {
    pub fn new() -> PingAnswers {
        PingAnswers::default()
    }

    /// Feeds the bytes of one read; appends the answer to every ping completed by them to
    /// `out` and returns how many there were.
    pub fn scan(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> usize {
        if self.pending.is_empty() {
            match find(chunk, OPEN) {
                Some(at) => self.pending.extend_from_slice(&chunk[at..]),
                None => {
                    self.keep_open_prefix(chunk);
                    return 0;
                }
            }
        } else {
            self.pending.extend_from_slice(chunk);
        }
        let mut answered = 0;
        let mut at = 0;
        loop {
            let Some(open) = find(&self.pending[at..], OPEN).map(|o| at + o) else {
                let rest = self.pending.split_off(at);
                self.pending.clear();
                self.keep_open_prefix(&rest);
                break;
            };
            let Some(end) = element_end(&self.pending[open..]).map(|e| open + e) else {
                // Incomplete: keep it from its start (unless it is far too long).
                if self.pending.len() - open > MAX_PENDING {
                    self.pending.clear();
                } else {
                    self.pending.drain(..open);
                }
                return answered;
            };
            if let Some(answer) = answer_to(&self.pending[open..end]) {
                out.extend_from_slice(answer.as_bytes());
                answered += 1;
            }
            at = end;
        }
        answered
    }

    /// Keeps the end of `bytes` if it could be the start of `<iq` cut by the read.
    fn keep_open_prefix(&mut self, bytes: &[u8]) {
        for len in (1..OPEN.len()).rev() {
            if bytes.len() >= len && bytes[bytes.len() - len..] == OPEN[..len] {
                self.pending.extend_from_slice(&OPEN[..len]);
                return;
            }
        }
    }
}

/// Where the iq starting `bytes` ends (one past its last byte), if it is complete.
fn element_end(bytes: &[u8]) -> Option<usize> {
    let gt = bytes.iter().position(|b| *b == b'>')?;
    if gt > 0 && bytes[gt - 1] == b'/' {
        return Some(gt + 1);
    }
    find(&bytes[gt..], CLOSE).map(|c| gt + c + CLOSE.len())
}

/// The result for a complete iq if it is a ping (`type='get'` with an
/// `urn:xmpp:ping` child).
fn answer_to(iq: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(iq).ok()?;
    let start_tag = &text[..text.find('>')?];
    if attr(start_tag, "type") != Some("get") || !text.contains("urn:xmpp:ping") {
        return None;
    }
    let id = attr(start_tag, "id")?;
    Some(match attr(start_tag, "from") {
        Some(from) => format!("<iq type='result' id='{id}' to='{from}'/>"),
        None => format!("<iq type='result' id='{id}'/>"),
    })
}

/// The value of attribute `name` in a start tag (either quote), as written.
fn attr<'a>(start_tag: &'a str, name: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(pos) = start_tag[from..].find(name).map(|p| from + p) {
        from = pos + name.len();
        let before = start_tag[..pos].chars().next_back();
        let rest = &start_tag[from..];
        if !before.is_some_and(char::is_whitespace) || !rest.starts_with('=') {
            continue;
        }
        let quote = rest[1..].chars().next()?;
        if quote != '\'' && quote != '"' {
            return None;
        }
        let value = &rest[2..];
        return value.find(quote).map(|end| &value[..end]);
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PING: &str = "<iq type='get' id='hg-ping-3' from='localhost' to='a@localhost/r' \
                        xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>";

    #[test]
    fn a_ping_split_anywhere_is_answered_once() {
        let stream = format!(
            "<message><body>1 2</body></message>{PING}<iq type='result' id='x'/>\
             <iq type=\"get\" id=\"q\"><query xmlns='jabber:iq:version'/></iq><message/>"
        );
        let bytes = stream.as_bytes();
        for cut in 0..bytes.len() {
            let mut p = PingAnswers::new();
            let mut out = Vec::new();
            let n = p.scan(&bytes[..cut], &mut out) + p.scan(&bytes[cut..], &mut out);
            assert_eq!(n, 1, "cut at {cut}");
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "<iq type='result' id='hg-ping-3' to='localhost'/>",
                "cut at {cut}"
            );
            assert!(p.pending.is_empty(), "cut at {cut}: {:?}", p.pending);
        }
    }

    #[test]
    fn attributes_are_found_by_whole_name_with_either_quote() {
        let tag = "<iq xtype='set' type=\"get\" id='a\"b' from='d'";
        assert_eq!(attr(tag, "type"), Some("get"));
        assert_eq!(attr(tag, "id"), Some("a\"b"));
        assert_eq!(attr(tag, "to"), None);
    }

    #[test]
    fn many_pings_in_one_read_are_all_answered() {
        let mut p = PingAnswers::new();
        let mut out = Vec::new();
        assert_eq!(
            p.scan(format!("{PING}{PING}{PING}").as_bytes(), &mut out),
            3
        );
        assert_eq!(
            p.scan(b"<message><body>no iq</body></message>", &mut out),
            0
        );
        assert_eq!(
            out.len(),
            3 * "<iq type='result' id='hg-ping-3' to='localhost'/>".len()
        );
    }
}
