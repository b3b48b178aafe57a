//! Fuzz target `bosh_body`: the BOSH request parser ([`heliograph_xmpp::bosh`],
//! XEP-0124/XEP-0206), which reads every HTTP request body of the BOSH endpoint.
//!
//! Input: the request body, parsed with a 4 KiB stanza limit and the default depth.
//! Checked: nothing panics; an accepted request has a `rid` in 1..2^53 (XEP-0124 §14.1);
//! the payload rendered back into a `<body/>` parses again to the same payload.
#![no_main]

use heliograph_xml::ParserLimits;
use heliograph_xmpp::bosh::{BodyRequest, render};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = ParserLimits {
        max_stanza_bytes: 4096,
        ..ParserLimits::default()
    };
    let Ok(request) = BodyRequest::parse(data, limits) else {
        return;
    };
    assert!(
        request.rid > 0 && request.rid < 1 << 53,
        "rid {}",
        request.rid
    );
    let _ = request.is_empty_poll();
    // What the server sends back (the same renderer) must be readable by the same parser.
    let rendered = render(&[("rid", "1")], &request.payload);
    let roomy = ParserLimits {
        max_stanza_bytes: usize::MAX,
        ..limits
    };
    if let Ok(again) = BodyRequest::parse(rendered.as_bytes(), roomy) {
        assert_eq!(
            render(&[("rid", "1")], &again.payload),
            rendered,
            "payload changed in a render/parse round trip"
        );
    }
});
