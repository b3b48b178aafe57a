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
    let body = tenant::settings_body(&settings, None).unwrap();
    assert_eq!(
        body["muc"],
        serde_json::json!({"subdomain": "rooms", "history_length": 50, "admins": ["boss@a.test"]})
    );
    let bad = parse(&["tenant", "set", "acme", "--muc", "novalue"]);
    let Some(Command::Tenant(TenantCommand::Set { settings, .. })) = bad.command else {
        panic!("not tenant set");
    };
    assert!(tenant::settings_body(&settings, None).is_err());
}

#[test]
fn room_policy_option_becomes_json() {
    use super::args::TenantCommand;
    let body_of = |value: &str| {
        let cli = parse(&["tenant", "set", "acme", "--room-policy", value]);
        let Some(Command::Tenant(TenantCommand::Set { settings, .. })) = cli.command else {
            panic!("not tenant set");
        };
        tenant::settings_body(&settings, None).map(|b| b["room_policy"].clone())
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

#[tokio::test]
async fn tenant_flags_turn_tokens_jwt_and_components_on_and_off() {
    let api = TestApi::start().await;
    // A tenant without tokens cannot mint; the error says how to turn them on.
    run_line(&api, &["tenant", "add", "acme", "--domain", "acme.test"])
        .await
        .unwrap();
    run_line(&api, &["user", "add", "bob@acme.test", "--password", "pw"])
        .await
        .unwrap();
    let err = run_line(&api, &["token", "mint", "--tenant", "acme", "bob"])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not issue tokens"), "{err}");
    assert!(err.contains("heliograph tenant set acme --tokens"), "{err}");

    // --tokens turns them on with the default lifetimes; a lifetime changes only itself.
    run_line(&api, &["tenant", "set", "acme", "--tokens"])
        .await
        .unwrap();
    let show = |api: &TestApi| {
        let url = api.url();
        async move {
            let out = run_line_at(&url, &["tenant", "show", "acme"]).await;
            serde_json::from_str::<serde_json::Value>(&out).unwrap()
        }
    };
    let t = show(&api).await;
    assert_eq!(
        t["tokens"],
        serde_json::json!({"access_ttl_secs": 3600, "refresh_ttl_secs": 2160000})
    );
    run_line(
        &api,
        &["tenant", "set", "acme", "--tokens-access-ttl-secs", "60"],
    )
    .await
    .unwrap();
    let t = show(&api).await;
    assert_eq!(
        t["tokens"],
        serde_json::json!({"access_ttl_secs": 60, "refresh_ttl_secs": 2160000})
    );
    let out = run_line(&api, &["token", "mint", "--tenant", "acme", "bob"])
        .await
        .unwrap();
    assert!(out.contains("access_token hgt.a."), "{out}");

    // JWT: keys, audience and the rest map to the API's `jwt` fields; a later change of
    // one field keeps the (redacted) keys.
    run_line(
        &api,
        &[
            "tenant",
            "set",
            "acme",
            "--jwt-key",
            "alg=HS256,kid=k1,secret=s3cret",
            "--jwt-audience",
            "video",
            "--jwt-leeway-secs",
            "5",
        ],
    )
    .await
    .unwrap();
    let t = show(&api).await;
    assert_eq!(t["jwt"]["keys"][0]["kid"], "k1");
    assert_eq!(t["jwt"]["keys"][0]["alg"], "HS256");
    assert_ne!(t["jwt"]["keys"][0]["secret"], "s3cret", "shown redacted");
    assert_eq!(t["jwt"]["audience"], serde_json::json!(["video"]));
    assert_eq!(t["jwt"]["leeway_secs"], 5);
    run_line(&api, &["tenant", "set", "acme", "--jwt-issuer", "me"])
        .await
        .unwrap();
    let t = show(&api).await;
    assert_eq!(t["jwt"]["issuer"], serde_json::json!(["me"]));
    assert_eq!(t["jwt"]["keys"][0]["kid"], "k1", "kept");
    assert_eq!(t["jwt"]["audience"], serde_json::json!(["video"]), "kept");

    // Components.
    run_line(
        &api,
        &[
            "tenant",
            "set",
            "acme",
            "--component",
            "domain=bot.acme.test,secret=s,name=Bot,hidden=true",
        ],
    )
    .await
    .unwrap();
    let t = show(&api).await;
    assert_eq!(
        t["components"][0]["domains"],
        serde_json::json!(["bot.acme.test"])
    );
    assert_eq!(t["components"][0]["name"], "Bot");
    assert_eq!(t["components"][0]["hidden"], true);

    // And off again.
    run_line(
        &api,
        &[
            "tenant",
            "set",
            "acme",
            "--no-tokens",
            "--no-jwt",
            "--no-components",
        ],
    )
    .await
    .unwrap();
    let t = show(&api).await;
    assert!(t.get("tokens").is_none_or(|v| v.is_null()), "{t}");
    assert!(t.get("jwt").is_none_or(|v| v.is_null()), "{t}");
    assert!(
        t.get("components")
            .is_none_or(|v| v.is_null() || v == &serde_json::json!([])),
        "{t}"
    );
    let err = run_line(&api, &["token", "mint", "--tenant", "acme", "bob"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not issue tokens"), "{err}");

    // `tenant add` takes the same flags.
    run_line(
        &api,
        &[
            "tenant",
            "add",
            "video",
            "--domain",
            "video.test",
            "--tokens-refresh-ttl-secs",
            "600",
            "--jwt-key",
            "alg=HS256,secret=x",
        ],
    )
    .await
    .unwrap();
    let out = run_line_at(&api.url(), &["tenant", "show", "video"]).await;
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(t["tokens"]["refresh_ttl_secs"], 600);
    assert_eq!(t["jwt"]["keys"][0]["alg"], "HS256");
    api.stop().await;
}

/// Like `run_line`, for a URL (the API outlives the borrow).
async fn run_line_at(url: &str, args: &[&str]) -> String {
    let mut full = vec!["--api", url, "--token", TOKEN];
    full.extend_from_slice(args);
    let cli = parse(&full);
    let client = ApiClient::new(url, TOKEN).unwrap();
    let mut out = Vec::new();
    run(&client, cli.command.unwrap(), None, &mut out)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn jwt_key_and_component_specs() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("k1.secret");
    std::fs::write(&secret, "x").unwrap();
    let k = tenant::jwt_key(&format!(
        "alg=HS256,kid=k1,secret_file={}",
        secret.display()
    ))
    .unwrap();
    assert_eq!(
        k,
        serde_json::json!({"alg": "HS256", "kid": "k1",
            "secret_file": std::fs::canonicalize(&secret).unwrap()})
    );
    for bad in [
        "kid=k1,secret=x",
        "alg=HS256,colour=red",
        "alg",
        "alg=HS256,alg=RS256",
    ] {
        assert!(tenant::jwt_key(bad).is_err(), "{bad}");
    }
    let c = tenant::component("domain=a.t,domain=b.t,plugin=echo,on_conflict=replace").unwrap();
    assert_eq!(
        c,
        serde_json::json!({"domains": ["a.t", "b.t"], "plugin": "echo", "on_conflict": "replace"})
    );
    for bad in ["secret=s", "domain=a.t,hidden=maybe", "domain=a.t,port=1"] {
        assert!(tenant::component(bad).is_err(), "{bad}");
    }
    // Contradictory flags are usage errors.
    for args in [
        &["tenant", "set", "a", "--tokens", "--no-tokens"][..],
        &["tenant", "set", "a", "--no-jwt", "--jwt-issuer", "x"],
        &[
            "tenant",
            "set",
            "a",
            "--no-components",
            "--component",
            "domain=x",
        ],
    ] {
        let err = Cli::try_parse_from(std::iter::once("heliograph").chain(args.iter().copied()))
            .unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}");
    }
}

#[test]
fn tenant_add_help_keeps_global_options_apart() {
    // What `heliograph tenant add --help` prints.
    let err = Cli::try_parse_from(["heliograph", "tenant", "add", "--help"]).unwrap_err();
    assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
    let help = err.to_string();
    let section = |name: &str| {
        help.find(&format!("\n{name}:"))
            .unwrap_or_else(|| panic!("no {name} section in:\n{help}"))
    };
    let global = section("Global options (any command)");
    let own = section("Tenant settings");
    let tokens = section("Server-issued tokens");
    let jwt = section("JWT login");
    // Each option sits in its own section: the command's before the global ones.
    let at = |opt: &str| help.find(opt).unwrap_or_else(|| panic!("{opt} missing"));
    for opt in ["--domain", "--max-sessions", "--muc"] {
        assert!(own < at(opt) && at(opt) < tokens, "{opt}:\n{help}");
    }
    assert!(tokens < at("--tokens-access-ttl-secs") && at("--tokens-access-ttl-secs") < jwt);
    for opt in ["--api", "--token-file", "--config"] {
        assert!(
            at(opt) > global,
            "{opt} outside the global section:\n{help}"
        );
    }
    assert!(global > jwt, "global options come last:\n{help}");
}

#[test]
fn client_finds_the_running_servers_token() {
    use super::discover::{RunningServer, parse_server_args};
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(parse_server_args(&args(&[])), Some((None, None)));
    assert_eq!(
        parse_server_args(&args(&[
            "serve",
            "--config",
            "c.toml",
            "--ready-file=r.json"
        ])),
        Some((Some("c.toml".into()), Some("r.json".into())))
    );
    assert_eq!(
        parse_server_args(&args(&["--config=c.toml"])),
        Some((Some("c.toml".into()), None))
    );
    assert_eq!(parse_server_args(&args(&["user", "list", "a.test"])), None);
    assert_eq!(
        parse_server_args(&args(&["--api", "x", "tenant", "list"])),
        None
    );

    // A server started in `cwd` with a relative config and data dir.
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cwd.path().join("config")).unwrap();
    std::fs::create_dir_all(cwd.path().join("var")).unwrap();
    std::fs::write(cwd.path().join("var/admin.token"), "servertoken\n").unwrap();
    std::fs::write(
        cwd.path().join("config/heliograph.toml"),
        "[general]\ndata_dir = \"var\"\n[listen.admin]\naddress = \"127.0.0.1:6002\"\n",
    )
    .unwrap();
    let server = RunningServer {
        pid: 42,
        cwd: cwd.path().to_path_buf(),
        config: None,
        ready_file: None,
    };
    let global = GlobalArgs::default();
    // (The test's own working directory has no config/heliograph.toml.)
    assert!(super::discover::default_config_here().is_none());
    assert_eq!(
        resolve_target_with(&global, || vec![server.clone()]).unwrap(),
        (
            "http://127.0.0.1:6002".to_string(),
            "servertoken".to_string()
        )
    );
    // Its ready file wins (the bound port, also for port 0).
    std::fs::write(
        cwd.path().join("ready.json"),
        r#"{"listeners":[{"kind":"admin","address":"127.0.0.1:6003"}],"admin_token_file":"var/admin.token","pid":42}"#,
    )
    .unwrap();
    let with_ready = RunningServer {
        ready_file: Some(cwd.path().join("ready.json")),
        ..server.clone()
    };
    assert_eq!(
        resolve_target_with(&global, || vec![with_ready]).unwrap(),
        (
            "http://127.0.0.1:6003".to_string(),
            "servertoken".to_string()
        )
    );
    // Several: an error naming them; none: the built-in defaults, said in the error.
    let other = RunningServer {
        pid: 43,
        ..server.clone()
    };
    let err = resolve_target_with(&global, || vec![server, other])
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 heliograph servers are running"), "{err}");
    assert!(err.contains("pid 42") && err.contains("pid 43"), "{err}");
    let err = resolve_target_with(&global, Vec::new)
        .unwrap_err()
        .to_string();
    assert!(err.contains("data/admin.token"), "{err}");
    assert!(err.contains("no running heliograph server found"), "{err}");
}
