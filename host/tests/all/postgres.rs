//! The server on PostgreSQL: a database outage mid-load (no accepted message lost, logins
//! refused with `temporary-auth-failure` and writes with `internal-server-error`
//! meanwhile, `/health/ready` 503 and `heliograph_ready 0` until the database is back,
//! service resumed without a restart, latency by backend and operation in the metrics),
//! a tenant created on two
//! nodes at once, and a deployment moved from sled to PostgreSQL and back with
//! `heliograph storage export` and `import`.
//!
//! These need PostgreSQL: they skip without `HELIOGRAPH_TEST_POSTGRES_URL` unless
//! `HELIOGRAPH_REQUIRE_POSTGRES=1` (tests/run.sh sets both). The outage test starts a
//! private cluster of its own with `tests/postgres.sh`, since it stops it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use heliograph::xml::{Element, ns};
use heliograph_storage_postgres::testing::TestDb;

use crate::common::web::http;
use crate::common::{RawClient, TestServer, ping_barrier};

const DEADLINE: Duration = Duration::from_secs(60);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A PostgreSQL cluster of this test's own (tests/postgres.sh), stopped on drop.
struct Cluster {
    dir: tempfile::TempDir,
    url: String,
}

impl Cluster {
    /// `None` (skip) when the run has no PostgreSQL, as [`TestDb::create`] decides.
    fn start() -> Option<Cluster> {
        drop(TestDb::create()?);
        let dir = tempfile::Builder::new()
            .prefix("heliograph-pg-")
            .tempdir()
            .unwrap();
        // The server runs as the unprivileged `postgres` user when we are root.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let out = Cluster::script(&["start", &dir.path().join("pg").to_string_lossy(), "5432"]);
        let url = String::from_utf8(out).unwrap().trim().to_string();
        Some(Cluster { dir, url })
    }

