//! The room policy through the host: the MUC decision functions (`muc::policy`) of a real
//! server state with a plugin host, against the components built from `plugins/`:
//! `meeting-policy` for every decision point, `hostile-policy` for failures (closed by
//! default, open when the tenant opts in), and a hot swap between decisions.

use crate::plugins_support;

use std::sync::Arc;

use heliograph::config::Config;
use heliograph::core::Core;
use heliograph::muc::policy::{
    self, Decision, JoinDecision, MessageDecision, OccupantFacts, RoomFacts, UNAVAILABLE,
};
use heliograph::muc::types::{Affiliation, Role};
use heliograph::plugins::{FailureCause, PluginSettings, World};
use heliograph::router::{SessionEntry, Transport, UserFacts};
use heliograph::server::Server;
use heliograph::storage::{Account, Storage};
use plugins_support::config;

const TENANTS: &str = r#"
[tenants.acme]
domains = ["acme.test"]
room_policy = { plugin = "rooms" }

[tenants.open]
domains = ["open.test"]
room_policy = { plugin = "rooms", fail_open = true }

[tenants.plain]
domains = ["plain.test"]
"#;

const MEETING: &str = r#"{"room_patterns": ["team-*"], "max_participants": 3,
    "moderator_if": "role=host", "max_message_bytes": 40, "redact_words": ["secret"],
    "nick_changes": "moderators", "locked_config": {"muc#roomconfig_persistentroom": "0"}}"#;

struct Fixture {
    core: Arc<Core>,
    _dir: tempfile::TempDir,
}

fn fixture(settings: PluginSettings) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::from_toml(TENANTS, std::path::Path::new("test.toml")).unwrap();
    let storage = Storage::open_sled(&dir.path().join("db")).unwrap();
    let host = heliograph::plugins::PluginHost::new(
        settings,
        storage.plugins.clone(),
        plugins_support::shared_cache_dir(),
    )
    .unwrap();
    let core = Server::new(Arc::new(cfg), storage, "token".into()).core;
    assert!(core.plugins.set(host).is_ok());
    Fixture { core, _dir: dir }
}

impl Fixture {
    async fn install(&self, tenant: &str, name: &str, json: &str) -> u32 {
        self.core
            .plugin_host()
            .unwrap()
            .install(
                tenant,
                "rooms",
                World::RoomPolicy,
                plugins_support::plugin_wasm(name),
                config(json),
            )
            .await
            .unwrap()
            .version
    }

    /// A bound session whose authenticator said `roles`/`attributes`.
    fn session(&self, full_jid: &str, facts: UserFacts) {
        let (bare, resource) = full_jid.split_once('/').unwrap();
        let (local, domain) = bare.split_once('@').unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        std::mem::forget(rx);
        let entry = SessionEntry::new(
            heliograph::router::next_session_id(),
            Account::new(local, domain),
            resource.into(),
            Transport::Tcp,
            "127.0.0.1".into(),
            tx,
        )
        .with_user_facts(facts);
        self.core.router.register(Arc::new(entry));
    }
}

fn room(tenant: &str, name: &str, occupants: u32) -> RoomFacts {
    let domain = format!("conference.{tenant}.test");
    RoomFacts {
        tenant: tenant.into(),
        room: format!("{name}@{domain}"),
        occupants,
        config: vec![("muc#roomconfig_persistentroom".into(), "0".into())],
    }
}

fn occupant(jid: &str, role: Role, affiliation: Affiliation) -> OccupantFacts {
    OccupantFacts {
        jid: jid.into(),
        nick: jid.split('@').next().unwrap().into(),
        role,
        affiliation,
    }
}

fn participant(jid: &str) -> OccupantFacts {
    occupant(jid, Role::Participant, Affiliation::None)
}

fn deny(reason: &str) -> Decision {
    Decision::Deny {
        reason: reason.into(),
    }
}

#[tokio::test]
async fn meeting_policy_decides_every_point() {
    let _ = wasm_or_skip!();
    decides_every_point("meeting_policy").await;
}

/// The Python twin of `plugins/meeting-policy` (`plugins/python/meeting_policy`), through
/// the same decisions.
#[tokio::test]
async fn python_meeting_policy_decides_every_point() {
    let _ = python_or_skip!();
    decides_every_point("meeting_policy_py").await;
}

/// The JavaScript twin (`plugins/js/meeting_policy`), through the same decisions.
#[tokio::test]
async fn js_meeting_policy_decides_every_point() {
    let _ = js_or_skip!();
    decides_every_point("meeting_policy_js").await;
}

