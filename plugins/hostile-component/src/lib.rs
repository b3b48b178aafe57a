//! A component (world `component`) that misbehaves on purpose, to prove the host contains
//! it. Its config picks the behaviour of `handle`: `{"mode": M}`.
//!
//! | mode        | does                                                              |
//! |-------------|-------------------------------------------------------------------|
//! | `loop`      | spins forever                                                     |
//! | `memory`    | allocates and touches memory until it runs out                    |
//! | `trap`      | panics                                                            |
//! | `stack`     | recurses until the stack overflows                                |
//! | `oversized` | returns 2 stanzas of 300 KiB (over the server's stanza size limit) |
//! | `invalid`   | returns garbage, a non-stanza and a stanza spoofing a user's from |
//! | `refuse`    | returns the plugin's own error                                    |
//! | `relay`     | forwards every message to the JID in the config's `target`        |
//! | otherwise   | answers a message with a `pong` message                           |

use heliograph_plugin_sdk::prelude::*;

struct HostileComponent;

impl Component for HostileComponent {
    fn handle(stanza: Stanza) -> HandleResult {
        match config::get("mode").as_deref() {
            Some("loop") => spin(),
            Some("memory") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![0xA5; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Some("trap") => panic!("hostile component panics on purpose"),
            Some("stack") => Err(format!("{}", recurse(1))),
            Some("oversized") => {
                let big = format!(
                    "<message from='{}' to='{}'><body>{}</body></message>",
                    stanza.to,
                    stanza.from,
                    "x".repeat(300 * 1024)
                );
                Ok(vec![big; 2])
            }
            Some("invalid") => Ok(vec![
                "<message><body>unclosed".into(),
                format!("<foo xmlns='jabber:client' from='{}'/>", stanza.to),
                format!(
                    "<message xmlns='jabber:client' from='admin@{}' to='{}'><body>spoof</body></message>",
                    stanza
                        .domain
                        .split_once('.')
                        .map_or("", |(_, parent)| parent),
                    stanza.from
                ),
            ]),
            Some("refuse") => Err("hostile: refused".into()),
            Some("relay") => {
                let target = config::get("target").unwrap_or_default();
                Ok(vec![
                    Element::new("message", xml::CLIENT)
                        .attr("from", &stanza.to)
                        .attr("to", &target)
                        .attr("type", "chat")
                        .child(Element::new("body", xml::CLIENT).text("relayed"))
                        .to_xml(),
                ])
            }
            _ if stanza.kind == StanzaKind::Message => Ok(vec![
                Element::new("message", xml::CLIENT)
                    .attr("from", &stanza.to)
                    .attr("to", &stanza.from)
                    .attr("type", "chat")
                    .child(Element::new("body", xml::CLIENT).text("pong"))
                    .to_xml(),
            ]),
            _ => Ok(Vec::new()),
        }
    }
}

heliograph_plugin_sdk::component!(HostileComponent);

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + pad[3]
}
