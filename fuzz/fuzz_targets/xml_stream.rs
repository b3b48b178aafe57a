//! Fuzz target `xml_stream`: the incremental stream parser that c2s, s2s and component
//! streams read through ([`heliograph_xml::StreamParser`]).
//!
//! Input: byte 0 picks the stanza size limit (64..=4144 bytes), byte 1 the depth limit
//! (1..=16), byte 2 the number of split points (0..=15), then two bytes per split point;
//! the rest is the stream, fed in chunks cut at those points. Checked:
//! - nothing panics;
//! - after a feed is accepted and every event taken, at most one unfinished unit is
//!   buffered, never more than the stanza limit (the limit holds before buffering);
//! - the events and the final error do not depend on where the stream was cut (the same
//!   bytes fed whole give the same sequence);
//! - after a stream close, further bytes are ignored.
#![no_main]

use heliograph_xml::{ParseError, ParserLimits, StreamEvent, StreamParser};
use libfuzzer_sys::fuzz_target;

/// Feeds `chunks` and takes every event; stops at the first error.
fn run(limits: ParserLimits, chunks: &[&[u8]]) -> (Vec<StreamEvent>, Option<ParseError>) {
    let mut parser = StreamParser::new(limits);
    let mut events = Vec::new();
    for chunk in chunks {
        let fed = parser.feed(chunk);
        loop {
            match parser.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                // The first error in stream order: a unit completed before bytes that
                // `feed` refused may itself be refused when it is built.
                Err(error) => return (events, Some(error)),
            }
        }
        assert!(fed.is_ok(), "feed failed but next_event reports nothing");
        assert!(
            parser.buffered() <= limits.max_stanza_bytes,
            "{} bytes buffered with a limit of {}",
            parser.buffered(),
            limits.max_stanza_bytes
        );
        if events.last() == Some(&StreamEvent::Close) {
            // Bytes after the close are ignored, not parsed.
            assert_eq!(parser.feed(b"<garbage"), Ok(()));
            assert_eq!(parser.next_event(), Ok(None));
        }
    }
    (events, None)
}

fuzz_target!(|data: &[u8]| {
    let [size, depth, splits, rest @ ..] = data else {
        return;
    };
    let limits = ParserLimits {
        max_stanza_bytes: 64 + usize::from(*size) * 16,
        max_depth: 1 + usize::from(*depth % 16),
    };
    let count = usize::from(*splits % 16);
    let Some((cuts, stream)) = rest.split_at_checked(count * 2) else {
        return;
    };
    let mut points: Vec<usize> = cuts
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    points.sort_unstable();
    let mut chunks = Vec::with_capacity(count + 1);
    let mut from = 0;
    for at in points {
        chunks.push(&stream[from..at]);
        from = at;
    }
    chunks.push(&stream[from..]);

    let chunked = run(limits, &chunks);
    let whole = run(limits, &[stream]);
    assert_eq!(chunked, whole, "result depends on where the stream was cut");
});
