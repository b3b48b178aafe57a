//! The plugin host against real components built from `plugins/`: authentication through
//! the allowlist plugin, config and key-value behaviour, containment of hostile plugins,
//! hot swap under load, refused uploads, restart from the compiled cache, rollback.

use crate::plugins_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use heliograph::plugins::{
    AuthDenied, FailureCause, InstallError, PluginError, PluginHost, PluginSettings, World,
};
use heliograph::storage::Storage;
use plugins_support::{config, hash_password, host, password, token, wasm};

/// The WIT package version the host serves (read from `wit/` at build time).
const WIT: &str = heliograph::plugins::WIT_VERSION;

fn allowlist_config(policy: &str, users: &[(&str, &str)]) -> String {
    let users: Vec<String> = users
        .iter()
        .map(|(name, pw)| format!("{name:?}: {:?}", hash_password(name, pw)))
        .collect();
    format!(
        r#"{{"users": {{{}}}, "policy": {policy:?}, "disabled": ["carol"],
            "roles": {{"alice": "moderator,member"}}, "display_names": {{"alice": "Alice"}}}}"#,
        users.join(", ")
    )
}

#[tokio::test]
async fn authenticates_through_the_allowlist_plugin() {
    let dir = wasm_or_skip!();
    authenticates_through(wasm(&dir, "allowlist")).await;
}

/// The Python twin of the allowlist (`plugins/python/allowlist`) passes the same test.
#[tokio::test]
async fn authenticates_through_the_python_allowlist_plugin() {
    let dir = python_or_skip!();
    authenticates_through(wasm(&dir, "allowlist_py")).await;
}

/// So does its JavaScript twin (`plugins/js/allowlist`, componentize-js).
#[tokio::test]
async fn authenticates_through_the_js_allowlist_plugin() {
    let dir = js_or_skip!();
    authenticates_through(wasm(&dir, "allowlist_js")).await;
}

async fn authenticates_through(plugin: Vec<u8>) {
    let t = host();
    let cfg = allowlist_config("v1", &[("alice", "wonderland"), ("carol", "pw")]);
    let info = t
        .host
        .install("acme", "auth", World::Authenticator, plugin, config(&cfg))
        .await
        .unwrap();
    assert_eq!((info.version, info.active), (1, true));

    let out = t
        .host
        .authenticate("acme", "auth", password("Alice", "wonderland"))
        .await
        .unwrap();
    assert_eq!(out.version, 1);
    let user = out.result.unwrap();
    assert_eq!(user.username, "alice");
    assert_eq!(user.display_name.as_deref(), Some("Alice"));
    assert_eq!(user.roles, vec!["moderator", "member"]);
    assert_eq!(
        user.attributes,
        vec![("policy".to_string(), "v1".to_string())]
    );

    let wrong = t
        .host
        .authenticate("acme", "auth", password("alice", "nope"))
        .await
        .unwrap();
    assert_eq!(wrong.result, Err(AuthDenied::NotAuthorized));
    let disabled = t
        .host
        .authenticate("acme", "auth", password("carol", "pw"))
        .await
        .unwrap();
    assert_eq!(disabled.result, Err(AuthDenied::AccountDisabled));
    let mut plain = password("alice", "wonderland");
    plain.tls = false;
    let plain = t.host.authenticate("acme", "auth", plain).await.unwrap();
    assert_eq!(
        plain.result,
        Err(AuthDenied::NotAuthorized),
        "require_tls defaults to true"
    );

    let err = t
        .host
        .authenticate("acme", "other", password("alice", "wonderland"))
        .await;
    assert!(
        matches!(err, Err(PluginError::NotInstalled { .. })),
        "{err:?}"
    );

    let stats = t.host.stats("acme", "auth").unwrap();
    assert_eq!((stats.calls, stats.succeeded, stats.denied), (4, 1, 3));
    assert!(stats.failed.is_empty());
    assert!(
        stats.p50_us > 0.0 && stats.p99_us >= stats.p50_us,
        "{stats:?}"
    );
}

#[tokio::test]
async fn configuration_drives_behaviour_per_tenant() {
    let dir = wasm_or_skip!();
    configuration_drives_behaviour(wasm(&dir, "allowlist")).await;
}

#[tokio::test]
async fn configuration_drives_the_python_plugin_per_tenant() {
    let dir = python_or_skip!();
    configuration_drives_behaviour(wasm(&dir, "allowlist_py")).await;
}

#[tokio::test]
async fn configuration_drives_the_js_plugin_per_tenant() {
    let dir = js_or_skip!();
    configuration_drives_behaviour(wasm(&dir, "allowlist_js")).await;
}

