//! Call signaling against the real binary: XEP-0353 call messages to a bare JID ring
//! every available device of the callee, carbons copy them to both parties' other
//! devices, a missed call is stored offline and archived; Jingle iqs go unchanged between
//! full JIDs, with `service-unavailable` for an absent resource and for a bare JID (RFC
//! 6120 §8.4 / RFC 6121 §8.5.2.1.3: the server answers for the account, and serves no
//! Jingle); the tenant's `calls.require_relationship` refuses calls between strangers
//! with `forbidden`; a flood of proposals is slowed by the tenant's stanza rate while
//! another user's messages get through, none lost.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common;
use crate::external_services::{admin, condition, create_tenant, login};

use common::{RawClient, TestServer, ping_barrier};
use heliograph::xml::{Element, ns};

const JMI: &str = "urn:xmpp:jingle-message:0";
const JINGLE: &str = "urn:xmpp:jingle:1";
const CARBONS: &str = "urn:xmpp:carbons:2";
const MAM: &str = "urn:xmpp:mam:2";

fn propose(to: &str, id: &str) -> String {
    format!(
        "<message type='chat' to='{to}' id='m-{id}'><propose xmlns='{JMI}' id='{id}'>\
         <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'/></propose>\
         <store xmlns='urn:xmpp:hints'/></message>"
    )
}

fn jmi(to: &str, kind: &str, id: &str) -> String {
    format!(
        "<message type='chat' to='{to}' id='{kind}-{id}'><{kind} xmlns='{JMI}' id='{id}'/></message>"
    )
}

fn session_initiate(to: &str, id: &str, sid: &str) -> String {
    format!(
        "<iq type='set' to='{to}' id='{id}'><jingle xmlns='{JINGLE}' action='session-initiate' \
         initiator='x' sid='{sid}'><content creator='initiator' name='v'>\
         <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>\
         <payload-type id='96' name='VP8' clockrate='90000'/></description>\
         <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u' pwd='p'/>\
         </content></jingle></iq>"
    )
}

/// The JMI element (`propose`, ...) and its id in a message, unwrapped from a carbon.
fn call_of(m: &Element) -> Option<(String, String, Option<&'static str>)> {
    let (inner, carbon) = match m
        .children()
        .find(|c| c.ns() == CARBONS && matches!(c.name(), "sent" | "received"))
    {
        Some(w) => {
            let kind = if w.name() == "sent" {
                "sent"
            } else {
                "received"
            };
            let fwd = w.child("forwarded", "urn:xmpp:forward:0")?;
            (fwd.child("message", ns::CLIENT)?.clone(), Some(kind))
        }
        None => (m.clone(), None),
    };
    let call = inner.children().find(|c| c.ns() == JMI)?;
    Some((
        call.name().to_string(),
        call.attr("id")?.to_string(),
        carbon,
    ))
}

async fn available(c: &mut RawClient, priority: i8) {
    c.send_raw(&format!(
        "<presence><priority>{priority}</priority></presence>"
    ))
    .await;
    ping_barrier(c).await;
}

async fn enable_carbons(c: &mut RawClient) {
    c.send_raw(&format!(
        "<iq type='set' id='carbons'><enable xmlns='{CARBONS}'/></iq>"
    ))
    .await;
    let r = c.next_matching(|e| e.attr("id") == Some("carbons")).await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
}

async fn next_call(c: &mut RawClient) -> (String, String, Option<&'static str>) {
    let m = c
        .next_matching(|e| e.name() == "message" && call_of(e).is_some())
        .await;
    call_of(&m).unwrap()
}

