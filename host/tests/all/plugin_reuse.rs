//! Instance reuse (`plugins.reuse`, `plugins.reuse_for`): an instance serves only its own
//! (tenant, slot, version), at most N calls, never after a failed call or a hot swap; small
//! (compiled) components keep a fresh instance per call by default, interpreters reuse.
//! The hostile plugin's `memo` mode reports what its instance remembers (`calls`,
//! `previous`), which is exactly what reuse could leak.

use crate::plugins_support;

use std::collections::BTreeMap;

use heliograph::plugins::{
    AuthUser, FailureCause, PluginError, PluginHost, PluginSettings, ReusePolicy, World,
};
use plugins_support::{config, hash_password, host_with, password, wasm};

const MEMO: &str = r#"{"mode": "memo"}"#;

fn reuse_for(plugins: &[(&str, ReusePolicy)]) -> PluginSettings {
    PluginSettings {
        reuse_for: plugins
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<BTreeMap<_, _>>(),
        ..plugins_support::settings()
    }
}

async fn login(host: &PluginHost, tenant: &str, user: &str) -> AuthUser {
    host.authenticate(tenant, "auth", password(user, "x"))
        .await
        .unwrap()
        .result
        .unwrap()
}

fn attr<'a>(user: &'a AuthUser, key: &str) -> &'a str {
    user.attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no attribute {key} in {user:?}"))
}

/// (calls, previous) as the instance saw them.
async fn memo(host: &PluginHost, tenant: &str, user: &str) -> (u32, String) {
    let u = login(host, tenant, user).await;
    assert_eq!(attr(&u, "tenant"), tenant);
    (
        attr(&u, "calls").parse().unwrap(),
        attr(&u, "previous").into(),
    )
}

#[tokio::test]
async fn an_instance_serves_only_its_tenant_and_version_and_at_most_n_calls() {
    let dir = wasm_or_skip!();
    let t = host_with(reuse_for(&[
        ("acme/auth", ReusePolicy::Calls(4)),
        ("globex/auth", ReusePolicy::Calls(4)),
    ]));
    let plugin = wasm(&dir, "hostile");
    for tenant in ["acme", "globex"] {
        t.host
            .install(
                tenant,
                "auth",
                World::Authenticator,
                plugin.clone(),
                config(MEMO),
            )
            .await
            .unwrap();
    }
    assert_eq!(memo(&t.host, "acme", "a1").await, (1, "".into()));
    assert_eq!(memo(&t.host, "acme", "a2").await, (2, "a1".into()));
    // The other tenant, same component: its own instance, nothing of acme's.
    assert_eq!(memo(&t.host, "globex", "g1").await, (1, "".into()));
    assert_eq!(memo(&t.host, "acme", "a3").await, (3, "a2".into()));
    assert_eq!(memo(&t.host, "acme", "a4").await, (4, "a3".into()));
    // calls:4 — the fifth call gets a fresh instance.
    assert_eq!(memo(&t.host, "acme", "a5").await, (1, "".into()));
    assert_eq!(memo(&t.host, "globex", "g2").await, (2, "g1".into()));
    let stats = t.host.stats("acme", "auth").unwrap();
    assert_eq!((stats.calls, stats.reused_instance_calls), (5, 3));

    // A hot swap (same bytes, same configuration: a new version) starts afresh.
    assert_eq!(memo(&t.host, "acme", "a6").await, (2, "a5".into()));
    t.host
        .install(
            "acme",
            "auth",
            World::Authenticator,
            plugin.clone(),
            config(MEMO),
        )
        .await
        .unwrap();
    assert_eq!(memo(&t.host, "acme", "b1").await, (1, "".into()));
    assert_eq!(memo(&t.host, "acme", "b2").await, (2, "b1".into()));
    // So does a rollback, and the version rolled back to has no instance kept either.
    t.host.rollback("acme", "auth", Some(1)).await.unwrap();
    assert_eq!(memo(&t.host, "acme", "c1").await, (1, "".into()));
    // A slot removed and installed again (its versions start at 1 again) too.
    t.host.remove("acme", "auth").await.unwrap();
    t.host
        .install("acme", "auth", World::Authenticator, plugin, config(MEMO))
        .await
        .unwrap();
    assert_eq!(memo(&t.host, "acme", "d1").await, (1, "".into()));
    // globex was never disturbed.
    assert_eq!(memo(&t.host, "globex", "g3").await, (3, "g2".into()));
}