async fn decides_every_point(plugin: &str) {
    let f = fixture(plugins_support::settings());
    f.install("acme", plugin, MEETING).await;
    let s = &f.core;

    // Creation: the name pattern.
    assert_eq!(
        policy::decide_create(s, &room("acme", "team-blue", 0), "ann@acme.test/a").await,
        Decision::Allow
    );
    assert_eq!(
        policy::decide_create(s, &room("acme", "party", 0), "ann@acme.test/a").await,
        deny("room names must match team-*")
    );

    // Joins: the first joiner moderates, then participants, a host by its authenticator
    // role, and nobody once the room is full.
    let first = participant("ann@acme.test/a");
    assert_eq!(
        policy::decide_join(s, &room("acme", "team-blue", 0), &first).await,
        JoinDecision::Allow {
            role: Some(Role::Moderator),
            affiliation: None
        }
    );
    assert_eq!(
        policy::decide_join(
            s,
            &room("acme", "team-blue", 1),
            &participant("bob@acme.test/b")
        )
        .await,
        JoinDecision::Allow {
            role: Some(Role::Participant),
            affiliation: None
        }
    );
    f.session(
        "hal@acme.test/desk",
        UserFacts {
            roles: vec!["member".into(), "host".into()],
            attributes: vec![],
        },
    );
    f.session(
        "vic@acme.test/desk",
        UserFacts {
            roles: vec![],
            attributes: vec![("role".into(), "host".into())],
        },
    );
    for host in ["hal@acme.test/desk", "vic@acme.test/desk"] {
        assert_eq!(
            policy::decide_join(s, &room("acme", "team-blue", 2), &participant(host)).await,
            JoinDecision::Allow {
                role: Some(Role::Moderator),
                affiliation: None
            },
            "{host} is a host by its session's authenticator facts"
        );
    }
    // The same user on another resource has no session facts: a participant.
    assert_eq!(
        policy::decide_join(
            s,
            &room("acme", "team-blue", 2),
            &participant("hal@acme.test/x")
        )
        .await,
        JoinDecision::Allow {
            role: Some(Role::Participant),
            affiliation: None
        }
    );
    assert_eq!(
        policy::decide_join(
            s,
            &room("acme", "team-blue", 3),
            &participant("hal@acme.test/desk")
        )
        .await,
        JoinDecision::Deny {
            reason: "the meeting is full (3 participants)".into()
        }
    );

    // Messages: size, redaction.
    let r = room("acme", "team-blue", 2);
    assert_eq!(
        policy::decide_message(s, &r, &first, "hello").await,
        MessageDecision::Allow
    );
    assert_eq!(
        policy::decide_message(s, &r, &first, &"x".repeat(41)).await,
        MessageDecision::Deny {
            reason: "messages are limited to 40 bytes (this one has 41)".into()
        }
    );
    assert_eq!(
        policy::decide_message(s, &r, &first, "the secret plan").await,
        MessageDecision::ReplaceBody("the ****** plan".into())
    );

    // Configuration and nickname changes.
    let cfg = |v: &str| vec![("muc#roomconfig_persistentroom".to_string(), v.to_string())];
    assert_eq!(
        policy::decide_configure(s, &r, "ann@acme.test/a", &cfg("0")).await,
        Decision::Allow
    );
    assert_eq!(
        policy::decide_configure(s, &r, "ann@acme.test/a", &cfg("1")).await,
        deny("muc#roomconfig_persistentroom is fixed to 0 for meetings")
    );
    let moderator = occupant("ann@acme.test/a", Role::Moderator, Affiliation::Owner);
    assert_eq!(
        policy::decide_nick_change(s, &r, &moderator, "annie").await,
        Decision::Allow
    );
    assert_eq!(
        policy::decide_nick_change(s, &r, &participant("bob@acme.test/b"), "robert").await,
        deny("only moderators may change their nickname")
    );

    // A tenant without a room policy gets XEP-0045's rules alone.
    assert_eq!(
        policy::decide_create(s, &room("plain", "party", 0), "x@plain.test/r").await,
        Decision::Allow
    );
    assert_eq!(
        policy::decide_join(
            s,
            &room("plain", "party", 999),
            &participant("x@plain.test/r")
        )
        .await,
        JoinDecision::Default
    );

    let stats = s.plugin_host().unwrap().stats("acme", "rooms").unwrap();
    assert_eq!(stats.calls, 15, "{stats:?}");
    assert_eq!(stats.denied, 5, "{stats:?}");
    assert!(stats.failed.is_empty(), "{stats:?}");
}

