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

    // A message stored after that comes first to the next session: nothing delivered
    // before is left. (Removal follows the session's end closely, so a session that
    // raced it may see a few again, and removes them in turn.)
    let deadline = Instant::now() + Duration::from_secs(60);
    for attempt in 0.. {
        let sentinel = format!("sentinel{attempt}");
        store_offline(&mut server, std::iter::once(sentinel.clone()));
        let mut c = bob(&server, false).await;
        let mut before = 0usize;
        loop {
            let el = c.next_matching(|e| e.name() == "message").await;
            if body_of(&el).as_deref() == Some(sentinel.as_str()) {
                break;
            }
            before += 1;
        }
        close_cleanly(&mut c).await;
        if before == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{before} delivered messages are still stored"
        );
    }
}
