//! A plugin that misbehaves on purpose, to prove the host contains it. Its config picks
//! the behaviour: `{"mode": M}` for `authenticate`, `{"init": I}` for `init`.
//!
//! | mode        | does                                                        |
//! |-------------|-------------------------------------------------------------|
//! | `loop`      | spins forever                                               |
//! | `memory`    | allocates and touches memory until it runs out              |
//! | `trap`      | panics                                                      |
//! | `stack`     | recurses until the stack overflows                          |
//! | `oversized` | returns a 2 MiB display name and 10 000 roles               |
//! | `invalid`   | returns a username that is not a localpart                  |
//! | `kv-flood`  | writes 60 KiB values until the host refuses, reports why    |
//! | `log-flood` | writes 1 000 log lines                                       |
//! | otherwise   | accepts anyone                                              |
//!
//! `init`: `refuse` returns an error, `trap` panics, `loop` spins; otherwise accepts.
//!
//! Installed as a component (world `component`), `handle` follows the same `mode`:
//! `loop`, `memory`, `trap` and `stack` as above; `oversized` returns 2 stanzas of
//! 300 KiB; `invalid` returns garbage, a non-stanza and a stanza spoofing a user's
//! `from`; `refuse` returns the plugin's own error; otherwise it answers a message with a
//! `pong` message.

use heliograph_plugin_sdk::prelude::*;

struct Hostile;

impl Authenticator for Hostile {
    fn authenticate(request: AuthRequest) -> AuthResult {
        match config::get("mode").as_deref() {
            Some("loop") => spin(),
            Some("memory") => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![0xA5; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Some("trap") => panic!("hostile plugin panics on purpose"),
            Some("stack") => Ok(User::new(format!("{}", recurse(1)))),
            Some("oversized") => {
                let mut user = User::new(request.username).display_name("x".repeat(2 << 20));
                for i in 0..10_000 {
                    user = user.role(format!("role-{i}"));
                }
                Ok(user)
            }
            Some("invalid") => Ok(User::new("mallory@evil.example/res")),
            Some("kv-flood") => {
                let value = vec![7u8; 60 * 1024];
                for i in 0.. {
                    if let Err(e) = kv::set(&format!("junk/{i}"), &value) {
                        return Err(AuthFailure::temporary(format!("after {i} writes: {e}")));
                    }
                }
                unreachable!()
            }
            Some("log-flood") => {
                for i in 0..1_000 {
                    log::info("flood", &[("i", &i.to_string())]);
                }
                Ok(User::new(request.username))
            }
            _ => Ok(User::new(request.username)),
        }
    }

    fn init(_config: &str) -> Result<(), String> {
        match config::get("init").as_deref() {
            Some("refuse") => Err("hostile: this configuration is refused".into()),
            Some("trap") => panic!("hostile init panics"),
            Some("loop") => spin(),
            _ => Ok(()),
        }
    }
}

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

impl Component for Hostile {
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

    fn init(_config: &str) -> Result<(), String> {
        // The authenticator's init already checked the configuration.
        Ok(())
    }
}

heliograph_plugin_sdk::plugin!(authenticator = Hostile, component = Hostile);
