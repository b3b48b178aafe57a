//! Message carbons across nodes (issue 21, point 3): alice's devices on n1 and n2 enable
//! carbons, her watch on n3 does not; bob is on n3. Every node learns from the session
//! registry which of alice's sessions enabled carbons, so the node handling a message
//! copies it to her devices wherever they are: bob → alice/n1 gives alice/n2 a
//! `<received/>` copy (made on n3, bob's node), alice/n1 → bob gives alice/n2 a `<sent/>`
//! copy (made on n1). The watch gets no copy, nor does a message marked `<private/>`
//! reach alice/n2; once alice/n2 disables carbons, the registries say so and it gets none.

use std::time::Instant;

use heliograph::xml::Element;

use super::{DEADLINE, Held, api, body_of, chat, cluster, expect_body, wait_registry};
use crate::common::{RawClient, TestServer};

const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";

async fn set_carbons(c: &mut RawClient, on: bool) {
    let what = if on { "enable" } else { "disable" };
    c.send_raw(&format!(
        "<iq type='set' id='carbons-{what}'><{what} xmlns='{CARBONS}'/></iq>"
    ))
    .await;
    let id = format!("carbons-{what}");
    let r = c
        .next_matching(move |e| e.attr("id") == Some(id.as_str()))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
}

/// Whether `server`'s registry says `jid` has carbons on.
async fn carbons_on(server: &TestServer, jid: &str) -> bool {
    let (status, text) = api(server, "GET", "/api/v1/sessions", "").await;
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["jid"] == jid)
        .and_then(|s| s["flags"].as_array())
        .is_some_and(|f| f.iter().any(|x| x == "carbons"))
}

