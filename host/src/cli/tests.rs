//! Tests of the client commands against a test admin API.

use super::args::Cli;
use super::client::{ApiClient, ClientError};
use super::*;
use crate::admin::testing::{TOKEN, TestApi};

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("heliograph").chain(args.iter().copied())).unwrap()
}

/// Parses a command line and runs it against `api`; returns stdout.
async fn run_line(api: &TestApi, args: &[&str]) -> anyhow::Result<String> {
    let url = api.url();
    let mut full = vec!["--api", url.as_str(), "--token", TOKEN];
    full.extend_from_slice(args);
    let cli = parse(&full);
    let (url, token) = resolve_target(&cli.global)?;
    let client = ApiClient::new(&url, token)?;
    let cmd = cli.command.unwrap();
    let password = match &cmd {
        Command::User(UserCommand::Add { password, .. } | UserCommand::Passwd { password, .. }) => {
            password.clone()
        }
        _ => None,
    };
    let mut out = Vec::new();
    run(&client, cmd, password.as_deref(), &mut out).await?;
    Ok(String::from_utf8(out)?)
}

#[tokio::test]
async fn creates_lists_and_removes_users() {
    let api = TestApi::start().await;
    assert_eq!(
        run_line(
            &api,
            &["user", "add", "Alice@example.com", "--password", "pw1"]
        )
        .await
        .unwrap(),
        "created alice@example.com\n"
    );
    run_line(
        &api,
        &["user", "add", "bob@example.com", "--password", "pw2"],
    )
    .await
    .unwrap();
    assert_eq!(
        run_line(&api, &["user", "list", "example.com"])
            .await
            .unwrap(),
        "alice\nbob\n"
    );
    assert_eq!(
        api.password_of("alice", "example.com").as_deref(),
        Some("pw1")
    );

    run_line(
        &api,
        &["user", "passwd", "alice@example.com", "--password", "new"],
    )
    .await
    .unwrap();
    assert_eq!(
        api.password_of("alice", "example.com").as_deref(),
        Some("new")
    );

    let err = run_line(
        &api,
        &["user", "add", "alice@example.com", "--password", "x"],
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "user alice@example.com already exists");
    match err.downcast_ref::<ClientError>() {
        Some(ClientError::Api { status, code, .. }) => {
            assert_eq!(status.as_u16(), 409);
            assert_eq!(code, "user_exists");
        }
        other => panic!("{other:?}"),
    }

    assert_eq!(
        run_line(&api, &["user", "remove", "bob@example.com"])
            .await
            .unwrap(),
        "removed bob@example.com\n"
    );
    assert_eq!(
        run_line(&api, &["user", "list", "example.com"])
            .await
            .unwrap(),
        "alice\n"
    );
    let err = run_line(&api, &["user", "remove", "bob@example.com"])
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "no such user bob@example.com");
    let err = run_line(&api, &["user", "list", "nope.test"])
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown domain nope.test");
    api.stop().await;
}

#[tokio::test]
async fn session_list_prints_a_table() {
    let api = TestApi::start().await;
    let out = run_line(&api, &["session", "list"]).await.unwrap();
    assert!(out.starts_with("JID"), "{out}");
    assert!(out.contains("(no sessions)"), "{out}");
    run_line(&api, &["session", "list", "other.test"])
        .await
        .unwrap();
    api.stop().await;
}

#[tokio::test]
async fn wrong_token_is_reported() {
    let api = TestApi::start().await;
    let client = ApiClient::new(&api.url(), "wrong").unwrap();
    let err = client.list_users("example.com").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Api { status, .. } if status.as_u16() == 401),
        "{err}"
    );
    api.stop().await;
}

#[tokio::test]
async fn connection_refused_says_server_not_running() {
    // Bind then drop to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = ApiClient::new(&format!("http://127.0.0.1:{port}"), "t").unwrap();
    let err = client.list_users("example.com").await.unwrap_err();
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    assert!(err.to_string().contains("is the server running"), "{err}");
}