/// Every failure of the plugin refuses the action for a tenant that fails closed (the
/// default) and allows it for one that opted into open, with the cause counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_fail_closed_unless_the_tenant_opts_into_open() {
    let _ = wasm_or_skip!();
    let f = fixture(PluginSettings {
        memory_limit_mib: 16,
        ..plugins_support::settings()
    });
    let s = &f.core;

    // Nothing installed in the slot yet.
    assert_eq!(
        policy::decide_create(s, &room("acme", "team-a", 0), "a@acme.test/r").await,
        deny(UNAVAILABLE)
    );
    assert_eq!(
        policy::decide_create(s, &room("open", "team-a", 0), "a@open.test/r").await,
        Decision::Allow
    );

    for (mode, cause) in [
        ("trap", FailureCause::Trap),
        ("loop", FailureCause::Timeout),
        ("memory", FailureCause::Memory),
        ("oversized", FailureCause::InvalidResult),
    ] {
        let json = format!(r#"{{"mode": "{mode}"}}"#);
        f.install("acme", "hostile_policy", &json).await;
        f.install("open", "hostile_policy", &json).await;
        for (tenant, open) in [("acme", false), ("open", true)] {
            let r = room(tenant, "team-a", 1);
            let who = participant(&format!("a@{tenant}.test/r"));
            let started = std::time::Instant::now();
            let join = policy::decide_join(s, &r, &who).await;
            let message = policy::decide_message(s, &r, &who, "hi").await;
            let nick = policy::decide_nick_change(s, &r, &who, "b").await;
            let configure = policy::decide_configure(s, &r, &who.jid, &[]).await;
            if open {
                assert_eq!(join, JoinDecision::Default, "{mode}");
                assert_eq!(message, MessageDecision::Allow, "{mode}");
                assert_eq!((nick, configure), (Decision::Allow, Decision::Allow));
            } else {
                assert_eq!(
                    join,
                    JoinDecision::Deny {
                        reason: UNAVAILABLE.into()
                    },
                    "{mode}"
                );
                assert_eq!(
                    message,
                    MessageDecision::Deny {
                        reason: UNAVAILABLE.into()
                    },
                    "{mode}"
                );
                assert_eq!((nick, configure), (deny(UNAVAILABLE), deny(UNAVAILABLE)));
            }
            // Four calls, each cut at the 20 ms deadline (CPU time, with a 10x wall-clock
            // backstop); the wall-clock bound only says "cut", with room for a busy machine.
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "{mode}: {:?}",
                started.elapsed()
            );
            let stats = s.plugin_host().unwrap().stats(tenant, "rooms").unwrap();
            assert!(
                stats.failed.get(cause.as_str()).copied().unwrap_or(0) >= 4,
                "{tenant} {mode}: {stats:?}"
            );
        }
    }

    // A well-behaved version serves again at once.
    f.install("acme", "hostile_policy", r#"{"mode": "fine"}"#)
        .await;
    assert_eq!(
        policy::decide_create(s, &room("acme", "team-a", 0), "a@acme.test/r").await,
        Decision::Allow
    );
}

/// A new version (or a rollback) applies to the next decision.
#[tokio::test]
async fn swapping_the_policy_applies_to_the_next_decision() {
    let _ = wasm_or_skip!();
    swapping_applies_to_the_next_decision("meeting_policy").await;
}

#[tokio::test]
async fn swapping_the_python_policy_applies_to_the_next_decision() {
    let _ = python_or_skip!();
    swapping_applies_to_the_next_decision("meeting_policy_py").await;
}

#[tokio::test]
async fn swapping_the_js_policy_applies_to_the_next_decision() {
    let _ = js_or_skip!();
    swapping_applies_to_the_next_decision("meeting_policy_js").await;
}

async fn swapping_applies_to_the_next_decision(plugin: &str) {
    let f = fixture(plugins_support::settings());
    let s = &f.core;
    let full = room("acme", "team-a", 2);
    let who = participant("c@acme.test/r");
    assert_eq!(
        f.install("acme", plugin, r#"{"max_participants": 2}"#)
            .await,
        1
    );
    assert!(matches!(
        policy::decide_join(s, &full, &who).await,
        JoinDecision::Deny { .. }
    ));
    assert_eq!(
        f.install("acme", plugin, r#"{"max_participants": 5}"#)
            .await,
        2
    );
    assert_eq!(
        policy::decide_join(s, &full, &who).await,
        JoinDecision::Allow {
            role: Some(Role::Participant),
            affiliation: None
        }
    );
    s.plugin_host()
        .unwrap()
        .rollback("acme", "rooms", None)
        .await
        .unwrap();
    assert!(matches!(
        policy::decide_join(s, &full, &who).await,
        JoinDecision::Deny { .. }
    ));
}