/// Waits until every server's registry has `jid`'s carbons `on`.
async fn wait_carbons(servers: &[TestServer], jid: &str, on: bool) {
    let deadline = Instant::now() + DEADLINE;
    for server in servers {
        while carbons_on(server, jid).await != on {
            assert!(
                Instant::now() < deadline,
                "{} never had carbons {on} for {jid}",
                server.admin
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The message a carbon of kind `kind` wraps, if `el` is one.
fn carbon_of<'a>(el: &'a Element, kind: &str) -> Option<&'a Element> {
    el.child(kind, CARBONS)?
        .child("forwarded", FORWARD)?
        .child("message", heliograph::xml::ns::CLIENT)
}

/// Reads `c`'s messages until one with `body` (a direct message, not a copy); returns
/// the carbons seen on the way whose copied message `copied` accepts.
async fn carbons_until(
    c: &mut RawClient,
    body: &str,
    copied: impl Fn(&Element) -> bool,
) -> Vec<Element> {
    let mut copies = Vec::new();
    loop {
        let m = c.next_matching(|el| el.name() == "message").await;
        if body_of(&m).as_deref() == Some(body) {
            return copies;
        }
        let inner = carbon_of(&m, "sent").or_else(|| carbon_of(&m, "received"));
        if inner.is_some_and(&copied) {
            copies.push(m);
        }
    }
}

fn any(_: &Element) -> bool {
    true
}

fn with_body(body: &'static str) -> impl Fn(&Element) -> bool {
    move |el| body_of(el).as_deref() == Some(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carbons_reach_devices_on_other_nodes() {
    let Some(c) = cluster().await else {
        return;
    };
    let (mut phone, phone_jid) =
        RawClient::login(&c.nodes[0].starttls, "alice", "pw-a", Some("phone")).await;
    let (mut laptop, laptop_jid) =
        RawClient::login(&c.nodes[1].starttls, "alice", "pw-a", Some("laptop")).await;
    let (mut watch, watch_jid) =
        RawClient::login(&c.nodes[2].starttls, "alice", "pw-a", Some("watch")).await;
    let (mut bob, bob_jid) = RawClient::login(&c.nodes[2].starttls, "bob", "pw-b", Some("b")).await;
    for client in [&mut phone, &mut laptop, &mut watch, &mut bob] {
        client.send_raw("<presence/>").await;
    }
    set_carbons(&mut phone, true).await;
    set_carbons(&mut laptop, true).await;
    let owners = [
        (&phone_jid, "n1"),
        (&laptop_jid, "n2"),
        (&watch_jid, "n3"),
        (&bob_jid, "n3"),
    ];
    for (jid, owner) in owners {
        for (server, name) in c.nodes.iter().zip(["n1", "n2", "n3"]) {
            let want = if name == owner {
                Held::Here
            } else {
                Held::On(owner)
            };
            wait_registry(server, jid, want).await;
        }
    }
    wait_carbons(&c.nodes, &phone_jid, true).await;
    wait_carbons(&c.nodes, &laptop_jid, true).await;
    wait_carbons(&c.nodes, &watch_jid, false).await;

    // bob (n3) → alice/phone (n1): alice/laptop (n2) gets a <received/> copy.
    bob.send(&chat(&phone_jid, "to the phone")).await;
    expect_body(&mut phone, "to the phone").await;
    let copy = laptop
        .next_matching(|el| el.name() == "message" && carbon_of(el, "received").is_some())
        .await;
    let inner = carbon_of(&copy, "received").unwrap();
    assert_eq!(body_of(inner).as_deref(), Some("to the phone"));
    assert_eq!(inner.attr("from"), Some(bob_jid.as_str()));
    assert_eq!(copy.attr("from"), Some("alice@localhost"));

    // alice/phone (n1) → bob (n3): alice/laptop (n2) gets a <sent/> copy.
    phone.send(&chat(&bob_jid, "from the phone")).await;
    expect_body(&mut bob, "from the phone").await;
    let copy = laptop
        .next_matching(|el| el.name() == "message" && carbon_of(el, "sent").is_some())
        .await;
    let inner = carbon_of(&copy, "sent").unwrap();
    assert_eq!(body_of(inner).as_deref(), Some("from the phone"));
    assert_eq!(inner.attr("to"), Some(bob_jid.as_str()));

    // bob → alice/laptop (n2): the phone (n1) gets the <received/> copy.
    bob.send(&chat(&laptop_jid, "to the laptop")).await;
    expect_body(&mut laptop, "to the laptop").await;
    let copy = phone
        .next_matching(|el| el.name() == "message" && carbon_of(el, "received").is_some())
        .await;
    assert_eq!(
        body_of(carbon_of(&copy, "received").unwrap()).as_deref(),
        Some("to the laptop")
    );

    // A <private/> message is not copied: the laptop's next message is the marker that
    // follows it on the same path (bob's node to the laptop's).
    bob.send_raw(&format!(
        "<message to='{phone_jid}' type='chat' id='p'><body>private</body>\
         <private xmlns='{CARBONS}'/></message>"
    ))
    .await;
    expect_body(&mut phone, "private").await;
    bob.send(&chat(&laptop_jid, "after private")).await;
    let copies = carbons_until(&mut laptop, "after private", with_body("private")).await;
    assert!(
        copies.is_empty(),
        "a private message was copied: {copies:?}"
    );

    // The watch never enabled carbons: what reaches it before the markers sent after
    // all of the above (from n3 and from n1) holds no copy.
    bob.send(&chat(&watch_jid, "marker from bob")).await;
    let copies = carbons_until(&mut watch, "marker from bob", any).await;
    assert!(copies.is_empty(), "the watch got copies: {copies:?}");
    phone.send(&chat(&watch_jid, "marker from the phone")).await;
    let copies = carbons_until(&mut watch, "marker from the phone", any).await;
    assert!(copies.is_empty(), "the watch got copies: {copies:?}");

    // The laptop disables carbons: once every registry says so, a message between the
    // phone and bob gives it nothing (checked by a marker behind it on the same path).
    set_carbons(&mut laptop, false).await;
    wait_carbons(&c.nodes, &laptop_jid, false).await;
    phone.send(&chat(&bob_jid, "not copied")).await;
    expect_body(&mut bob, "not copied").await;
    phone.send(&chat(&laptop_jid, "after disable")).await;
    let copies = carbons_until(&mut laptop, "after disable", with_body("not copied")).await;
    assert!(
        copies.is_empty(),
        "a disabled device got copies: {copies:?}"
    );
}
