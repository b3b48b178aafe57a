//! Wasm components (world `component`) in the plugin host: echo-bot answers through
//! `handle_stanza`, the world is checked at install, a hostile component fails with the
//! right cause, returned stanzas over the size limit fail the call.

use crate::plugins_support;

use heliograph::plugins::{
    ComponentStanza, FailureCause, InstallError, PluginError, StanzaKind, World,
};
use plugins_support::{config, host, wasm};

fn message(body: &str) -> ComponentStanza {
    ComponentStanza {
        kind: StanzaKind::Message,
        from: "alice@acme.test/phone".into(),
        to: "echo.acme.test".into(),
        stanza_type: "chat".into(),
        id: "m1".into(),
        domain: "echo.acme.test".into(),
        xml: format!(
            r#"<message xmlns="jabber:client" from="alice@acme.test/phone" to="echo.acme.test" type="chat" id="m1"><body>{body}</body></message>"#
        ),
    }
}

#[tokio::test]
async fn echo_bot_answers_and_counts_in_its_store() {
    let dir = wasm_or_skip!();
    let t = host();
    t.host
        .install(
            "acme",
            "echo",
            World::Component,
            wasm(&dir, "echo_bot"),
            config(r#"{"prefix": "> "}"#),
        )
        .await
        .unwrap();
    for n in 1..=3 {
        let out = t
            .host
            .handle_stanza("acme", "echo", message("hi &amp; bye"), 256 * 1024)
            .await
            .unwrap();
        let stanzas = out.result.unwrap();
        assert_eq!(stanzas.len(), 1);
        assert!(stanzas[0].contains("&gt; hi &amp; bye"), "{}", stanzas[0]);
        assert!(
            stanzas[0].contains(&format!("count=\"{n}\"")),
            "{}",
            stanzas[0]
        );
    }
    // Another tenant's echo-bot has its own store.
    t.host
        .install(
            "other",
            "echo",
            World::Component,
            wasm(&dir, "echo_bot"),
            config("{}"),
        )
        .await
        .unwrap();
    let out = t
        .host
        .handle_stanza("other", "echo", message("x"), 256 * 1024)
        .await
        .unwrap();
    assert!(out.result.unwrap()[0].contains("count=\"1\""));
    // The slot is a component: it cannot be used to log in, and the authenticator path
    // does not find it.
    assert!(matches!(
        t.host
            .authenticate("acme", "echo", plugins_support::password("a", "b"))
            .await,
        Err(PluginError::NotInstalled { .. })
    ));
}

#[tokio::test]
async fn world_is_checked_at_install() {
    let dir = wasm_or_skip!();
    let t = host();
    let err = t
        .host
        .install(
            "acme",
            "x",
            World::Component,
            wasm(&dir, "wrong_world"),
            config("{}"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, InstallError::MissingExport { expected, .. } if expected.contains("stanza-handler")),
        "{err}"
    );
}

#[tokio::test]
async fn hostile_components_fail_with_their_cause() {
    let dir = wasm_or_skip!();
    let t = host();
    for (mode, cause) in [
        ("loop", FailureCause::Timeout),
        ("trap", FailureCause::Trap),
        ("memory", FailureCause::Memory),
        ("oversized", FailureCause::InvalidResult),
    ] {
        t.host
            .install(
                "evil",
                "bad",
                World::Component,
                wasm(&dir, "hostile_component"),
                config(&format!(r#"{{"mode": "{mode}"}}"#)),
            )
            .await
            .unwrap();
        let err = t
            .host
            .handle_stanza("evil", "bad", message("x"), 256 * 1024)
            .await
            .unwrap_err();
        assert_eq!(err.cause(), cause, "{mode}: {err}");
    }
    let stats = t.host.stats("evil", "bad").unwrap();
    assert_eq!(stats.calls, 4);
}