async fn configuration_drives_behaviour(wasm: Vec<u8>) {
    let t = host();
    let users = [("alice", "a"), ("bob", "b")];
    let strict = format!(
        r#"{{"users": {{"alice": {:?}, "bob": {:?}}}, "allow": ["bob"]}}"#,
        hash_password("s", "a"),
        hash_password("s", "b")
    );
    let relaxed = format!(
        r#"{{"users": {{"alice": {:?}, "bob": {:?}}}, "require_tls": false}}"#,
        hash_password("s", users[0].1),
        hash_password("s", users[1].1)
    );
    t.host
        .install(
            "strict",
            "auth",
            World::Authenticator,
            wasm.clone(),
            config(&strict),
        )
        .await
        .unwrap();
    t.host
        .install(
            "relaxed",
            "auth",
            World::Authenticator,
            wasm,
            config(&relaxed),
        )
        .await
        .unwrap();

    // Same Wasm, different configuration: the allow-list only holds for "strict".
    let a = t
        .host
        .authenticate("strict", "auth", password("alice", "a"))
        .await
        .unwrap();
    assert_eq!(a.result, Err(AuthDenied::NotAuthorized));
    let b = t
        .host
        .authenticate("strict", "auth", password("bob", "b"))
        .await
        .unwrap();
    assert!(b.result.is_ok());
    let mut plain = password("alice", "a");
    plain.tls = false;
    let a2 = t
        .host
        .authenticate("relaxed", "auth", plain.clone())
        .await
        .unwrap();
    assert!(
        a2.result.is_ok(),
        "relaxed tenant accepts without TLS: {a2:?}"
    );
    let strict_plain = t
        .host
        .authenticate("strict", "auth", {
            let mut p = password("bob", "b");
            p.tls = false;
            p
        })
        .await
        .unwrap();
    assert_eq!(strict_plain.result, Err(AuthDenied::NotAuthorized));
}

#[tokio::test]
async fn key_value_data_belongs_to_its_tenant_and_slot() {
    let dir = wasm_or_skip!();
    key_value_data_is_scoped(wasm(&dir, "allowlist")).await;
}

#[tokio::test]
async fn python_key_value_data_belongs_to_its_tenant_and_slot() {
    let dir = python_or_skip!();
    key_value_data_is_scoped(wasm(&dir, "allowlist_py")).await;
}

#[tokio::test]
async fn js_key_value_data_belongs_to_its_tenant_and_slot() {
    let dir = js_or_skip!();
    key_value_data_is_scoped(wasm(&dir, "allowlist_js")).await;
}

async fn key_value_data_is_scoped(wasm: Vec<u8>) {
    let t = host();
    let seeded = format!(
        r#"{{"seed_kv": {{"dave": {:?}}}}}"#,
        hash_password("q", "dpw")
    );
    t.host
        .install(
            "acme",
            "auth",
            World::Authenticator,
            wasm.clone(),
            config(&seeded),
        )
        .await
        .unwrap();
    t.host
        .install(
            "acme",
            "auth2",
            World::Authenticator,
            wasm.clone(),
            config("{}"),
        )
        .await
        .unwrap();
    t.host
        .install("globex", "auth", World::Authenticator, wasm, config("{}"))
        .await
        .unwrap();

    // init wrote into (acme, auth) only.
    assert!(
        t.store
            .kv_get("acme", "auth", "user/dave")
            .unwrap()
            .is_some()
    );
    assert!(
        t.store
            .kv_get("acme", "auth2", "user/dave")
            .unwrap()
            .is_none()
    );
    assert!(
        t.store
            .kv_get("globex", "auth", "user/dave")
            .unwrap()
            .is_none()
    );
    let ok = t
        .host
        .authenticate("acme", "auth", password("dave", "dpw"))
        .await
        .unwrap();
    assert!(ok.result.is_ok());
    for (tenant, slot) in [("acme", "auth2"), ("globex", "auth")] {
        let other = t
            .host
            .authenticate(tenant, slot, password("dave", "dpw"))
            .await
            .unwrap();
        assert_eq!(
            other.result,
            Err(AuthDenied::NotAuthorized),
            "{tenant}/{slot} saw acme's data"
        );
    }

    // A token stored for one pair works there only.
    t.store
        .kv_set("globex", "auth", "token/t-1", b"erin", 1 << 20)
        .unwrap();
    assert!(
        t.host
            .authenticate("globex", "auth", token("erin", "t-1"))
            .await
            .unwrap()
            .result
            .is_ok()
    );
    for (tenant, slot) in [("acme", "auth"), ("acme", "auth2")] {
        let other = t
            .host
            .authenticate(tenant, slot, token("erin", "t-1"))
            .await
            .unwrap();
        assert_eq!(other.result, Err(AuthDenied::NotAuthorized));
    }
}

