//! BOSH across nodes (issue 21, point 6): a session created on n1 is driven by requests
//! that alternate between n1's and n2's HTTP listeners, as a round-robin load balancer
//! would send them — authentication, restart, bind, messages both ways with a user on
//! n3, a long poll held through n2 that a message answers, terminate. n2 relays each
//! request for n1's `sid` to n1 and returns n1's answer. A `sid` whose node was killed
//! gets `item-not-found`, as an unknown one does on one node.

use base64::Engine as _;
use heliograph::xml::{Element, ns};

use super::{Held, chat, cluster, expect_body, wait_registry};
use crate::common::RawClient;
use crate::common::web::{Bosh, terminate_condition};

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

fn message_bodies(el: &Element) -> Vec<String> {
    el.children()
        .filter(|c| c.name() == "message")
        .filter_map(|c| c.child_text("body", ns::CLIENT))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bosh_requests_alternating_between_two_nodes_drive_one_session() {
    let Some(mut c) = cluster().await else {
        return;
    };
    let (n1_http, n2_http) = (c.nodes[0].http.clone(), c.nodes[1].http.clone());

    let mut b = Bosh::create(&n1_http, "wait='5' hold='1'").await;
    assert!(
        b.sid.starts_with("n1~"),
        "the sid names the node: {}",
        b.sid
    );
    // Authentication through n2.
    b.addr = n2_http.clone();
    let plain = base64::engine::general_purpose::STANDARD.encode("\0alice\0pw-a");
    b.send(&format!(
        "<auth xmlns='{SASL}' mechanism='PLAIN'>{plain}</auth>"
    ))
    .await;
    let outcome = b.next_matching(|e| e.ns() == SASL).await;
    assert!(outcome.is("success", SASL), "{outcome}");
    // The restart through n1, the bind through n2.
    b.addr = n1_http.clone();
    b.send_with("xmpp:restart='true' to='localhost'", "").await;
    let features = b.next_matching(|e| e.is("features", ns::STREAM)).await;
    assert!(features.has_child("bind", ns::BIND), "{features}");
    b.addr = n2_http.clone();
    b.send(
        "<iq xmlns='jabber:client' type='set' id='bind1'>\
         <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>",
    )
    .await;
    let bound = b.next_matching(|e| e.attr("id") == Some("bind1")).await;
    assert_eq!(bound.attr("type"), Some("result"), "{bound}");
    let alice_jid = "alice@localhost/web";
    // The session lives on n1, whatever listener the requests came through.
    wait_registry(&c.nodes[0], alice_jid, Held::Here).await;
    wait_registry(&c.nodes[1], alice_jid, Held::On("n1")).await;
    wait_registry(&c.nodes[2], alice_jid, Held::On("n1")).await;

    // Messages both ways with bob on n3: sent through n2, received through n1.
    let (mut bob, bob_jid) = RawClient::login(&c.nodes[2].starttls, "bob", "pw-b", Some("b")).await;
    b.send(&chat(&bob_jid, "via n2").to_string()).await;
    expect_body(&mut bob, "via n2").await;
    b.addr = n1_http.clone();
    bob.send(&chat(alice_jid, "to alice 1")).await;
    let got = b.next_matching(|e| e.name() == "message").await;
    assert_eq!(
        got.child_text("body", ns::CLIENT).as_deref(),
        Some("to alice 1")
    );

    // A figure for the report, not a check: an iq round trip through the session's node
    // and through the other one (relayed), median of 20 each, on a debug build.
    for (label, addr) in [("direct", &n1_http), ("relayed", &n2_http)] {
        b.addr = addr.clone();
        let mut took = Vec::new();
        for i in 0..20 {
            let id = format!("rtt-{label}-{i}");
            let started = std::time::Instant::now();
            b.send(&format!(
                "<iq xmlns='jabber:client' type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await;
            b.next_matching(|e| e.attr("id") == Some(id.as_str())).await;
            took.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        took.sort_by(f64::total_cmp);
        eprintln!(
            "BOSH iq round trip {label}: median {:.1} ms",
            took[took.len() / 2]
        );
    }

    // A long poll through n2, held on n1 until bob's message answers it.
    b.addr = n2_http.clone();
    let poll = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + super::DEADLINE;
        loop {
            let el = b.send("").await;
            assert!(terminate_condition(&el).is_none(), "terminated: {el}");
            if !message_bodies(&el).is_empty() {
                return (b, el);
            }
            assert!(tokio::time::Instant::now() < deadline, "no message came");
        }
    });
    bob.send(&chat(alice_jid, "to alice 2")).await;
    let (mut b, answered) = poll.await.unwrap();
    assert_eq!(message_bodies(&answered), ["to alice 2"]);

    // Terminate through n2: the session ends on n1 and leaves every registry.
    let end = b
        .send_with(
            "type='terminate'",
            "<presence type='unavailable' xmlns='jabber:client'/>",
        )
        .await;
    assert_eq!(end.attr("type"), Some("terminate"), "{end}");
    for n in &c.nodes {
        wait_registry(n, alice_jid, Held::Nowhere).await;
    }

    // A session whose node is killed: its sid is unknown to every other node.
    let mut orphan = Bosh::create(&n1_http, "wait='5' hold='1'").await;
    c.nodes[0].kill();
    orphan.addr = n2_http.clone();
    let answer = orphan.send("").await;
    assert_eq!(
        terminate_condition(&answer).as_deref(),
        Some("item-not-found"),
        "{answer}"
    );
}