#[tokio::test]
async fn call_messages_ring_every_device_and_carbons_copy_them() {
    let server = TestServer::start(&[("alice", "pw"), ("bob", "pw")], "");
    let addr = &server.starttls;
    let (mut phone, _) = RawClient::login(addr, "bob", "pw", Some("phone")).await;
    let (mut laptop, _) = RawClient::login(addr, "bob", "pw", Some("laptop")).await;
    let (mut watch, _) = RawClient::login(addr, "bob", "pw", Some("watch")).await;
    let (mut pc, pc_jid) = RawClient::login(addr, "alice", "pw", Some("pc")).await;
    let (mut tablet, _) = RawClient::login(addr, "alice", "pw", Some("tablet")).await;
    // Bob's phone has the higher priority; the watch is bound with carbons but never
    // available.
    available(&mut phone, 5).await;
    available(&mut laptop, 1).await;
    enable_carbons(&mut laptop).await;
    enable_carbons(&mut watch).await;
    available(&mut pc, 0).await;
    available(&mut tablet, 0).await;
    enable_carbons(&mut tablet).await;

    // A chat message goes to the highest priority only: the phone. A call rings both.
    pc.send_raw("<message type='chat' to='bob@localhost' id='hi'><body>hi</body></message>")
        .await;
    pc.send_raw(&propose("bob@localhost", "call1")).await;
    let first = phone
        .next_matching(|e| e.name() == "message" && e.attr("id") == Some("hi"))
        .await;
    assert!(first.to_string().contains("hi"));
    assert_eq!(
        next_call(&mut phone).await,
        ("propose".into(), "call1".into(), None)
    );
    // The laptop gets the propose itself, not a carbon, and before it the chat message
    // only as a carbon.
    let on_laptop = laptop
        .next_matching(|e| e.name() == "message" && e.attr("id") == Some("m-call1"))
        .await;
    assert_eq!(
        call_of(&on_laptop),
        Some(("propose".into(), "call1".into(), None))
    );
    // The watch (not available) sees the call as a received carbon.
    assert_eq!(
        next_call(&mut watch).await,
        ("propose".into(), "call1".into(), Some("received"))
    );
    // Alice's tablet sees what her pc sent.
    assert_eq!(
        next_call(&mut tablet).await,
        ("propose".into(), "call1".into(), Some("sent"))
    );

    // Bob's phone rings back to the pc and proceeds: the pc gets both, the laptop stops
    // ringing (sent carbons), the tablet learns the pc answered (received carbons).
    phone.send_raw(&jmi(&pc_jid, "ringing", "call1")).await;
    phone.send_raw(&jmi(&pc_jid, "proceed", "call1")).await;
    assert_eq!(next_call(&mut pc).await.0, "ringing");
    assert_eq!(next_call(&mut pc).await.0, "proceed");
    assert_eq!(
        next_call(&mut laptop).await,
        ("ringing".into(), "call1".into(), Some("sent"))
    );
    assert_eq!(
        next_call(&mut laptop).await,
        ("proceed".into(), "call1".into(), Some("sent"))
    );
    assert_eq!(
        next_call(&mut tablet).await,
        ("ringing".into(), "call1".into(), Some("received"))
    );
    assert_eq!(
        next_call(&mut tablet).await,
        ("proceed".into(), "call1".into(), Some("received"))
    );
    // And the end of the call: finish to the bare JID reaches every device of Alice.
    phone
        .send_raw(&jmi("alice@localhost", "finish", "call1"))
        .await;
    assert_eq!(next_call(&mut pc).await.0, "finish");
    assert_eq!(
        next_call(&mut tablet).await,
        ("finish".into(), "call1".into(), None)
    );
}

