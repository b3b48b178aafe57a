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
//! | `memo`      | remembers, in its instance, what earlier calls saw (below)  |
//! | otherwise   | accepts anyone                                              |
//!
//! `memo` shows what instance reuse keeps: it accepts anyone, with the attributes
//! `calls` (calls this instance has served, this one included) and `previous` (the
//! username of the instance's previous call, empty on its first), and the attribute
//! `tenant` of the request; the username `trap` then panics, `loop` spins past the
//! deadline, `memory` runs out of memory, and `print` writes to stderr and succeeds.
//!
//! `init`: `refuse` returns an error, `trap` panics, `loop` spins; otherwise accepts.

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
            Some("memo") => memo(request),
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

fn memo(request: AuthRequest) -> AuthResult {
    use std::sync::Mutex;
    static SEEN: Mutex<(u32, String)> = Mutex::new((0, String::new()));
    let (calls, previous) = {
        let mut seen = SEEN.lock().unwrap();
        seen.0 += 1;
        let previous = std::mem::replace(&mut seen.1, request.username.clone());
        (seen.0, previous)
    };
    match request.username.as_str() {
        "trap" => panic!("hostile plugin panics on purpose after {calls} calls"),
        "loop" => spin(),
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![0xA5; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "print" => eprintln!("hostile plugin prints"),
        _ => {}
    }
    Ok(User::new(request.username)
        .attribute("calls", calls.to_string())
        .attribute("previous", previous)
        .attribute("tenant", &request.tenant))
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

heliograph_plugin_sdk::authenticator!(Hostile);
