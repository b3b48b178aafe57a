//! The CLI finds a running server on its own: a server started in another directory with
//! a relative config, data dir and ready file is found through `/proc`, and a client
//! command gets its admin API and operator token from it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use heliograph::cli::args::GlobalArgs;
use heliograph::cli::client::ApiClient;
use heliograph::cli::discover::{running_servers, target_of};
use heliograph::cli::resolve_target_with;

#[tokio::test]
async fn client_commands_find_the_running_servers_token_from_anywhere() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(
        cwd.path().join("h.toml"),
        "[general]\nhosts = [\"localhost\"]\ndata_dir = \"var\"\n\
         [[listen.c2s]]\naddress = \"127.0.0.1:0\"\n\
         [[listen.http]]\naddress = \"127.0.0.1:0\"\n\
         [[listen.component]]\naddress = \"127.0.0.1:0\"\n\
         [listen.admin]\naddress = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    // Relative paths only: they mean something in the server's directory, not in ours.
    let mut child = Command::new(env!("CARGO_BIN_EXE_heliograph"))
        .current_dir(cwd.path())
        .args(["serve", "--config", "h.toml", "--ready-file", "ready.json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = cwd.path().join("ready.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    let doc: serde_json::Value = loop {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && let Ok(v) = serde_json::from_str(&text)
        {
            break v;
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        assert!(Instant::now() < deadline, "server not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let admin = doc["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "admin")
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    let token = std::fs::read_to_string(cwd.path().join("var/admin.token")).unwrap();

    let pid = child.id();
    let ours = running_servers()
        .into_iter()
        .filter(|s| s.pid == pid)
        .collect::<Vec<_>>();
    assert_eq!(ours.len(), 1, "the server was not found in /proc");
    let cwd_real = std::fs::canonicalize(cwd.path()).unwrap();
    assert_eq!(ours[0].cwd, cwd_real);
    assert_eq!(ours[0].config, Some(cwd_real.join("h.toml")));
    let found = target_of(&ours[0]).unwrap();
    assert_eq!(found.api, format!("http://{admin}"));
    assert!(found.source.contains(&pid.to_string()), "{}", found.source);

    // What a client command does without --api, --token or --config (the test's working
    // directory has no config/heliograph.toml): the server's own token, and it works.
    let (api, tok) = resolve_target_with(&GlobalArgs::default(), || ours).unwrap();
    assert_eq!(
        (api.as_str(), tok.as_str()),
        (found.api.as_str(), token.trim())
    );
    let client = ApiClient::new(&api, tok).unwrap();
    assert_eq!(
        client.list_users("localhost").await.unwrap(),
        Vec::<String>::new()
    );

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
}
