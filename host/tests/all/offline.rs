//! Offline messages survive a crash during their delivery: a message leaves storage only
//! once the client has it (acknowledged with stream management, or written before a
//! clean end of the session), so a `kill -9` mid-delivery loses none.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common;

use common::{RawClient, TestServer};
use heliograph::storage::{Account, OfflineMessage, Storage};
use heliograph::xml::Element;

const SM: &str = "urn:xmpp:sm:3";
/// Messages stored before the crash.
const STORED: usize = 5000;
/// Messages the first, slow session reads before the server is killed.
const READ_BEFORE_KILL: usize = 300;

fn body_of(el: &Element) -> Option<String> {
    el.children()
        .find(|c| c.name() == "body")
        .map(|b| b.text().to_string())
}

/// Puts `bodies` in bob's offline queue, with the server stopped.
fn store_offline(server: &mut TestServer, bodies: impl Iterator<Item = String>) {
    assert_eq!(server.stop(), Some(0), "{}", server.log_text());
    let storage = Storage::open_sled(&server.dir.path().join("data").join("db")).unwrap();
    let bob = Account::new("bob", "localhost");
    let stamp_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for body in bodies {
        let stanza = format!(
            "<message xmlns='jabber:client' from='alice@localhost/pc' to='bob@localhost' \
             type='chat'><body>{body}</body></message>"
        );
        storage
            .offline
            .push(&bob, &OfflineMessage { stanza, stamp_ms })
            .unwrap();
    }
    drop(storage);
    server.launch();
}

/// Bob logs in (stream management enabled if asked) and sends initial presence.
async fn bob(server: &TestServer, sm: bool) -> RawClient {
    let (mut c, _) = RawClient::login(&server.starttls, "bob", "pw", Some("phone")).await;
    if sm {
        c.send_raw(&format!("<enable xmlns='{SM}'/>")).await;
        let enabled = c.next_matching(|e| e.ns() == SM).await;
        assert_eq!(enabled.name(), "enabled", "{enabled}");
    }
    c.send_raw("<presence/>").await;
    c
}

/// Closes the stream and waits for the server's close: a clean end of the session.
async fn close_cleanly(c: &mut RawClient) {
    c.send_raw("</stream:stream>").await;
    while c
        .next_event()
        .await
        .is_some_and(|ev| !matches!(ev, heliograph::xml::StreamEvent::Close))
    {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_survive_a_kill_during_delivery() {
    let mut server = TestServer::start(&[("alice", "pw"), ("bob", "pw")], "")
        // The slow client is far behind: what it has not acknowledged must not end the
        // stream before the crash.
        .with_c2s("max_unacked = 100000\nmax_offline_messages = 100000");
    let started = Instant::now();
    store_offline(&mut server, (0..STORED).map(|i| format!("m{i}")));
    eprintln!("stored {STORED} messages in {:?}", started.elapsed());

    // A slow reader with stream management: it reads a little at a time and acknowledges
    // what it has read; the server is killed while most of the queue is on its way.
    let mut seen = HashSet::new();
    let mut slow = bob(&server, true).await;
    let mut read = 0u32;
    while seen.len() < READ_BEFORE_KILL {
        let el = slow.next().await;
        if el.name() == "r" && el.ns() == SM {
            slow.send_raw(&format!("<a xmlns='{SM}' h='{read}'/>"))
                .await;
            continue;
        }
        if el.name() != "message" {
            continue;
        }
        read += 1;
        if let Some(body) = body_of(&el) {
            seen.insert(body);
        }
        if read.is_multiple_of(50) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    server.kill();
    drop(slow);
    assert!(seen.len() < STORED, "the crash came during delivery");

    // After the restart, a client without stream management gets the rest.
    server.launch();
    let mut again = bob(&server, false).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut second = 0usize;
    while seen.len() < STORED {
        assert!(
            Instant::now() < deadline,
            "{} of {STORED} messages delivered across both sessions",
            seen.len()
        );
        let el = again.next().await;
        if el.name() == "message"
            && let Some(body) = body_of(&el)
        {
            second += 1;
            seen.insert(body);
        }
    }
    eprintln!("second session: {second} messages, every one of {STORED} delivered");
    // Written, then a clean end: now they leave storage.
    close_cleanly(&mut again).await;

    assert_storage_emptied(&mut server, Leave::Cleanly).await;
}

/// Answers a server ping (`true`), or says the element is something else.
async fn answer_ping(c: &mut RawClient, el: &Element) -> bool {
    if el.name() != "iq" || el.attr("type") != Some("get") {
        return false;
    }
    let id = el.attr("id").unwrap_or_default();
    c.send_raw(&format!("<iq type='result' id='{id}' to='localhost'/>"))
        .await;
    true
}

/// Until a ping of ours comes back with no server ping on the way: every ping the server
/// sent is answered, and the server has handled the answers.
async fn answer_pings_until_quiet(c: &mut RawClient) {
    for round in 0.. {
        let id = format!("quiet{round}");
        c.send_raw(&format!(
            "<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
        let mut answered = false;
        loop {
            let el = c.next().await;
            if el.attr("id") == Some(id.as_str()) {
                break;
            }
            answered |= answer_ping(c, &el).await;
        }
        if !answered {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_a_client_without_stream_management_read_leave_storage() {
    const N: usize = 200;
    let mut server = TestServer::start(&[("bob", "pw")], "");
    store_offline(&mut server, (0..N).map(|i| format!("m{i}")));
    // No stream management and no clean end (the connection is reset), but the client
    // answered the pings the server sent after the messages: it read them.
    let mut c = bob(&server, false).await;
    let mut seen = HashSet::new();
    while seen.len() < N {
        let el = c.next().await;
        if !answer_ping(&mut c, &el).await
            && let Some(body) = body_of(&el)
        {
            seen.insert(body);
        }
    }
    answer_pings_until_quiet(&mut c).await;
    c.reset();
    assert_storage_emptied(&mut server, Leave::AnsweringPingsThenReset).await;
}

/// How a checking session leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leave {
    /// Closes the stream and waits for the server's close.
    Cleanly,
    /// Answers every ping, then drops the connection with a reset.
    AnsweringPingsThenReset,
}

/// Waits until a message stored now is the first the next session gets: nothing
/// delivered before is left in storage. Each session leaves as `leave` says, which
/// confirms what it read in turn (removal follows a confirmation closely, so a session
/// that raced it may read a few again).
async fn assert_storage_emptied(server: &mut TestServer, leave: Leave) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for attempt in 0.. {
        let sentinel = format!("sentinel{attempt}");
        store_offline(server, std::iter::once(sentinel.clone()));
        let mut c = bob(server, false).await;
        let mut before = 0usize;
        loop {
            let el = c.next().await;
            if answer_ping(&mut c, &el).await {
                continue;
            }
            match body_of(&el) {
                Some(body) if body == sentinel => break,
                Some(_) => before += 1,
                None => {}
            }
        }
        match leave {
            Leave::Cleanly => close_cleanly(&mut c).await,
            Leave::AnsweringPingsThenReset => {
                answer_pings_until_quiet(&mut c).await;
                c.reset();
            }
        }
        if before == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{before} messages delivered before are still stored"
        );
    }
}