/// Installs the hostile plugin for `tenant` with `mode`.
async fn hostile(host: &PluginHost, dir: &std::path::Path, tenant: &str, mode: &str) {
    let cfg = format!(r#"{{"mode": {mode:?}}}"#);
    host.install(
        tenant,
        "auth",
        World::Authenticator,
        wasm(dir, "hostile"),
        config(&cfg),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_plugins_fail_closed_and_only_for_their_tenant() {
    let dir = wasm_or_skip!();
    // A deadline with headroom for unoptimized test builds on a loaded machine, so the
    // well-behaved tenant never times out; the loop must still be cut at this deadline.
    let deadline = 200;
    let t = plugins_support::host_with(PluginSettings {
        auth_deadline_ms: deadline,
        ..plugins_support::settings()
    });
    let good = allowlist_config("v1", &[("alice", "wonderland")]);
    t.host
        .install(
            "good",
            "auth",
            World::Authenticator,
            wasm(&dir, "allowlist"),
            config(&good),
        )
        .await
        .unwrap();
    let cases = [
        ("loop", FailureCause::Timeout, ""),
        ("memory", FailureCause::Memory, ""),
        ("trap", FailureCause::Trap, "panics on purpose"),
        ("stack", FailureCause::Trap, "stack"),
        ("oversized", FailureCause::InvalidResult, "display name"),
        ("invalid", FailureCause::InvalidResult, "localpart"),
    ];
    for (mode, cause, detail) in cases {
        let tenant = format!("evil-{mode}");
        hostile(&t.host, &dir, &tenant, mode).await;
        let start = Instant::now();
        let err = t
            .host
            .authenticate(&tenant, "auth", password("x", "y"))
            .await
            .unwrap_err();
        let elapsed = start.elapsed();
        assert_eq!(err.cause(), cause, "{mode}: {err}");
        assert!(err.to_string().contains(detail), "{mode}: {err}");
        // Cut at the deadline (CPU time) or its 10x wall-clock backstop; the bound on wall
        // time is generous because a loaded machine may not run the call for a while.
        assert!(elapsed < Duration::from_secs(20), "{mode} took {elapsed:?}");
        if mode == "loop" {
            assert!(
                elapsed >= Duration::from_millis(deadline),
                "cut before the deadline: {elapsed:?}"
            );
        }
        // The other tenant is unaffected, right after.
        let ok = t
            .host
            .authenticate("good", "auth", password("alice", "wonderland"))
            .await
            .unwrap();
        assert!(ok.result.is_ok(), "after {mode}: {ok:?}");
        let stats = t.host.stats(&tenant, "auth").unwrap();
        assert_eq!(
            stats.failed.get(cause.as_str()),
            Some(&1),
            "{mode}: {stats:?}"
        );
    }

    // Key-value flooding stops at the per-call budget and leaves the store bounded.
    hostile(&t.host, &dir, "evil-kv", "kv-flood").await;
    let out = t
        .host
        .authenticate("evil-kv", "auth", password("x", "y"))
        .await
        .unwrap();
    match out.result {
        Err(AuthDenied::TemporaryFailure(reason)) => {
            assert!(reason.contains("budget"), "{reason}")
        }
        other => panic!("kv-flood: {other:?}"),
    }
    assert!(t.store.kv_usage("evil-kv", "auth").unwrap() <= 256 * 1024);
    // Log flooding is cut off, the call itself succeeds.
    hostile(&t.host, &dir, "evil-log", "log-flood").await;
    let out = t
        .host
        .authenticate("evil-log", "auth", password("x", "y"))
        .await
        .unwrap();
    assert!(out.result.is_ok());

    // A hostile plugin does not leave the good one short of instances or memory.
    for _ in 0..20 {
        let _ = t
            .host
            .authenticate("evil-memory", "auth", password("x", "y"))
            .await;
    }
    let ok = t
        .host
        .authenticate("good", "auth", password("alice", "wonderland"))
        .await
        .unwrap();
    assert!(ok.result.is_ok());
}

/// Issue 22, item 4: one tenant's plugin does not starve the others. A tenant whose
/// authenticator loops until its deadline floods the host with logins (many more than the
/// host runs at once); another tenant's logins still go through promptly, because a
/// tenant holds at most half of the permits and waiting calls are served tenant by tenant.
/// Before, all calls queued in one FIFO: the good tenant's logins waited behind the whole
/// flood (p50 from 1 ms to seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_does_not_starve_another_tenants_plugin() {
    let dir = wasm_or_skip!();
    let t = plugins_support::host_with(PluginSettings {
        auth_deadline_ms: 200,
        ..plugins_support::settings()
    });
    let host = Arc::new(t.host);
    let good = allowlist_config("v1", &[("alice", "wonderland")]);
    host.install(
        "good",
        "auth",
        World::Authenticator,
        wasm(&dir, "allowlist"),
        config(&good),
    )
    .await
    .unwrap();
    hostile(&host, &dir, "evil", "loop").await;
    // 48 callers keep evil's queue full: in one FIFO a login would wait behind
    // 48 x 200 ms / (permits) of loops.
    let stop = Arc::new(AtomicBool::new(false));
    let mut flood = Vec::new();
    for _ in 0..48 {
        let (host, stop) = (host.clone(), stop.clone());
        flood.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = host.authenticate("evil", "auth", password("x", "y")).await;
            }
        }));
    }
    // Let the flood fill the queue.
    let deadline = Instant::now() + Duration::from_secs(10);
    while host
        .stats("evil", "auth")
        .unwrap()
        .failed
        .get("timeout")
        .copied()
        .unwrap_or(0)
        < 2
    {
        assert!(Instant::now() < deadline, "the flood did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut took = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        let ok = tokio::time::timeout(
            Duration::from_secs(30),
            host.authenticate("good", "auth", password("alice", "wonderland")),
        )
        .await
        .expect("the good tenant's login completed")
        .unwrap();
        took.push(start.elapsed());
        assert!(ok.result.is_ok(), "{ok:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.abort();
    }
    took.sort();
    eprintln!("the good tenant's logins under the flood: {took:?}");
    // Loose: an unoptimized build on a loaded machine; the FIFO took seconds.
    assert!(
        took[took.len() / 2] < Duration::from_millis(1500),
        "the good tenant's logins took {took:?}"
    );
}

