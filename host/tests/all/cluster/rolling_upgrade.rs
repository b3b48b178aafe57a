//! A rolling upgrade (docs/CLUSTER.md, "Rolling upgrade"): each node in turn is drained
//! (its clients are sent to a live node with `see-other-host`), stopped and started
//! again, while two clients with stream management chat through it all. No message a
//! server acknowledged is lost. Run twice: restarting this build, and upgrading from the
//! previous version's binary to this one.

use std::collections::BTreeSet;

use heliograph::xml::StreamEvent;

use super::*;

const SM: &str = "urn:xmpp:sm:3";

/// How a client's stream ended.
enum Moved {
    /// `see-other-host`: to this address.
    To(String),
    /// Closed otherwise: to any live node.
    Anywhere,
}

/// A client with stream management that follows `see-other-host` and, on its new
/// stream, sends again what its old server had not acknowledged (as a client does whose
/// resumption failed, XEP-0198 §5).
struct Chatter {
    user: &'static str,
    password: &'static str,
    c: RawClient,
    streams: usize,
    /// Bodies sent on this stream, in order (the only stanzas it sends once enabled, so
    /// the server's `h` counts exactly these).
    sent: Vec<String>,
    /// How many of `sent` the server acknowledged.
    acked: usize,
    /// Stanzas received on this stream since `<enabled/>` (the client's `h`).
    handled: u32,
    /// Bodies some server acknowledged.
    acknowledged: BTreeSet<String>,
    /// Message bodies received, on every stream.
    got: Vec<String>,
}

impl Chatter {
    async fn connect(addr: &str, user: &'static str, password: &'static str) -> Chatter {
        let (c, _) = RawClient::login(addr, user, password, Some("r1")).await;
        let mut chatter = Chatter {
            user,
            password,
            c,
            streams: 1,
            sent: Vec::new(),
            acked: 0,
            handled: 0,
            acknowledged: BTreeSet::new(),
            got: Vec::new(),
        };
        chatter.enable().await;
        chatter
    }

    /// Logs in again on `addr`.
    async fn open(&mut self, addr: &str) {
        self.streams += 1;
        let resource = format!("r{}", self.streams);
        let (c, _) = RawClient::login(addr, self.user, self.password, Some(&resource)).await;
        self.c = c;
        self.enable().await;
    }

    /// Available, with stream management enabled.
    async fn enable(&mut self) {
        // Presence first: it is not counted, and the offline messages it brings are
        // read below.
        self.c.send_raw("<presence/>").await;
        self.c.send_raw(&format!("<enable xmlns='{SM}'/>")).await;
        loop {
            let el = self.c.next().await;
            if el.is("enabled", SM) {
                break;
            }
            assert!(!el.is("failed", SM), "{el}");
            self.on_element(&el).await;
        }
        self.sent.clear();
        self.acked = 0;
        self.handled = 0;
    }

    async fn send(&mut self, to: &str, body: String) {
        self.c.send(&chat(to, &body)).await;
        self.sent.push(body);
    }

    async fn ask_ack(&mut self) {
        self.c.send_raw(&format!("<r xmlns='{SM}'/>")).await;
    }

    /// Handles one element; returns how the stream ended, if it did.
    async fn on_element(&mut self, el: &Element) -> Option<Moved> {
        if el.is("error", ns::STREAM) {
            return Some(match el.child("see-other-host", ns::STREAMS_ERRORS) {
                Some(host) => Moved::To(host.text()),
                None => Moved::Anywhere,
            });
        }
        if el.is("r", SM) {
            let h = self.handled;
            self.c.send_raw(&format!("<a xmlns='{SM}' h='{h}'/>")).await;
            return None;
        }
        if el.is("a", SM) {
            let h: usize = el.attr("h").and_then(|h| h.parse().ok()).unwrap();
            self.acked = self.acked.max(h.min(self.sent.len()));
            self.acknowledged
                .extend(self.sent[..self.acked].iter().cloned());
            return None;
        }
        if matches!(el.name(), "message" | "presence" | "iq") {
            self.handled += 1;
        }
        if el.name() == "iq"
            && el.attr("type") == Some("get")
            && el.child("ping", "urn:xmpp:ping").is_some()
        {
            let id = el.attr("id").unwrap_or_default();
            self.c
                .send_raw(&format!("<iq type='result' id='{id}'/>"))
                .await;
        }
        if el.name() == "message"
            && let Some(b) = body_of(el)
        {
            self.got.push(b);
        }
        None
    }