#[tokio::test]
async fn a_trap_deadline_memory_cap_or_output_discards_the_instance() {
    let dir = wasm_or_skip!();
    let t = host_with(reuse_for(&[("acme/auth", ReusePolicy::Calls(100))]));
    t.host
        .install(
            "acme",
            "auth",
            World::Authenticator,
            wasm(&dir, "hostile"),
            config(MEMO),
        )
        .await
        .unwrap();
    for (bad, cause) in [
        ("trap", Some(FailureCause::Trap)),
        ("loop", Some(FailureCause::Timeout)),
        ("memory", Some(FailureCause::Memory)),
        ("print", None),
    ] {
        assert_eq!(
            memo(&t.host, "acme", "warm1").await,
            (1, "".into()),
            "{bad}"
        );
        assert_eq!(memo(&t.host, "acme", "warm2").await.0, 2, "{bad}");
        let out = t
            .host
            .authenticate("acme", "auth", password(bad, "x"))
            .await;
        match cause {
            Some(cause) => assert!(
                matches!(&out, Err(PluginError::Failed { cause: c, .. }) if *c == cause),
                "{bad}: {out:?}"
            ),
            None => assert!(out.unwrap().result.is_ok(), "{bad}"),
        }
        // The next call never sees the instance that failed (or printed).
        assert_eq!(
            memo(&t.host, "acme", "after").await,
            (1, "".into()),
            "after {bad}"
        );
        // Start the next round on a fresh instance too.
        t.host
            .install(
                "acme",
                "auth",
                World::Authenticator,
                wasm(&dir, "hostile"),
                config(MEMO),
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn small_components_get_a_fresh_instance_per_call_by_default() {
    let dir = wasm_or_skip!();
    let t = host_with(plugins_support::settings());
    t.host
        .install(
            "acme",
            "auth",
            World::Authenticator,
            wasm(&dir, "hostile"),
            config(MEMO),
        )
        .await
        .unwrap();
    for user in ["a", "b", "c"] {
        assert_eq!(memo(&t.host, "acme", user).await, (1, "".into()));
    }
    assert_eq!(t.host.idle_instances(), 0);
    assert_eq!(
        t.host.stats("acme", "auth").unwrap().reused_instance_calls,
        0
    );
}

#[tokio::test]
async fn the_idle_set_is_bounded_least_recently_used_first() {
    let dir = wasm_or_skip!();
    let t = host_with(PluginSettings {
        reuse: ReusePolicy::Calls(100),
        max_idle_instances: 1,
        ..plugins_support::settings()
    });
    for tenant in ["acme", "globex"] {
        t.host
            .install(
                tenant,
                "auth",
                World::Authenticator,
                wasm(&dir, "hostile"),
                config(MEMO),
            )
            .await
            .unwrap();
    }
    assert_eq!(memo(&t.host, "acme", "a1").await.0, 1);
    assert_eq!(memo(&t.host, "acme", "a2").await.0, 2);
    // globex's instance takes the only idle place; acme's next call is fresh.
    assert_eq!(memo(&t.host, "globex", "g1").await.0, 1);
    assert_eq!(memo(&t.host, "acme", "a3").await.0, 1);
    assert_eq!(t.host.idle_instances(), 1);
}

/// The Python allowlist reuses its instances by default (a component of 18 MiB), and
/// still answers exactly as with fresh ones; `never` turns reuse off for it.
#[tokio::test]
async fn python_plugins_reuse_instances_by_default() {
    let dir = python_or_skip!();
    interpreters_reuse(wasm(&dir, "allowlist_py")).await;
}

/// So does the JavaScript allowlist (12 MiB).
#[tokio::test]
async fn js_plugins_reuse_instances_by_default() {
    let dir = js_or_skip!();
    interpreters_reuse(wasm(&dir, "allowlist_js")).await;
}

async fn interpreters_reuse(plugin: Vec<u8>) {
    let cfg = format!(
        r#"{{"users": {{"alice": {:?}}}}}"#,
        hash_password("s", "wonderland")
    );
    for (settings, reused) in [
        (plugins_support::settings(), 4),
        (reuse_for(&[("acme/auth", ReusePolicy::Never)]), 0),
    ] {
        let t = host_with(settings);
        t.host
            .install(
                "acme",
                "auth",
                World::Authenticator,
                plugin.clone(),
                config(&cfg),
            )
            .await
            .unwrap();
        for i in 0..5 {
            let pw = if i % 2 == 0 { "wonderland" } else { "nope" };
            let out = t
                .host
                .authenticate("acme", "auth", password("alice", pw))
                .await
                .unwrap();
            assert_eq!(out.result.is_ok(), i % 2 == 0, "call {i}");
        }
        let stats = t.host.stats("acme", "auth").unwrap();
        assert_eq!((stats.calls, stats.reused_instance_calls), (5, reused));
    }
}