#[tokio::test]
async fn default_deadline_cuts_an_infinite_loop_at_50_ms() {
    let dir = wasm_or_skip!();
    let t = host();
    hostile(&t.host, &dir, "evil", "loop").await;
    let start = Instant::now();
    let err = t
        .host
        .authenticate("evil", "auth", password("x", "y"))
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err.cause(), FailureCause::Timeout, "{err}");
    // The default is 50 ms (of CPU time, with a 10x wall-clock backstop): checked exactly
    // here, and the loop was not cut before it. The wall-clock bound only says "cut", with
    // room for a loaded machine.
    assert_eq!(PluginSettings::default().auth_deadline_ms, 50);
    assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_concurrent_calls() {
    let dir = wasm_or_skip!();
    // Deadlines are not under test here: 8 callers share 2 cores with the other tests.
    let t = plugins_support::host_with(PluginSettings {
        auth_deadline_ms: 2000,
        ..plugins_support::settings()
    });
    let wasm = wasm(&dir, "allowlist");
    // carol may log in under both versions, dave only under v2, alice only under v1.
    let v1 = allowlist_config(
        "v1",
        &[("alice", "a"), ("dave", "wrong-in-v1"), ("erin", "c")],
    );
    let v2 = allowlist_config("v2", &[("dave", "d"), ("erin", "c")]);
    t.host
        .install(
            "acme",
            "auth",
            World::Authenticator,
            wasm.clone(),
            config(&v1),
        )
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    // Calls completed so far, by all callers.
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let host = t.host.clone();
        let stop = stop.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let user = if i % 2 == 0 { "erin" } else { "dave" };
                let pw = if user == "erin" { "c" } else { "d" };
                let started = Instant::now();
                let out = host.authenticate("acme", "auth", password(user, pw)).await;
                seen.push((started, user, out));
                done.fetch_add(1, Ordering::SeqCst);
            }
            seen
        }));
    }
    // Waits (generously) until `done` reaches `n`, instead of a fixed time.
    let wait_done = |n: usize| {
        let done = done.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while done.load(Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "only {done:?} calls in 60 s");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_done(9).await;
    let info = t
        .host
        .install("acme", "auth", World::Authenticator, wasm, config(&v2))
        .await
        .unwrap();
    let swapped = Instant::now();
    assert_eq!(info.version, 2);
    // At most 8 calls (one per caller) were in flight at the swap: 17 more completed ones
    // include at least 9 started after it.
    wait_done(done.load(Ordering::SeqCst) + 8 + 9).await;
    stop.store(true, Ordering::Relaxed);

    let (mut before, mut after) = (0, 0);
    for task in tasks {
        for (started, user, out) in task.await.unwrap() {
            let out = out.unwrap_or_else(|e| panic!("call failed during the swap: {e}"));
            if user == "erin" {
                assert!(out.result.is_ok(), "erin must never fail: {out:?}");
            }
            if started >= swapped {
                after += 1;
                assert_eq!(
                    out.version, 2,
                    "a call started after install returned ran v1"
                );
                assert!(out.result.is_ok(), "{user} after the swap: {out:?}");
            } else {
                before += 1;
                if out.version == 1 && user == "dave" {
                    assert_eq!(out.result, Err(AuthDenied::NotAuthorized));
                }
            }
        }
    }
    assert!(
        before > 8 && after > 8,
        "too few calls: {before} before, {after} after"
    );
    let v1_alice = t
        .host
        .authenticate("acme", "auth", password("alice", "a"))
        .await
        .unwrap();
    assert_eq!(
        v1_alice.result,
        Err(AuthDenied::NotAuthorized),
        "v2 policy holds"
    );
}