#[test]
fn target_from_config_and_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("admin.token");
    std::fs::write(&token_path, "filetoken\n").unwrap();
    let config_path = dir.path().join("h.toml");
    std::fs::write(
        &config_path,
        format!(
            "[general]\nadmin_token_file = {:?}\n[listen.admin]\naddress = \"0.0.0.0:6001\"\n",
            token_path.display().to_string()
        ),
    )
    .unwrap();
    let global = GlobalArgs {
        config: Some(config_path.clone()),
        ..GlobalArgs::default()
    };
    assert_eq!(
        resolve_target(&global).unwrap(),
        ("http://127.0.0.1:6001".to_string(), "filetoken".to_string())
    );

    // Explicit options win over the config.
    let global = GlobalArgs {
        config: Some(config_path),
        api: Some("http://h:1".into()),
        token: Some("t".into()),
        ..GlobalArgs::default()
    };
    assert_eq!(
        resolve_target(&global).unwrap(),
        ("http://h:1".to_string(), "t".to_string())
    );

    let global = GlobalArgs {
        api: Some("http://h:1".into()),
        token_file: Some(dir.path().join("missing")),
        ..GlobalArgs::default()
    };
    let err = resolve_target(&global).unwrap_err().to_string();
    assert!(err.contains("cannot read the admin token file"), "{err}");
}

#[test]
fn admin_url_maps_wildcards_to_loopback() {
    assert_eq!(
        admin_url("0.0.0.0:5281".parse().unwrap()),
        "http://127.0.0.1:5281"
    );
    assert_eq!(admin_url("[::]:5281".parse().unwrap()), "http://[::1]:5281");
    assert_eq!(
        admin_url("10.0.0.1:5281".parse().unwrap()),
        "http://10.0.0.1:5281"
    );
}

#[test]
fn plugin_commands_parse() {
    use super::args::PluginCommand;
    let cli = parse(&[
        "plugin",
        "install",
        "acme",
        "auth",
        "a.wasm",
        "--plugin-config",
        "{}",
        "--config",
        "server.toml",
    ]);
    assert!(matches!(
        cli.command,
        Some(Command::Plugin(PluginCommand::Install {
            plugin_config: Some(_),
            ..
        }))
    ));
    assert_eq!(
        cli.global.config.as_deref(),
        Some(std::path::Path::new("server.toml"))
    );
    let cli = parse(&["plugin", "rollback", "acme", "auth", "--version", "2"]);
    assert!(matches!(
        cli.command,
        Some(Command::Plugin(PluginCommand::Rollback {
            version: Some(2),
            ..
        }))
    ));
    parse(&["plugin", "list", "acme"]);
    parse(&["plugin", "remove", "acme", "auth"]);
}

#[tokio::test]
async fn plugin_commands_without_a_plugin_host_say_so() {
    let api = TestApi::start().await;
    let err = run_line(&api, &["plugin", "list", "default"])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no plugin host"), "{err}");
}

#[test]
fn room_commands_parse_and_muc_settings_become_json() {
    use super::args::{RoomCommand, TenantCommand};
    let cli = parse(&[
        "room",
        "create",
        "weekly@conference.a.test",
        "--tenant",
        "acme",
        "--owner",
        "boss@a.test",
        "--set",
        "membersonly=1",
    ]);
    assert!(matches!(
        cli.command,
        Some(Command::Room(RoomCommand::Create { ref owners, ref settings, .. }))
            if owners == &["boss@a.test"] && settings == &["membersonly=1"]
    ));
    let cli = parse(&[
        "room",
        "kick",
        "r@conference.a.test",
        "Bob",
        "--tenant",
        "acme",
    ]);
    assert!(matches!(
        cli.command,
        Some(Command::Room(RoomCommand::Kick { ref nick, .. })) if nick == "Bob"
    ));
    parse(&["room", "list", "--tenant", "acme"]);
    let cli = parse(&[
        "room",
        "log",
        "r@c.a.test",
        "--tenant",
        "acme",
        "--after",
        "7",
    ]);
    assert!(matches!(
        cli.command,
        Some(Command::Room(RoomCommand::Log {
            after: 7,
            limit: None,
            ..
        }))
    ));
    parse(&[
        "room",
        "destroy",
        "r@c.a.test",
        "--tenant",
        "acme",
        "--alternate",
        "s@c.a.test",
    ]);
    assert!(
        Cli::try_parse_from(["heliograph", "room", "list"]).is_err(),
        "--tenant is required"
    );

    let cli = parse(&[
        "tenant",
        "set",
        "acme",
        "--muc",
        "subdomain=rooms",
        "--muc",
        "history_length=50",
        "--muc",
        r#"admins=["boss@a.test"]"#,
    ]);
    let Some(Command::Tenant(TenantCommand::Set { settings, .. })) = cli.command else {
        panic!("not tenant set");
    };
    let body = tenant::settings_body(&settings).unwrap();
    assert_eq!(
        body["muc"],
        serde_json::json!({"subdomain": "rooms", "history_length": 50, "admins": ["boss@a.test"]})
    );
    let bad = parse(&["tenant", "set", "acme", "--muc", "novalue"]);
    let Some(Command::Tenant(TenantCommand::Set { settings, .. })) = bad.command else {
        panic!("not tenant set");
    };
    assert!(tenant::settings_body(&settings).is_err());
}