    /// Reads for a moment; follows the client to another node when its stream ends
    /// there, sending again what was not acknowledged.
    async fn pump(&mut self, live: &[String]) {
        let until = Instant::now() + Duration::from_millis(150);
        let moved = loop {
            let left = until.saturating_duration_since(Instant::now());
            let Ok(ev) = tokio::time::timeout(left, self.c.next_event()).await else {
                return;
            };
            match ev {
                Some(StreamEvent::Stanza(el)) => {
                    if let Some(m) = self.on_element(&el).await {
                        break m;
                    }
                }
                Some(StreamEvent::Open(_)) => {}
                _ => break Moved::Anywhere,
            }
        };
        let addr = match moved {
            Moved::To(addr) => addr,
            Moved::Anywhere => live[0].clone(),
        };
        let again: Vec<String> = self.sent[self.acked..].to_vec();
        self.open(&addr).await;
        let to = if self.user == "alice" {
            "bob@localhost"
        } else {
            "alice@localhost"
        };
        for body in again {
            self.send(to, body).await;
        }
    }
}

/// Alice and bob chat, `rounds` messages each way, acknowledgements asked after each.
async fn chat_rounds(
    alice: &mut Chatter,
    bob: &mut Chatter,
    next: &mut usize,
    rounds: usize,
    live: &[String],
) {
    for _ in 0..rounds {
        alice.send("bob@localhost", format!("a2b-{next}")).await;
        bob.send("alice@localhost", format!("b2a-{next}")).await;
        *next += 1;
        alice.ask_ack().await;
        bob.ask_ack().await;
        alice.pump(live).await;
        bob.pump(live).await;
    }
}

/// Each node of three in turn: drained while alice and bob (stream management) chat,
/// its clients moved to a live node, the process gone by itself (exit 0) once it holds
/// no session, started again and counted live by the others. Then every message a server acknowledged to alice has
/// reached bob, and the other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_loses_no_acknowledged_message() {
    let Some(c) = cluster().await else {
        return;
    };
    roll(c, "rolling restart").await;
}

/// The same from the previous version (`HELIOGRAPH_PREV_BIN`, built by
/// tests/previous_version.sh; skipped without it unless `HELIOGRAPH_REQUIRE_PREV_BIN` is
/// set): all three nodes start on it and each is replaced by this build in turn, so for a
/// while nodes of both versions route, hand over and confirm messages between each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_from_the_previous_version_loses_no_acknowledged_message() {
    let Some(previous) = previous_version() else {
        return;
    };
    let Some(c) = cluster_as(Some(&previous)).await else {
        return;
    };
    roll(c, "rolling upgrade from the previous version").await;
}

/// The previous version's binary, if the run has one.
fn previous_version() -> Option<std::path::PathBuf> {
    match std::env::var_os("HELIOGRAPH_PREV_BIN") {
        Some(path) => Some(path.into()),
        None if std::env::var_os("HELIOGRAPH_REQUIRE_PREV_BIN").is_some() => {
            panic!("HELIOGRAPH_REQUIRE_PREV_BIN is set but HELIOGRAPH_PREV_BIN is not")
        }
        None => {
            eprintln!("skipped: no previous version (HELIOGRAPH_PREV_BIN)");
            None
        }
    }
}