#[tokio::test]
async fn bad_uploads_are_refused_precisely_and_the_old_version_keeps_serving() {
    let dir = wasm_or_skip!();
    let t = host();
    let good = allowlist_config("v1", &[("alice", "wonderland")]);
    t.host
        .install(
            "acme",
            "auth",
            World::Authenticator,
            wasm(&dir, "allowlist"),
            config(&good),
        )
        .await
        .unwrap();
    let install = |bytes: Vec<u8>, cfg: &str| {
        let host = t.host.clone();
        let cfg = config(cfg);
        async move {
            host.install("acme", "auth", World::Authenticator, bytes, cfg)
                .await
        }
    };

    let e = install(b"hello, not wasm".to_vec(), "{}")
        .await
        .unwrap_err();
    assert!(matches!(e, InstallError::NotWasm), "{e}");
    let e = install(b"\0asm\x01\0\0\0".to_vec(), "{}")
        .await
        .unwrap_err();
    assert!(matches!(e, InstallError::CoreModule), "{e}");
    assert!(e.to_string().contains("wasm32-wasip2"), "{e}");
    let e = install(vec![0; 65 << 20], "{}").await.unwrap_err();
    assert!(matches!(e, InstallError::TooLarge { .. }), "{e}");

    let e = install(wasm(&dir, "wrong_version"), "{}")
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, InstallError::ExportVersion { .. }), "{msg}");
    assert!(
        msg.contains("heliograph:plugin/authentication@0.2.0"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("heliograph:plugin/authentication@{WIT}")),
        "{msg}"
    );

    let e = install(wasm(&dir, "wrong_world"), "{}").await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, InstallError::MissingExport { .. }), "{msg}");
    assert!(
        msg.contains(&format!(
            "does not export `heliograph:plugin/authentication@{WIT}`"
        )),
        "{msg}"
    );
    assert!(msg.contains("example:rooms/room-policy@0.1.0"), "{msg}");

    let e = install(wasm(&dir, "hostile"), r#"{"init": "refuse"}"#)
        .await
        .unwrap_err();
    assert!(
        matches!(e, InstallError::InitRefused(ref m) if m.contains("refused")),
        "{e}"
    );
    let e = install(wasm(&dir, "hostile"), r#"{"init": "trap"}"#)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            InstallError::InitFailed {
                cause: FailureCause::Trap,
                ..
            }
        ),
        "{e}"
    );
    let e = install(wasm(&dir, "hostile"), r#"{"init": "loop"}"#)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            InstallError::InitFailed {
                cause: FailureCause::Timeout,
                ..
            }
        ),
        "{e}"
    );
    let e = install(
        wasm(&dir, "allowlist"),
        r#"{"users": {"eve": "plaintext"}}"#,
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("users.eve: expected sha256$SALT$HEX"),
        "{e}"
    );

    // Nothing changed: v1 serves, and is the only version.
    let out = t
        .host
        .authenticate("acme", "auth", password("alice", "wonderland"))
        .await
        .unwrap();
    assert_eq!(out.version, 1);
    assert!(out.result.is_ok());
    let list = t.host.list(Some("acme"));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].versions.len(), 1);
    assert_eq!(t.store.slots().unwrap()[0].versions.len(), 1);
}

