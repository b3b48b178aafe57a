//! `heliograph plugin test` and `heliograph plugin new`, run as a plugin author runs them:
//! the binary, no server. A script of calls gives the same decisions for the Rust
//! plugins and their Python and JavaScript twins, with the plugin's log lines and the
//! time per call; an `expect` that does not hold makes the command fail.

use std::path::Path;
use std::process::{Command, Output};

use crate::plugins_support::{self, hash_password};

fn plugin_test(wasm: &Path, script: &str, extra: &[&str]) -> (Output, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.toml");
    std::fs::write(&path, script).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_heliograph"))
        .args(["plugin", "test"])
        .arg(wasm)
        .arg("--script")
        .arg(&path)
        // The compiled code the host tests share: a Python component compiles once.
        .arg("--cache-dir")
        .arg(plugins_support::shared_cache_dir())
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

fn assert_success(out: &Output, text: &str) {
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn login_script() -> String {
    format!(
        r#"
[config]
users = {{ alice = "{}" }}
roles = {{ alice = "moderator" }}
policy = "v7"

[kv]
"token/t-1" = "alice"

[[call]]
login = "alice"
password = "wonderland"
expect = "ok"

[[call]]
login = "alice"
password = "nope"
expect = "denied"

[[call]]
login = "alice"
password = "wonderland"
tls = false
expect = "denied"

[[call]]
login = "alice"
token = "t-1"
transport = "websocket"
expect = "ok"
"#,
        hash_password("s", "wonderland")
    )
}

fn check_login_output(text: &str) {
    for line in [
        "authenticator plugin",
        "call 1: login alice (password, tcp, tls)",
        "-> ok: user alice, roles moderator, policy=v7",
        "call 2: login alice (password, tcp, tls)",
        "-> denied: not-authorized",
        "call 3: login alice (password, tcp, no tls)",
        "call 4: login alice (token, websocket, tls)",
        "4 calls: 2 ok, 2 denied, 0 failed",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    // The time of each call, on its decision line.
    let timed = text
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("->") && (l.ends_with(" us)") || l.ends_with(" ms)"))
        })
        .count();
    assert_eq!(timed, 4, "{text}");
}

#[test]
fn plugin_test_runs_logins_through_the_rust_python_and_js_allowlists() {
    let Some(dir) = plugins_support::wasm_dir() else {
        return;
    };
    let (out, text) = plugin_test(&dir.join("allowlist.wasm"), &login_script(), &[]);
    assert_success(&out, &text);
    check_login_output(&text);
    // The plugin's own log lines are printed under the call that wrote them.
    assert!(text.contains("log "), "{text}");

    if let Some(py) = plugins_support::python_wasm_dir() {
        let (out, text) = plugin_test(&py.join("allowlist_py.wasm"), &login_script(), &[]);
        assert_success(&out, &text);
        check_login_output(&text);
    }
    if let Some(js) = plugins_support::js_wasm_dir() {
        let (out, text) = plugin_test(&js.join("allowlist_js.wasm"), &login_script(), &[]);
        assert_success(&out, &text);
        check_login_output(&text);
    }
}

#[test]
fn a_wrong_expectation_fails_the_run_and_says_which() {
    let Some(dir) = plugins_support::wasm_dir() else {
        return;
    };
    let script = login_script().replacen(r#"expect = "denied""#, r#"expect = "ok""#, 1);
    let (out, text) = plugin_test(&dir.join("allowlist.wasm"), &script, &[]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("!! expected ok, got denied"), "{text}");
    // --plugin-config replaces the script's configuration: nobody is known.
    let (out, text) = plugin_test(
        &dir.join("allowlist.wasm"),
        &login_script(),
        &["--plugin-config", r#"{"users": {}}"#],
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    // A world mismatch is refused before any call.
    let (out, _) = plugin_test(&dir.join("meeting_policy.wasm"), &login_script(), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("login needs a plugin of the authenticator world"),
        "{err}"
    );
}

const ROOMS: &str = r#"
[config]
room_patterns = ["team-*"]
moderator_if = "role=host"
max_message_bytes = 40
redact_words = ["secret"]

[[call]]
create = "team-a"
user = "ann@example.com/laptop"
expect = "ok"

[[call]]
create = "lobby"
expect = "denied"

[[call]]
join = "team-a"
user = "bob@example.com/phone"
roles = ["host"]
occupants = 1
expect = "ok"

[[call]]
message = "team-a"
body = "the secret plan"
expect = "ok"
"#;

#[test]
fn plugin_test_asks_the_rust_python_and_js_meeting_policies() {
    let Some(dir) = plugins_support::wasm_dir() else {
        return;
    };
    let mut plugins = vec![dir.join("meeting_policy.wasm")];
    if let Some(py) = plugins_support::python_wasm_dir() {
        plugins.push(py.join("meeting_policy_py.wasm"));
    }
    if let Some(js) = plugins_support::js_wasm_dir() {
        plugins.push(js.join("meeting_policy_js.wasm"));
    }
    for plugin in plugins {
        let (out, text) = plugin_test(&plugin, ROOMS, &[]);
        assert_success(&out, &text);
        for line in [
            "room-policy plugin",
            "call 1: create team-a@conference.example.com by ann@example.com/laptop",
            "-> allow",
            "call 2: create lobby@conference.example.com",
            "-> deny: ",
            "call 3: join team-a@conference.example.com as bob@example.com/phone (1 in the room)",
            "-> allow: role moderator",
            "-> allow with body \"the ****** plan\"",
        ] {
            assert!(
                text.contains(line),
                "{}: {line:?} in\n{text}",
                plugin.display()
            );
        }
    }
}

#[test]
fn plugin_test_sends_a_stanza_to_a_component() {
    let Some(dir) = plugins_support::wasm_dir() else {
        return;
    };
    let script = r#"
[[call]]
stanza = "<message to='echo.example.com' type='chat'><body>hi</body></message>"
from = "alice@example.com/phone"
expect = "ok"
"#;
    let (out, text) = plugin_test(&dir.join("echo_bot.wasm"), script, &[]);
    assert_success(&out, &text);
    assert!(text.contains("component plugin"), "{text}");
    assert!(
        text.contains("call 1: <message/> from alice@example.com/phone to echo.example.com"),
        "{text}"
    );
    assert!(text.contains("1 stanza(s):"), "{text}");
    assert!(text.contains("hi"), "{text}");
    // What the plugin left in its key-value store is shown at the end.
    assert!(text.contains("key-value data after the calls:"), "{text}");
}

#[test]
fn plugin_new_writes_a_project_and_never_overwrites_one() {
    let dir = tempfile::tempdir().unwrap();
    let new = |lang: &str| {
        Command::new(env!("CARGO_BIN_EXE_heliograph"))
            .args([
                "plugin",
                "new",
                "door",
                "--world",
                "room-policy",
                "--lang",
                lang,
            ])
            .arg("--dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = new("rust");
    assert!(out.status.success(), "{out:?}");
    let root = dir.path().join("door");
    for file in ["Cargo.toml", "src/lib.rs", "README.md", "calls.toml"] {
        assert!(root.join(file).is_file(), "{file}");
    }
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    assert!(lib.contains("impl RoomPolicy for Door"), "{lib}");
    for function in [
        "fn create_room",
        "fn join",
        "fn message",
        "fn configure",
        "fn change_nick",
    ] {
        assert!(lib.contains(function), "{function}");
    }
    let again = new("python");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert!(
        !root.join("app.py").exists(),
        "nothing written over the project"
    );
}