/// Drains, stops and starts again (on this build) each node of `c` in turn while alice
/// and bob chat; `what` names the run in the figures printed.
async fn roll(mut c: Cluster, what: &str) {
    let addresses =
        |c: &Cluster| -> Vec<String> { c.nodes.iter().map(|n| n.starttls.clone()).collect() };
    for i in 0..3 {
        let others: Vec<&TestServer> = (0..3).filter(|j| *j != i).map(|j| &c.nodes[j]).collect();
        wait_addresses(&c.nodes[i], &others).await;
    }
    let mut alice = Chatter::connect(&c.nodes[0].starttls, "alice", "pw-a").await;
    let mut bob = Chatter::connect(&c.nodes[1].starttls, "bob", "pw-b").await;
    let mut next = 0;
    let started = Instant::now();
    for k in 0..3 {
        let live: Vec<String> = addresses(&c)
            .into_iter()
            .enumerate()
            .filter(|(j, _)| *j != k)
            .map(|(_, a)| a)
            .collect();
        chat_rounds(&mut alice, &mut bob, &mut next, 10, &live).await;
        let (status, text) = api(&c.nodes[k], "POST", "/api/v1/drain", "").await;
        assert_eq!(status, 202, "{text}");
        // The drain ends when the node holds no session: the process exits by itself.
        let deadline = Instant::now() + DEADLINE;
        let code = loop {
            if let Some(code) = c.nodes[k].wait_exit(Duration::from_millis(10)) {
                break code;
            }
            assert!(
                Instant::now() < deadline,
                "n{} never finished its drain",
                k + 1
            );
            chat_rounds(&mut alice, &mut bob, &mut next, 1, &live).await;
        };
        assert_eq!(code, 0, "n{}: {}", k + 1, c.nodes[k].log_text());
        // The new version starts.
        c.nodes[k].set_binary(std::path::Path::new(env!("CARGO_BIN_EXE_heliograph")));
        c.nodes[k].launch();
        wait_room_nodes(&c.nodes.iter().collect::<Vec<_>>(), &["n1", "n2", "n3"]).await;
        for i in 0..3 {
            let others: Vec<&TestServer> =
                (0..3).filter(|j| *j != i).map(|j| &c.nodes[j]).collect();
            wait_addresses(&c.nodes[i], &others).await;
        }
        chat_rounds(&mut alice, &mut bob, &mut next, 5, &addresses(&c)).await;
    }
    // Everything sent is acknowledged in the end, and everything acknowledged arrived,
    // on the clients' sessions: a message stored offline for a client while its new
    // session was being bound on another node is announced by the storing node and
    // delivered by the new one (docs/CLUSTER.md, "Routing").
    let live = addresses(&c);
    let deadline = Instant::now() + DEADLINE;
    while alice.acked < alice.sent.len()
        || bob.acked < bob.sent.len()
        || !alice.acknowledged.iter().all(|b| bob.got.contains(b))
        || !bob.acknowledged.iter().all(|b| alice.got.contains(b))
    {
        assert!(
            Instant::now() < deadline,
            "lost: to bob {:?}, to alice {:?}",
            alice
                .acknowledged
                .iter()
                .filter(|b| !bob.got.contains(b))
                .take(10)
                .collect::<Vec<_>>(),
            bob.acknowledged
                .iter()
                .filter(|b| !alice.got.contains(b))
                .take(10)
                .collect::<Vec<_>>()
        );
        alice.ask_ack().await;
        bob.ask_ack().await;
        alice.pump(&live).await;
        bob.pump(&live).await;
    }
    let twice = |got: &[String]| got.len() - got.iter().collect::<BTreeSet<_>>().len();
    eprintln!(
        "{what} of 3 nodes in {} ms: {next} messages each way, all acknowledged and \
         delivered; alice used {} streams, bob {}; delivered twice: {} to bob, {} to alice",
        started.elapsed().as_millis(),
        alice.streams,
        bob.streams,
        twice(&bob.got),
        twice(&alice.got),
    );
}