#[tokio::test]
async fn a_missed_call_is_stored_offline_and_archived() {
    let server = TestServer::start(&[("alice", "pw"), ("bob", "pw")], "");
    let (mut alice, _) = RawClient::login(&server.starttls, "alice", "pw", Some("pc")).await;
    // Bob has no session: the proposal and its retraction are stored.
    alice.send_raw(&propose("bob@localhost", "missed")).await;
    alice
        .send_raw(&jmi("bob@localhost", "retract", "missed"))
        .await;
    ping_barrier(&mut alice).await;

    let (mut bob, _) = RawClient::login(&server.starttls, "bob", "pw", Some("phone")).await;
    bob.send_raw("<presence/>").await;
    let first = bob
        .next_matching(|e| e.name() == "message" && call_of(e).is_some())
        .await;
    assert_eq!(call_of(&first).unwrap().0, "propose", "{first}");
    assert!(
        first.has_child("delay", "urn:xmpp:delay"),
        "delivered from offline storage: {first}"
    );
    assert_eq!(next_call(&mut bob).await.0, "retract");

    // The archive has the proposal too (written in the background: poll).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut round = 0;
    loop {
        round += 1;
        let id = format!("mam{round}");
        bob.send_raw(&format!(
            "<iq type='set' id='{id}'><query xmlns='{MAM}' queryid='{id}'/></iq>"
        ))
        .await;
        let mut found = false;
        loop {
            let e = bob.next().await;
            if e.name() == "iq" && e.attr("id") == Some(id.as_str()) {
                break;
            }
            if let Some(r) = e.child("result", MAM)
                && r.attr("queryid") == Some(id.as_str())
                && r.to_string().contains("propose")
                && r.to_string().contains("missed")
            {
                found = true;
            }
        }
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "the proposal was never archived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn jingle_iqs_go_between_full_jids_and_get_the_rfc_errors() {
    let server = TestServer::start(&[("alice", "pw"), ("bob", "pw")], "");
    let (mut alice, alice_jid) =
        RawClient::login(&server.starttls, "alice", "pw", Some("pc")).await;
    let (mut bob, bob_jid) = RawClient::login(&server.starttls, "bob", "pw", Some("phone")).await;

    alice
        .send_raw(&session_initiate(&bob_jid, "j1", "s1"))
        .await;
    let got = bob.next_matching(|e| e.attr("id") == Some("j1")).await;
    assert_eq!(got.attr("from"), Some(alice_jid.as_str()));
    let sent = session_initiate(&bob_jid, "j1", "s1");
    let limits = heliograph::xml::ParserLimits {
        max_stanza_bytes: 1 << 20,
        max_depth: 64,
    };
    let sent_el =
        heliograph::xml::parser::parse_element(sent.as_bytes(), ns::CLIENT, limits).unwrap();
    assert_eq!(
        got.child("jingle", JINGLE).unwrap().to_string(),
        sent_el.child("jingle", JINGLE).unwrap().to_string(),
        "the Jingle payload arrives unchanged"
    );
    bob.send_raw(&format!("<iq type='result' to='{alice_jid}' id='j1'/>"))
        .await;
    let ack = alice.next_matching(|e| e.attr("id") == Some("j1")).await;
    assert_eq!(ack.attr("type"), Some("result"), "{ack}");
    assert_eq!(ack.attr("from"), Some(bob_jid.as_str()));

    for (to, id) in [
        // A resource that is not online (RFC 6121 §8.5.3.2.1).
        ("bob@localhost/gone", "j2"),
        // The bare JID: the server answers for the account and serves no Jingle.
        ("bob@localhost", "j3"),
        // An account that does not exist.
        ("nobody@localhost/x", "j4"),
    ] {
        alice.send_raw(&session_initiate(to, id, "s2")).await;
        let r = alice.next_matching(|e| e.attr("id") == Some(id)).await;
        assert_eq!(r.attr("type"), Some("error"), "{r}");
        assert_eq!(
            condition(&r).as_deref(),
            Some("service-unavailable"),
            "{to}: {r}"
        );
    }
}

#[tokio::test]
async fn require_relationship_refuses_calls_between_strangers() {
    let server = TestServer::start(&[], "");
    let spec =
        json!({"name": "acme", "domains": ["acme.test"], "calls": {"require_relationship": true}});
    create_tenant(&server, spec, &["alice", "bob", "carol", "dave"]).await;
    let mut alice = login(&server, "acme.test", "alice", "r").await;
    let mut bob = login(&server, "acme.test", "bob", "r").await;
    let mut carol = login(&server, "acme.test", "carol", "r").await;
    let mut dave = login(&server, "acme.test", "dave", "r").await;
    for c in [&mut alice, &mut bob, &mut carol, &mut dave] {
        c.send_raw("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
            .await;
        c.next_matching(|e| e.attr("id") == Some("roster")).await;
        available(c, 0).await;
    }

    // Alice subscribes to Bob's presence and Bob approves: they are related.
    alice
        .send_raw("<presence to='bob@acme.test' type='subscribe'/>")
        .await;
    bob.next_matching(|e| e.name() == "presence" && e.attr("type") == Some("subscribe"))
        .await;
    bob.send_raw("<presence to='alice@acme.test' type='subscribed'/>")
        .await;
    alice
        .next_matching(|e| {
            e.name() == "iq"
                && (e.to_string().contains("subscription=\"to\"")
                    || e.to_string().contains("subscription='to'"))
        })
        .await;

    // Bob calls Alice (his roster has her as 'from'): delivered.
    bob.send_raw(&propose("alice@acme.test", "ok")).await;
    assert_eq!(
        next_call(&mut alice).await,
        ("propose".into(), "ok".into(), None)
    );

    // Carol is a stranger to Bob: her call message and her Jingle iq are forbidden.
    carol.send_raw(&propose("bob@acme.test", "no")).await;
    let r = carol.next_matching(|e| e.attr("id") == Some("m-no")).await;
    assert_eq!(r.attr("type"), Some("error"), "{r}");
    assert_eq!(condition(&r).as_deref(), Some("forbidden"), "{r}");
    carol
        .send_raw(&session_initiate("bob@acme.test/r", "jx", "sx"))
        .await;
    let r = carol.next_matching(|e| e.attr("id") == Some("jx")).await;
    assert_eq!(condition(&r).as_deref(), Some("forbidden"), "{r}");
    // A plain chat message between them is not the call policy's business.
    carol
        .send_raw("<message type='chat' to='bob@acme.test' id='chat'><body>hello</body></message>")
        .await;
    let got = bob
        .next_matching(|e| e.name() == "message" && e.attr("id") == Some("chat"))
        .await;
    assert!(call_of(&got).is_none());

    // Carol and Dave meet in a room: now they may call each other.
    carol
        .send_raw(&jmi("dave@acme.test", "propose", "before"))
        .await;
    let r = carol
        .next_matching(|e| e.attr("id") == Some("propose-before"))
        .await;
    assert_eq!(condition(&r).as_deref(), Some("forbidden"), "{r}");
    for (c, nick) in [(&mut carol, "carol"), (&mut dave, "dave")] {
        c.send_raw(&format!(
            "<presence to='meet@conference.acme.test/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ))
        .await;
        c.next_matching(|e| {
            e.name() == "presence"
                && e.attr("from") == Some(&format!("meet@conference.acme.test/{nick}"))
        })
        .await;
        if nick == "carol" {
            // The first occupant creates the room, locked until she accepts it as an
            // instant room (XEP-0045 §10.1.2).
            c.send_raw(
                "<iq type='set' id='instant' to='meet@conference.acme.test'>\
                 <query xmlns='http://jabber.org/protocol/muc#owner'>\
                 <x xmlns='jabber:x:data' type='submit'/></query></iq>",
            )
            .await;
            let r = c.next_matching(|e| e.attr("id") == Some("instant")).await;
            assert_eq!(r.attr("type"), Some("result"), "{r}");
        }
    }
    carol.send_raw(&propose("dave@acme.test", "room")).await;
    assert_eq!(
        next_call(&mut dave).await,
        ("propose".into(), "room".into(), None)
    );
    carol
        .send_raw(&session_initiate("dave@acme.test/r", "jr", "sr"))
        .await;
    let got = dave.next_matching(|e| e.attr("id") == Some("jr")).await;
    assert!(got.has_child("jingle", JINGLE), "{got}");
    // Through the room, as a private message to Dave's occupant JID.
    carol
        .send_raw(&propose("meet@conference.acme.test/dave", "pm"))
        .await;
    assert_eq!(next_call(&mut dave).await.1, "pm");

    // The policy is the tenant's to change: off, Carol may ring Bob.
    let (status, doc, _) = admin(
        &server,
        "PATCH",
        "/api/v1/tenants/acme",
        json!({"calls": {"require_relationship": false}}),
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["calls"]["require_relationship"], json!(false));
    carol.send_raw(&propose("bob@acme.test", "later")).await;
    assert_eq!(next_call(&mut bob).await.1, "later");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_propose_flood_is_slowed_and_others_get_through() {
    const FLOOD: usize = 200;
    const RATE: usize = 40;
    let server = TestServer::start(&[], "");
    let spec = json!({"name": "acme", "domains": ["acme.test"],
        "limits": {"stanza_rate": RATE, "stanza_burst": RATE}});
    create_tenant(&server, spec, &["mallory", "alice", "bob"]).await;
    let mut bob = login(&server, "acme.test", "bob", "r").await;
    available(&mut bob, 0).await;
    let mut mallory = login(&server, "acme.test", "mallory", "r").await;
    let mut alice = login(&server, "acme.test", "alice", "r").await;

    // Mallory writes every proposal at once; then Alice sends Bob a few messages.
    let started = Instant::now();
    let flood: String = (0..FLOOD)
        .map(|i| propose("bob@acme.test", &format!("f{i}")))
        .collect();
    mallory.send_raw(&flood).await;
    for i in 0..5 {
        alice
            .send_raw(&format!(
                "<message type='chat' to='bob@acme.test' id='a{i}'><body>a{i}</body></message>"
            ))
            .await;
    }
    let mut proposals = Vec::new();
    let mut from_alice = 0;
    let mut flood_seen_when_alice_done = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while proposals.len() < FLOOD || from_alice < 5 {
        assert!(
            Instant::now() < deadline,
            "got {} proposals, {from_alice} of Alice's",
            proposals.len()
        );
        let m = bob.next_matching(|e| e.name() == "message").await;
        if let Some((_, id, _)) = call_of(&m) {
            proposals.push(id);
        } else if m.attr("id").is_some_and(|id| id.starts_with('a')) {
            from_alice += 1;
            if from_alice == 5 {
                flood_seen_when_alice_done = Some(proposals.len());
            }
        }
    }
    let took = started.elapsed();
    eprintln!(
        "flood: {FLOOD} proposals at {RATE}/s delivered in {took:?}; Alice's 5 messages \
         arrived after {:?} of them",
        flood_seen_when_alice_done
    );
    // Every proposal arrived, in order.
    let expected: Vec<String> = (0..FLOOD).map(|i| format!("f{i}")).collect();
    assert_eq!(proposals, expected);
    // Alice was not stuck behind the flood: all her messages came before the flood was
    // through.
    let seen = flood_seen_when_alice_done.unwrap();
    assert!(
        seen < FLOOD,
        "Alice's messages waited for the whole flood ({seen})"
    );
    // The flood was shaped to the tenant's rate: at least (FLOOD - burst) / rate seconds.
    let floor = Duration::from_secs_f64((FLOOD - RATE) as f64 / RATE as f64 * 0.9);
    assert!(took >= floor, "not shaped: {took:?} < {floor:?}");
    // Mallory's session is still alive: her ping is answered once the flood is through.
    ping_barrier(&mut mallory).await;
}