#[test]
fn room_policy_option_becomes_json() {
    use super::args::TenantCommand;
    let body_of = |value: &str| {
        let cli = parse(&["tenant", "set", "acme", "--room-policy", value]);
        let Some(Command::Tenant(TenantCommand::Set { settings, .. })) = cli.command else {
            panic!("not tenant set");
        };
        tenant::settings_body(&settings).map(|b| b["room_policy"].clone())
    };
    assert_eq!(
        body_of("plugin:rooms").unwrap(),
        serde_json::json!({"plugin": "rooms", "fail_open": false})
    );
    assert_eq!(
        body_of("plugin:rooms:fail-open").unwrap(),
        serde_json::json!({"plugin": "rooms", "fail_open": true})
    );
    assert_eq!(body_of("none").unwrap(), serde_json::Value::Null);
    for bad in ["rooms", "plugin:", "plugin:rooms:open", "internal"] {
        let err = body_of(bad).unwrap_err().to_string();
        assert!(err.contains("--room-policy"), "{bad}: {err}");
    }
}

#[tokio::test]
async fn token_commands_mint_list_and_revoke() {
    let api = TestApi::start().await;
    let client = ApiClient::new(&api.url(), TOKEN).unwrap();
    client
        .request(
            hyper::Method::POST,
            "/tenants",
            Some(serde_json::json!({"name": "tok", "domains": ["tok.test"], "tokens": {}})),
        )
        .await
        .unwrap();
    run_line(&api, &["user", "add", "bob@tok.test", "--password", "pw"])
        .await
        .unwrap();
    let out = run_line(&api, &["token", "mint", "--tenant", "tok", "bob"])
        .await
        .unwrap();
    assert!(out.contains("access_token hgt.a."), "{out}");
    assert!(out.contains("refresh_token hgt.r."), "{out}");
    let listed = run_line(&api, &["token", "list", "bob@tok.test"])
        .await
        .unwrap();
    let id = listed.split_whitespace().next().unwrap().to_string();
    assert_eq!(id.len(), 32, "{listed}");
    let out = run_line(&api, &["token", "revoke", "bob@tok.test", "--id", &id])
        .await
        .unwrap();
    assert_eq!(out, format!("revoked refresh token {id} of bob@tok.test\n"));
    let err = run_line(&api, &["token", "revoke", "bob@tok.test", "--id", &id])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no refresh token"), "{err}");
    let out = run_line(&api, &["token", "revoke", "--tenant", "tok", "bob"])
        .await
        .unwrap();
    assert!(
        out.starts_with("revoked every token of bob@tok.test"),
        "{out}"
    );
    // Wrong domain for the tenant, a tenant without tokens, a user that does not exist.
    assert!(
        run_line(
            &api,
            &["token", "mint", "--tenant", "tok", "bob@example.com"]
        )
        .await
        .is_err()
    );
    let err = run_line(&api, &["token", "mint", "bob@example.com"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not issue tokens"), "{err}");
    let err = run_line(&api, &["token", "mint", "nobody@tok.test"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no such user"), "{err}");
}
