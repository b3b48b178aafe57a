//! Fuzz target `websocket_framing`: RFC 7395 framing ([`heliograph_xmpp::framing`]), the
//! parser every WebSocket text frame goes through (`<open/>`, `<close/>` or a stanza).
//!
//! Input: the frame's text (frames that are not UTF-8 are refused by the WebSocket layer
//! before this point, so such inputs are skipped), parsed with a 4 KiB stanza limit.
//! Checked: nothing panics; a stanza serialized as a frame again ([`frame_text`]) parses
//! back to the same serialization (for elements in a namespace: see below).
#![no_main]

use heliograph_xml::{ParserLimits, StreamEvent};
use heliograph_xmpp::framing::{frame_event, frame_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = ParserLimits {
        max_stanza_bytes: 4096,
        ..ParserLimits::default()
    };
    let Ok(event) = frame_event(text, limits) else {
        return;
    };
    match event {
        StreamEvent::Open(header) => {
            let _ = header.attr("to");
        }
        StreamEvent::Close => {}
        // A top-level element in no namespace (`<r xmlns=''/>`) is written without `xmlns`,
        // which a frame reads as `jabber:client` (the client default): not a round trip, and
        // never sent (the server writes stanzas and stream elements only).
        StreamEvent::Stanza(el) if el.ns().is_empty() => {}
        StreamEvent::Stanza(el) => {
            let frame = frame_text(&el);
            let roomy = ParserLimits {
                max_stanza_bytes: usize::MAX,
                ..limits
            };
            if let Ok(StreamEvent::Stanza(again)) = frame_event(&frame, roomy) {
                assert_eq!(frame_text(&again), frame, "frame changed in a round trip");
            }
        }
    }
});