    fn script(args: &[&str]) -> Vec<u8> {
        let out = Command::new(repo_root().join("tests/postgres.sh"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tests/postgres.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn run(&self, cmd: &str) {
        Cluster::script(&[cmd, &self.dir.path().join("pg").to_string_lossy()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("tests/postgres.sh"))
            .args(["stop", &self.dir.path().join("pg").to_string_lossy()])
            .output();
    }
}

/// A server for `localhost` on PostgreSQL at `url`.
fn pg_server(url: &str) -> TestServer {
    TestServer::start(
        &[],
        &format!(
            "\n[storage]\nbackend = \"postgres\"\nurl = \"{url}\"\nquery_timeout_secs = 3\nconnect_timeout_secs = 2\n"
        ),
    )
}

async fn api(server: &TestServer, method: &str, path: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {}", server.token);
    let r = http(
        method,
        &format!("http://{}{path}", server.admin),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        Bytes::from(body.to_string()),
    )
    .await;
    (
        r.status.as_u16(),
        String::from_utf8_lossy(&r.body).into_owned(),
    )
}

async fn add_user(server: &TestServer, user: &str, password: &str) {
    let body = format!(r#"{{"username":"{user}","password":"{password}"}}"#);
    let (status, text) = api(server, "POST", "/api/v1/users/localhost", &body).await;
    assert_eq!(status, 201, "{text}");
}

async fn ready(server: &TestServer) -> u16 {
    api(server, "GET", "/health/ready", "").await.0
}

async fn wait_ready(server: &TestServer, want: u16) {
    let deadline = Instant::now() + DEADLINE;
    while ready(server).await != want {
        assert!(
            Instant::now() < deadline,
            "/health/ready never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (`heliograph_ready`, `heliograph_draining`) as /metrics shows them.
async fn readiness_gauges(server: &TestServer) -> (String, String) {
    let (status, text) = api(server, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{text}");
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    (value("heliograph_ready"), value("heliograph_draining"))
}

fn chat(to: &str, id: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("to", to)
        .with_attr("type", "chat")
        .with_attr("id", id)
        .with_child(Element::new("body", ns::CLIENT).with_text(id))
}

/// SASL PLAIN with STARTTLS; returns the SASL answer (success or failure).
async fn try_login(addr: &str, user: &str, password: &str) -> Element {
    let mut c = RawClient::connect(addr).await;
    c.open_and_features().await;
    c.starttls().await;
    c.open_and_features().await;
    c.auth_plain(user, password).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_mid_load_loses_no_accepted_message_and_recovers_by_itself() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let server = pg_server(&cluster.url);
    wait_ready(&server, 200).await;
    add_user(&server, "alice", "pw-a").await;
    add_user(&server, "bob", "pw-b").await;
    let (mut alice, _) = RawClient::login(&server.starttls, "alice", "pw-a", Some("a")).await;

    // Bob is offline: every message goes to offline storage, in the database.
    const TOTAL: usize = 300;
    let mut errors = BTreeSet::new();
    let mut outage_seen = false;
    for i in 0..TOTAL {
        alice.send(&chat("bob@localhost", &format!("m{i}"))).await;
        if i == TOTAL / 3 {
            // Mid-load: the database crashes (immediate shutdown).
            ping_barrier(&mut alice).await;
            cluster.run("kill");
            wait_ready(&server, 503).await;
            // /metrics says the same: not ready, and not because of a drain.
            assert_eq!(readiness_gauges(&server).await, ("0".into(), "0".into()));
            outage_seen = true;
            // Logins fail with temporary-auth-failure, not not-authorized.
            let answer = try_login(&server.starttls, "bob", "pw-b").await;
            assert!(answer.is("failure", ns::SASL), "{answer}");
            assert!(
                answer.child("temporary-auth-failure", ns::SASL).is_some(),
                "{answer}"
            );
            // A write Alice asks for fails with internal-server-error.
            alice
                .send_raw(
                    "<iq type='set' id='roster'><query xmlns='jabber:iq:roster'>\
                     <item jid='carol@localhost'/></query></iq>",
                )
                .await;
            let r = alice
                .next_matching(|e| e.is("iq", ns::CLIENT) && e.attr("id") == Some("roster"))
                .await;
            assert_eq!(r.attr("type"), Some("error"), "{r}");
            assert!(
                r.child("error", ns::CLIENT)
                    .and_then(|e| e.child("internal-server-error", ns::STANZAS_ERRORS))
                    .is_some(),
                "{r}"
            );
        }
        if i == TOTAL / 2 {
            // The database comes back; the server goes on without a restart.
            cluster.run("restart");
            wait_ready(&server, 200).await;
            assert_eq!(readiness_gauges(&server).await, ("1".into(), "0".into()));
        }
    }
    assert!(outage_seen);
    // Every refused message came back to Alice as an error before the answer to a ping
    // sent after the last one (a session's stanzas are handled in order).
    alice
        .send_raw("<iq type='get' id='end'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    loop {
        let el = alice.next().await;
        if el.is("iq", ns::CLIENT) && el.attr("id") == Some("end") {
            break;
        }
        if el.is("message", ns::CLIENT) && el.attr("type") == Some("error") {
            // Refused for the outage: internal-server-error, not "no such user".
            let error = el.child("error", ns::CLIENT).expect("an <error/>");
            assert!(
                error
                    .child("internal-server-error", ns::STANZAS_ERRORS)
                    .is_some(),
                "{el}"
            );
            errors.insert(el.attr("id").unwrap_or_default().to_string());
        }
    }
    assert!(
        !errors.is_empty(),
        "no message was refused during the outage"
    );
    assert!(
        errors.len() < TOTAL / 2,
        "{} of {TOTAL} refused: the server did not recover",
        errors.len()
    );
    // Bob logs in: he gets every message that was not refused, exactly once.
    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "pw-b", Some("b")).await;
    bob.send(&Element::new("presence", ns::CLIENT)).await;
    let expected: BTreeSet<String> = (0..TOTAL)
        .map(|i| format!("m{i}"))
        .filter(|id| !errors.contains(id))
        .collect();
    let mut received = BTreeSet::new();
    let deadline = Instant::now() + DEADLINE;
    while received.len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "bob got {} of {} accepted messages",
            received.len(),
            expected.len()
        );
        let el = bob
            .next_matching(|e| e.is("message", ns::CLIENT) && e.attr("type") == Some("chat"))
            .await;
        let id = el.attr("id").unwrap_or_default().to_string();
        assert!(received.insert(id.clone()), "{id} delivered twice");
    }
    assert_eq!(received, expected);
    // Storage latency by backend and operation.
    let (_, metrics) = api(&server, "GET", "/metrics", "").await;
    for op in ["offline.push", "offline.peek", "users.credentials"] {
        let series =
            format!("heliograph_storage_seconds_count{{backend=\"postgres\",op=\"{op}\"}}");
        assert!(metrics.contains(&series), "no {series} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_created_on_two_nodes_at_once_exists_once() {
    let Some(db) = TestDb::create() else {
        return;
    };
    let a = pg_server(&db.url);
    let b = pg_server(&db.url);
    for round in 0..5 {
        let body = format!(r#"{{"name":"acme{round}","domains":["acme{round}.test"]}}"#);
        let (ra, rb) = tokio::join!(
            api(&a, "POST", "/api/v1/tenants", &body),
            api(&b, "POST", "/api/v1/tenants", &body)
        );
        let mut statuses = [ra.0, rb.0];
        statuses.sort();
        assert_eq!(statuses, [201, 409], "round {round}: {ra:?} {rb:?}");
    }
}

/// Runs `heliograph storage ARGS --config CONFIG`.
fn storage_cli(config: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_heliograph"))
        .arg("storage")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "heliograph storage {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The dump's records without its header (which names the backend that wrote it).
fn records(dump: &Path) -> Vec<String> {
    std::fs::read_to_string(dump)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_moves_from_sled_to_postgres_and_back() {
    let Some(db) = TestDb::create() else {
        return;
    };
    // On sled: accounts, a roster change, and a message waiting for Bob.
    let mut server = TestServer::start(&[("alice", "pw-a"), ("bob", "pw-b")], "");
    let (mut alice, _) = RawClient::login(&server.starttls, "alice", "pw-a", Some("a")).await;
    alice.send(&chat("bob@localhost", "waiting")).await;
    ping_barrier(&mut alice).await;
    drop(alice);
    assert_eq!(server.stop(), Some(0));
    let dir = server.dir.path().to_path_buf();
    let sled_config = dir.join("heliograph.toml");
    let dump = dir.join("dump.jsonl");
    storage_cli(
        &sled_config,
        &["export", "--output", &dump.to_string_lossy()],
    );

    // Into PostgreSQL: the same config with a [storage] section, the URL (a secret, were
    // there a password) in a file of its own.
    let pg_config = dir.join("postgres.toml");
    let url_file = dir.join("database-url");
    std::fs::write(&url_file, format!("{}\n", db.url)).unwrap();
    let text = std::fs::read_to_string(&sled_config).unwrap();
    std::fs::write(
        &pg_config,
        text.replacen(
            "[[listen.c2s]]",
            &format!(
                "[storage]\nbackend = \"postgres\"\nurl_file = \"{}\"\n\n[[listen.c2s]]",
                url_file.display()
            ),
            1,
        ),
    )
    .unwrap();
    assert!(storage_cli(&pg_config, &["migrate"]).contains("schema at version"));
    storage_cli(&pg_config, &["import", &dump.to_string_lossy()]);
    let again = dir.join("again.jsonl");
    storage_cli(&pg_config, &["export", "-o", &again.to_string_lossy()]);
    assert_eq!(records(&again), records(&dump));

    // The server runs on PostgreSQL with the moved data.
    std::fs::copy(&pg_config, &sled_config).unwrap();
    server.launch();
    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "pw-b", Some("b")).await;
    bob.send(&Element::new("presence", ns::CLIENT)).await;
    let msg = bob
        .next_matching(|e| e.is("message", ns::CLIENT) && e.attr("type") == Some("chat"))
        .await;
    assert_eq!(msg.attr("id"), Some("waiting"));
    drop(bob);
    server.stop();

    // And back to sled: a fresh data dir gets the PostgreSQL dump.
    let back = dir.join("back.toml");
    std::fs::write(
        &back,
        text.replace(
            &dir.join("data").display().to_string(),
            &dir.join("data2").display().to_string(),
        ),
    )
    .unwrap();
    storage_cli(&back, &["import", &again.to_string_lossy()]);
    let last = dir.join("last.jsonl");
    storage_cli(&back, &["export", "-o", &last.to_string_lossy()]);
    // Bob's message was delivered on PostgreSQL, so it is gone from this dump; the rest
    // is what PostgreSQL held.
    let mut expected = records(&again);
    expected.retain(|l| !l.contains("\"kind\":\"offline\""));
    let mut got = records(&last);
    got.retain(|l| !l.contains("\"kind\":\"offline\""));
    assert_eq!(got, expected);
}
