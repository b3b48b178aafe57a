//! A feature registered from outside the services crate, through the hook registry
//! alone: it is advertised and served for the tenant that has it on, and for the tenant
//! that switched it off (`[tenants.NAME.features] toy = false`) it is neither.

use std::sync::Arc;
use std::time::Duration;

use crate::common::RawClient;
use heliograph::hooks::{Address, Feature, IqType, Registrar};
use heliograph::server::ServeOptions;
use heliograph::stanza;
use heliograph::xml::{Element, ns};

const TOY: &str = "urn:example:toy";

/// Answers `<toy/>` gets with the name of the tenant that served them.
struct Toy;

impl Feature for Toy {
    fn name(&self) -> &'static str {
        "toy"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        r.iq(IqType::Get, TOY, &[Address::Host], |req| {
            Box::pin(async move {
                let answer = Element::new("toy", TOY).with_text(req.tenant.name.clone());
                Some(stanza::iq_result_with(&req.iq, answer))
            })
        });
        r.disco_feature(Address::Host, TOY);
    }
}

/// Logs `user@domain` in with PLAIN over plain TCP and binds.
async fn login(addr: &str, user: &str, domain: &str) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    c.open_to(domain).await;
    let r = c.auth_plain(user, "pw").await;
    assert!(r.is("success", ns::SASL), "{r}");
    let features = c.open_to(domain).await;
    assert!(features.has_child("bind", ns::BIND), "{features}");
    c.send_raw("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        .await;
    let bound = c.next_matching(|e| e.attr("id") == Some("bind")).await;
    assert_eq!(bound.attr("type"), Some("result"), "{bound}");
    c
}

/// The disco#info features of `domain`, and the answer to a toy request.
async fn probe(c: &mut RawClient, domain: &str) -> (Vec<String>, Element) {
    c.send_raw(&format!(
        "<iq type='get' id='info' to='{domain}'><query xmlns='{}'/></iq>",
        ns::DISCO_INFO
    ))
    .await;
    let info = c.next_matching(|e| e.attr("id") == Some("info")).await;
    let features = info
        .child("query", ns::DISCO_INFO)
        .expect("a disco#info result")
        .children()
        .filter(|f| f.name() == "feature")
        .filter_map(|f| f.attr("var").map(str::to_string))
        .collect();
    c.send_raw(&format!(
        "<iq type='get' id='toy' to='{domain}'><toy xmlns='{TOY}'/></iq>"
    ))
    .await;
    let answer = c.next_matching(|e| e.attr("id") == Some("toy")).await;
    (features, answer)
}

#[test]
fn a_feature_from_outside_is_served_for_the_tenants_that_have_it_on() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let config = dir.path().join("heliograph.toml");
    std::fs::write(
        &config,
        format!(
            "[general]\nhosts = [\"localhost\"]\ndata_dir = \"{}\"\nlog_level = \"warn\"\n\
             [[listen.c2s]]\naddress = \"127.0.0.1:0\"\ntls = \"starttls\"\n\
             require_tls = false\nallow_plain_without_tls = true\n\
             [[listen.http]]\naddress = \"127.0.0.1:0\"\n\
             [[listen.component]]\naddress = \"127.0.0.1:0\"\n\
             [listen.admin]\naddress = \"127.0.0.1:0\"\n\
             [tenants.on]\ndomains = [\"on.test\"]\n\
             [tenants.off]\ndomains = [\"off.test\"]\n\
             [tenants.off.features]\ntoy = false\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let opts = ServeOptions {
        config: Some(config),
        ready_file: Some(ready.clone()),
    };
    let server = std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(heliograph::serve::serve_with(
                opts,
                vec![Arc::new(Toy)],
                async {
                    let _ = stop_rx.await;
                },
            ))
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        if server.is_finished() {
            panic!("the server stopped: {:?}", server.join());
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server never got ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready).unwrap()).unwrap();
    let address = |kind: &str| {
        doc["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["kind"] == kind)
            .unwrap()["address"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (c2s, admin) = (address("c2s"), address("admin"));
    let token = std::fs::read_to_string(doc["admin_token_file"].as_str().unwrap()).unwrap();

    tokio::runtime::Runtime::new().unwrap().block_on(async {
        for domain in ["on.test", "off.test"] {
            let r = crate::common::web::http(
                "POST",
                &format!("http://{admin}/api/v1/users/{domain}"),
                &[
                    ("authorization", &format!("Bearer {}", token.trim())),
                    ("content-type", "application/json"),
                ],
                r#"{"username":"user","password":"pw"}"#,
            )
            .await;
            assert!(r.status.is_success(), "{:?}", r.body);
        }
        let mut on = login(&c2s, "user", "on.test").await;
        let (features, answer) = probe(&mut on, "on.test").await;
        assert!(features.iter().any(|f| f == TOY), "{features:?}");
        assert!(
            features.iter().any(|f| f == ns::PING),
            "built-in features too: {features:?}"
        );
        assert_eq!(answer.attr("type"), Some("result"), "{answer}");
        assert_eq!(answer.child_text("toy", TOY).as_deref(), Some("on"));

        let mut off = login(&c2s, "user", "off.test").await;
        let (features, answer) = probe(&mut off, "off.test").await;
        assert!(!features.iter().any(|f| f == TOY), "{features:?}");
        assert!(features.iter().any(|f| f == ns::PING), "{features:?}");
        assert_eq!(answer.attr("type"), Some("error"), "{answer}");
        assert!(
            answer
                .child("error", ns::CLIENT)
                .is_some_and(|e| e.has_child("service-unavailable", ns::STANZAS_ERRORS)),
            "{answer}"
        );
    });
    let _ = stop_tx.send(());
    server.join().unwrap().unwrap();
}