#[tokio::test]
async fn restart_restores_plugins_without_recompiling() {
    let dir = wasm_or_skip!();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let cache = tmp.path().join("cache");
    let good = allowlist_config("v1", &[("alice", "wonderland")]);
    {
        let storage = Storage::open_sled(&db).unwrap();
        let host =
            PluginHost::new(plugins_support::settings(), storage.plugins.clone(), &cache).unwrap();
        host.install(
            "acme",
            "auth",
            World::Authenticator,
            wasm(&dir, "allowlist"),
            config(&good),
        )
        .await
        .unwrap();
        host.install(
            "acme",
            "auth",
            World::Authenticator,
            wasm(&dir, "allowlist"),
            config("{}"),
        )
        .await
        .unwrap();
        host.install(
            "globex",
            "auth",
            World::Authenticator,
            wasm(&dir, "hostile"),
            config("{}"),
        )
        .await
        .unwrap();
        assert_eq!(
            host.cache_stats().compiled,
            2,
            "one compilation per distinct Wasm"
        );
        host.rollback("acme", "auth", Some(1)).await.unwrap();
    }
    let storage = Storage::open_sled(&db).unwrap();
    let host =
        PluginHost::new(plugins_support::settings(), storage.plugins.clone(), &cache).unwrap();
    let report = host.restore_from_storage().await.unwrap();
    assert_eq!((report.slots, report.versions), (2, 3), "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    let stats = host.cache_stats();
    assert_eq!(stats.compiled, 0, "a restart must not recompile: {stats:?}");
    assert_eq!(stats.hits, 3);
    let out = host
        .authenticate("acme", "auth", password("alice", "wonderland"))
        .await
        .unwrap();
    assert_eq!(out.version, 1, "the rolled-back version stays active");
    assert!(out.result.is_ok());
    assert!(
        host.authenticate("globex", "auth", password("x", "y"))
            .await
            .unwrap()
            .result
            .is_ok()
    );
}

/// Calls (tenant, slot) once, so the active version answers (or fails) and gets a health.
async fn serve_once(
    host: &PluginHost,
    tenant: &str,
) -> Result<heliograph::plugins::AuthOutcome, PluginError> {
    host.authenticate(tenant, "auth", password("alice", "wonderland"))
        .await
}

fn kept(host: &PluginHost) -> Vec<(u32, &'static str)> {
    host.list(Some("acme"))[0]
        .versions
        .iter()
        .map(|v| (v.version, v.health.as_str()))
        .collect()
}

#[tokio::test]
async fn rollback_goes_to_the_last_good_version_which_is_never_evicted() {
    let dir = wasm_or_skip!();
    let t = host();
    let good = |v: &str| config(&allowlist_config(v, &[("alice", "wonderland")]));
    let trap = || config(r#"{"mode": "trap"}"#);
    let install = |wasm_name: &'static str, cfg| {
        let host = t.host.clone();
        let bytes = wasm(&dir, wasm_name);
        async move {
            host.install("acme", "auth", World::Authenticator, bytes, cfg)
                .await
                .unwrap()
                .version
        }
    };
    assert_eq!(install("allowlist", good("v1")).await, 1);
    assert!(serve_once(&t.host, "acme").await.unwrap().result.is_ok());
    assert_eq!(install("hostile", trap()).await, 2);
    assert!(serve_once(&t.host, "acme").await.is_err());
    assert_eq!(install("allowlist", good("v3")).await, 3);
    assert_eq!(install("hostile", trap()).await, 4);
    assert!(serve_once(&t.host, "acme").await.is_err());
    // keep_versions = 3: v2 went, not v1, the last good one, although it is the oldest.
    assert_eq!(
        kept(&t.host),
        vec![(1, "good"), (3, "untried"), (4, "failed")]
    );

    // Back to the last version that served without failures: v1, not v3 (never served).
    let back = t.host.rollback("acme", "auth", None).await.unwrap();
    assert_eq!((back.version, back.health.as_str()), (1, "good"));
    let out = serve_once(&t.host, "acme").await.unwrap();
    assert_eq!(out.version, 1);
    assert_eq!(out.result.unwrap().attributes[0].1, "v1");

    // A new good version; v1 stays the fallback while v5 is untried, then v5 is the last
    // good one and the next install may evict v1.
    assert_eq!(install("allowlist", good("v5")).await, 5);
    assert_eq!(
        kept(&t.host),
        vec![(1, "good"), (4, "failed"), (5, "untried")]
    );
    assert!(serve_once(&t.host, "acme").await.unwrap().result.is_ok());
    assert_eq!(install("hostile", trap()).await, 6);
    assert_eq!(
        kept(&t.host),
        vec![(4, "failed"), (5, "good"), (6, "untried")]
    );
    assert_eq!(
        t.host.rollback("acme", "auth", None).await.unwrap().version,
        5
    );

    // By number, any kept version; an evicted one is refused with the kept list.
    assert_eq!(
        t.host
            .rollback("acme", "auth", Some(4))
            .await
            .unwrap()
            .version,
        4
    );
    let e = t.host.rollback("acme", "auth", Some(1)).await.unwrap_err();
    assert!(
        matches!(e, InstallError::UnknownVersion { version: 1, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("[4, 5, 6]"), "{e}");

    // Health survives a restart.
    let again = PluginHost::new(
        plugins_support::settings(),
        t.store.clone(),
        plugins_support::shared_cache_dir(),
    )
    .unwrap();
    again.restore_from_storage().await.unwrap();
    assert_eq!(
        kept(&again),
        vec![(4, "failed"), (5, "good"), (6, "untried")]
    );
    drop(again);

    // No version has served well: rollback says so instead of guessing.
    for v in ["v1", "v2"] {
        t.host
            .install(
                "acme",
                "other",
                World::Authenticator,
                wasm(&dir, "allowlist"),
                good(v),
            )
            .await
            .unwrap();
    }
    let e = t.host.rollback("acme", "other", None).await.unwrap_err();
    assert!(matches!(e, InstallError::NoGoodVersion { .. }), "{e}");
    assert!(e.to_string().contains("v1 untried, v2 untried"), "{e}");
    t.host.remove("acme", "other").await.unwrap();

    t.store
        .kv_set("acme", "auth", "token/x", b"alice", 1 << 20)
        .unwrap();
    t.host.remove("acme", "auth").await.unwrap();
    assert!(t.host.list(None).is_empty());
    assert!(t.store.slots().unwrap().is_empty());
    assert_eq!(
        t.store.kv_usage("acme", "auth").unwrap(),
        0,
        "key-value data purged"
    );
    assert_eq!(
        t.store.kv_usage("acme", "auth/host").unwrap(),
        0,
        "version health purged"
    );
    assert!(
        t.store.blob(&back.sha256).unwrap().is_none(),
        "blob deleted"
    );
    let e = t
        .host
        .authenticate("acme", "auth", password("alice", "wonderland"))
        .await
        .unwrap_err();
    assert_eq!(e.cause(), FailureCause::NotInstalled);
    assert!(matches!(
        t.host.remove("acme", "auth").await,
        Err(InstallError::NotInstalled { .. })
    ));
}

/// An upload without a configuration keeps the active version's (the admin API's
/// install without the header); a new slot starts with `{}`.
#[tokio::test]
async fn install_without_a_configuration_keeps_the_active_one() {
    let dir = wasm_or_skip!();
    let t = host();
    let cfg = allowlist_config("v1", &[("alice", "wonderland")]);
    let first = t
        .host
        .install_detecting_world("acme", "auth", wasm(&dir, "allowlist"), Some(config(&cfg)))
        .await
        .unwrap();
    assert_eq!(first.config_from, None);
    let second = t
        .host
        .install_detecting_world("acme", "auth", wasm(&dir, "allowlist"), None)
        .await
        .unwrap();
    assert_eq!((second.version, second.config_from), (2, Some(1)));
    let out = serve_once(&t.host, "acme").await.unwrap();
    assert_eq!(out.version, 2);
    assert_eq!(
        out.result.unwrap().attributes[0].1,
        "v1",
        "same configuration"
    );
    let fresh = t
        .host
        .install_detecting_world("acme", "fresh", wasm(&dir, "allowlist"), None)
        .await
        .unwrap();
    assert_eq!(fresh.config_from, None);
    let none = t
        .host
        .authenticate("acme", "fresh", password("alice", "wonderland"))
        .await
        .unwrap();
    assert_eq!(
        none.result,
        Err(AuthDenied::NotAuthorized),
        "an empty configuration"
    );
}

/// Captures what `tracing` writes on this thread, as the server's human format does.
fn capture_logs() -> (
    tracing::subscriber::DefaultGuard,
    Arc<std::sync::Mutex<Vec<u8>>>,
) {
    #[derive(Clone)]
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Sink(buf.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    (tracing::subscriber::set_default(subscriber), buf)
}

/// What a log flood left in the log: `calls` calls of tenant "noisy"'s plugin (64 lines
/// each), then one of tenant "quiet"'s. Returns the flood lines of each tenant, whether
/// a warning about dropped lines came, and how long the noisy calls took.
fn log_flood(
    wasm_dir: &std::path::Path,
    settings: PluginSettings,
    calls: usize,
) -> (usize, usize, bool, Duration) {
    let t = plugins_support::host_with(settings);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(hostile(&t.host, wasm_dir, "noisy", "log-flood"));
    rt.block_on(hostile(&t.host, wasm_dir, "quiet", "log-flood"));
    let (guard, buf) = capture_logs();
    let start = Instant::now();
    for _ in 0..calls {
        let out = t
            .host
            .authenticate_blocking("noisy", "auth", &password("x", "y"))
            .unwrap();
        assert!(out.result.is_ok());
    }
    let elapsed = start.elapsed();
    let out = t
        .host
        .authenticate_blocking("quiet", "auth", &password("x", "y"))
        .unwrap();
    assert!(out.result.is_ok());
    drop(guard);
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    let flood = |tenant: &str| {
        text.lines()
            .filter(|l| l.contains(" flood ") && l.contains(&format!("tenant={tenant} ")))
            .count()
    };
    let warned = text
        .lines()
        .any(|l| l.contains("tenant=noisy") && l.contains("dropping lines"));
    (flood("noisy"), flood("quiet"), warned, elapsed)
}

/// Issue 22, item 4: plugin log output is rate limited per tenant. A tenant whose plugin
/// writes its 64 lines on every call, called over and over, gets a burst and then is cut
/// (one warning says how many lines were dropped); another tenant's plugin logs as usual.
/// The rate and burst are `[plugins] log_lines_per_second` and `log_burst`: by default
/// 100 and 500, and a configured pair applies instead.
#[test]
fn plugin_log_output_is_rate_limited_per_tenant() {
    let dir = wasm_or_skip!();
    // (lines a second, burst); `None`: the defaults.
    for configured in [None, Some((20, 100))] {
        let mut settings = plugins_support::settings();
        if let Some((rate, burst)) = configured {
            settings.log_lines_per_second = rate;
            settings.log_burst = burst;
        }
        let (rate, burst) = (settings.log_lines_per_second, settings.log_burst);
        // 50 calls of 64 lines each: 3,200 lines, far over either burst.
        let (noisy, quiet, warned, elapsed) = log_flood(&dir, settings, 50);
        // The burst and `rate` lines a second since.
        let allowed =
            burst as usize + (elapsed.as_secs_f64() * f64::from(rate)).ceil() as usize + 1;
        assert!(
            (burst as usize..=allowed).contains(&noisy),
            "{configured:?}: {noisy} lines written in {elapsed:?}"
        );
        assert!(warned, "{configured:?}: a warning about the dropped lines");
        assert_eq!(quiet, 64, "{configured:?}: the other tenant logs as usual");
    }
}

/// `[plugins] log_lines_per_second = 0` turns plugin log output off: no line of any
/// tenant's plugin, and no warning about dropped lines either.
#[test]
fn plugin_log_output_is_off_at_a_rate_of_zero() {
    let dir = wasm_or_skip!();
    let settings = PluginSettings {
        log_lines_per_second: 0,
        log_burst: 0,
        ..plugins_support::settings()
    };
    let (noisy, quiet, warned, _) = log_flood(&dir, settings, 5);
    assert_eq!((noisy, quiet, warned), (0, 0, false));
}

/// A panic is one log record: tenant, plugin, version and cause first, then the panic
/// message on the same line; a refused upload is logged with tenant, slot and reason.
#[test]
fn panics_and_refused_uploads_are_one_log_record_each() {
    let dir = wasm_or_skip!();
    let t = host();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(hostile(&t.host, &dir, "evil", "trap"));
    let (guard, buf) = capture_logs();
    // On this thread (outside the runtime), so the thread's subscriber sees the call.
    let err = t
        .host
        .authenticate_blocking("evil", "auth", &password("x", "y"))
        .unwrap_err();
    assert_eq!(err.cause(), FailureCause::Trap);
    let refused = rt.block_on(t.host.install(
        "evil",
        "auth",
        World::Authenticator,
        b"not wasm".to_vec(),
        config("{}"),
    ));
    assert!(refused.is_err());
    drop(guard);
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let failed: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("panics on purpose"))
        .collect();
    assert_eq!(failed.len(), 1, "one record, one line: {text}");
    let line = failed[0];
    let at = |needle: &str| {
        line.find(needle)
            .unwrap_or_else(|| panic!("{needle} in {line}"))
    };
    assert!(at("tenant=evil") < at("plugin=auth"), "{line}");
    assert!(at("plugin=auth") < at("version=1"), "{line}");
    assert!(at("version=1") < at("cause=trap"), "{line}");
    assert!(at("cause=trap") < at("panics on purpose"), "{line}");
    let refusal: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("upload refused"))
        .collect();
    assert_eq!(refusal.len(), 1, "{text}");
    assert!(
        refusal[0].contains("tenant=evil") && refusal[0].contains("plugin=auth"),
        "{}",
        refusal[0]
    );
    assert!(
        refusal[0].contains("reason=upload is not WebAssembly"),
        "{}",
        refusal[0]
    );
}

/// The WIT package went from 0.1.0 to 0.1.1 (the room-policy world was added). A
/// component built against the frozen 0.1.0 WIT (`plugins/legacy-authenticator`) imports
/// `host-log`, `host-kv`, `host-config` and exports `authentication` and `lifecycle`, all
/// `@0.1.0`: it must install, pass `init`, authenticate and use every host interface.
#[tokio::test]
async fn components_built_against_wit_0_1_0_keep_loading() {
    let dir = wasm_or_skip!();
    // The legacy component is of the host's track (0.1), older than the host.
    assert_eq!(heliograph::plugins::WIT_TRACK, "0.1");
    assert_ne!(WIT, "0.1.0");
    let t = host();
    let e = t
        .host
        .install(
            "acme",
            "auth",
            World::Authenticator,
            wasm(&dir, "legacy_authenticator"),
            config("{}"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, InstallError::InitRefused(ref m) if m.contains("password")),
        "the 0.1.0 lifecycle.init export is called: {e}"
    );
    t.host
        .install(
            "acme",
            "auth",
            World::Authenticator,
            wasm(&dir, "legacy_authenticator"),
            config(r#"{"password": "old-but-gold"}"#),
        )
        .await
        .unwrap();
    for n in 1..=2 {
        let out = t
            .host
            .authenticate("acme", "auth", password("Legacy", "old-but-gold"))
            .await
            .unwrap();
        let user = out.result.unwrap();
        assert_eq!(user.username, "legacy");
        assert_eq!(user.roles, vec!["legacy"]);
        // The count lives in the 0.1.0 component's key-value store.
        assert_eq!(user.attributes, vec![("logins".into(), n.to_string())]);
    }
    let wrong = t
        .host
        .authenticate("acme", "auth", password("legacy", "nope"))
        .await
        .unwrap();
    assert_eq!(wrong.result, Err(AuthDenied::NotAuthorized));
    // A 0.1.0 authenticator is not a room policy.
    let e = t
        .host
        .install(
            "acme",
            "rooms",
            World::RoomPolicy,
            wasm(&dir, "legacy_authenticator"),
            config(r#"{"password": "x"}"#),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "does not export `heliograph:plugin/room-decisions@{WIT}`"
        )),
        "{e}"
    );
}
