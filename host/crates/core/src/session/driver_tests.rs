//! The driver against a scripted link and protocol: routing work that waits does not hold
//! up deliveries, work runs in order, what a failed write carried is rescued, and a
//! session may lose its link and carry on over a new one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::router::Transport;
use crate::sasl::ChannelBindings;
use crate::xml::{Element, ns};

/// What the fake link was asked to write, as text.
type Wire = Arc<Mutex<Vec<String>>>;

struct FakeLink {
    inbound: mpsc::Receiver<Inbound>,
    wire: Wire,
    /// Fail every write from now on.
    broken: Arc<std::sync::atomic::AtomicBool>,
    unsent: Vec<Element>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

fn fake_link() -> (FakeLink, mpsc::Sender<Inbound>, Wire) {
    let (tx, rx) = mpsc::channel(64);
    let wire = Wire::default();
    (
        FakeLink {
            inbound: rx,
            wire: wire.clone(),
            broken: Arc::default(),
            unsent: Vec::new(),
            closed: Arc::default(),
        },
        tx,
        wire,
    )
}

impl Link for FakeLink {
    fn transport(&self) -> Transport {
        Transport::Tcp
    }
    fn try_recv(&mut self) -> Option<Inbound> {
        self.inbound.try_recv().ok()
    }
    fn recv(&mut self) -> BoxFuture<'_, Inbound> {
        Box::pin(async move { self.inbound.recv().await.unwrap_or(Inbound::Gone) })
    }
    fn send(&mut self, actions: Vec<Action>) -> BoxFuture<'_, Result<Written, LinkError>> {
        Box::pin(async move {
            let mut written = Written::Done;
            for a in actions {
                match a {
                    Action::Send(el) | Action::SendKept(el, _) => {
                        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
                            self.unsent.push(el);
                            continue;
                        }
                        self.wire.lock().unwrap().push(el.to_string_in(ns::CLIENT));
                    }
                    Action::Close(_) => written = Written::Closed,
                    _ => {}
                }
            }
            if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(LinkError::Timeout);
            }
            Ok(written)
        })
    }
    fn start_tls<'a>(&'a mut self, _: Option<&'a str>) -> BoxFuture<'a, Option<ChannelBindings>> {
        Box::pin(async { None })
    }
    fn set_limits(&mut self, _: ParserLimits) {}
    fn keepalive(&mut self) -> BoxFuture<'_, Keepalive> {
        Box::pin(async { Keepalive::None })
    }
    fn close(&mut self, _: bool) -> BoxFuture<'_, ()> {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async {})
    }
    fn take_unsent(&mut self) -> Vec<Element> {
        std::mem::take(&mut self.unsent)
    }
}

/// What the fake protocol saw, for the test to check.
#[derive(Default)]
struct Seen {
    /// Names of stanzas handed to routing, in the order the work ran.
    routed: Vec<String>,
    rescued: Vec<String>,
    finished: bool,
    /// Mailbox stanzas recorded while detached.
    held: Vec<Element>,
    /// The `h` each attached link brought.
    attached: Vec<u32>,
    /// Handovers that failed.
    handover_failures: usize,
    /// Times the link was lost.
    links_lost: usize,
    /// Flow control events (`<a/>`) handled, by id.
    acks: Vec<String>,
    /// When the protocol's own deadline was handled (the `now` it was given).
    deadlines_handled: Vec<Instant>,
}

/// A stream that is established at once, routes every stanza as work gated on `gate`
/// (when set), and keeps its session for a new link when `resumable`.
struct FakeProtocol {
    seen: Arc<Mutex<Seen>>,
    gate: Option<Arc<tokio::sync::Semaphore>>,
    pending: Vec<Element>,
    closed: bool,
    resumable: bool,
    detached: bool,
    /// A stanza with id `resume` asks to hand the link to this mailbox.
    resume_to: Option<crate::router::Mailbox>,
    handover: Option<HandOver>,
    /// Its own deadline: at it, it writes `<message id='due'/>`.
    own_deadline: Option<Instant>,
}

impl FakeProtocol {
    fn new(seen: Arc<Mutex<Seen>>) -> Self {
        FakeProtocol {
            seen,
            gate: None,
            pending: Vec::new(),
            closed: false,
            resumable: false,
            detached: false,
            resume_to: None,
            handover: None,
            own_deadline: None,
        }
    }
}

impl Protocol for FakeProtocol {
    async fn on_event(&mut self, ev: StreamEvent) -> Vec<Action> {
        match ev {
            StreamEvent::Stanza(el) if el.attr("id") == Some("resume") => {
                if let Some(mailbox) = self.resume_to.clone() {
                    self.handover = Some(HandOver {
                        mailbox,
                        handled: 7,
                        sasl2: None,
                    });
                }
                Vec::new()
            }
            StreamEvent::Stanza(el) if el.name() == "a" => {
                let id = el.attr("id").unwrap_or_default().to_string();
                self.seen.lock().unwrap().acks.push(id);
                Vec::new()
            }
            StreamEvent::Stanza(el) => {
                self.pending.push(el);
                Vec::new()
            }
            StreamEvent::Close => {
                self.closed = true;
                vec![Action::Close(None)]
            }
            StreamEvent::Open(_) => Vec::new(),
        }
    }
    fn is_flow_control(&self, ev: &StreamEvent) -> bool {
        matches!(ev, StreamEvent::Stanza(el) if el.name() == "a")
    }
    fn on_mailbox(&mut self, msg: SessionMsg) -> Vec<Action> {
        match msg {
            SessionMsg::Stanza(el) => {
                if self.detached {
                    self.seen.lock().unwrap().held.push(el.clone());
                }
                vec![Action::Send(el)]
            }
            SessionMsg::Stored(stored) => vec![Action::Send(stored.0)],
            SessionMsg::Close(..) => {
                self.closed = true;
                vec![Action::Close(None)]
            }
            SessionMsg::Attach(_) | SessionMsg::Export(_) | SessionMsg::Settled(_) => Vec::new(),
        }
    }
    fn take_work(&mut self, _idle: bool) -> Option<Work> {
        if self.pending.is_empty() {
            return None;
        }
        let el = self.pending.remove(0);
        let (seen, gate) = (self.seen.clone(), self.gate.clone());
        Some(Box::pin(async move {
            if let Some(g) = gate {
                g.acquire().await.unwrap().forget();
            }
            let id = el.attr("id").unwrap_or_default().to_string();
            seen.lock().unwrap().routed.push(id);
        }))
    }
    fn fail(&mut self, _: StreamErrorCondition, _: Option<String>) -> Vec<Action> {
        self.closed = true;
        vec![Action::Close(None)]
    }
    fn is_established(&self) -> bool {
        true
    }
    fn is_closed(&self) -> bool {
        self.closed
    }
    fn domain(&self) -> Option<&str> {
        None
    }
    fn parser_limits(&self) -> ParserLimits {
        ParserLimits::default()
    }
    fn shaper(&self) -> Option<TokenBucket> {
        None
    }
    fn identity(&self) -> Option<super::super::protocol::Identity> {
        None
    }
    fn keepalive_ping(&mut self) -> Option<Element> {
        None
    }
    fn deadline(&self) -> Option<Instant> {
        self.own_deadline
    }
    fn on_deadline(&mut self, now: Instant) -> Vec<Action> {
        self.seen.lock().unwrap().deadlines_handled.push(now);
        self.own_deadline = None;
        vec![Action::Send(msg("due"))]
    }
    fn resumable(&self) -> bool {
        self.resumable && !self.closed
    }
    fn link_lost(&mut self) -> Option<Duration> {
        self.seen.lock().unwrap().links_lost += 1;
        self.detached = self.resumable;
        self.resumable.then_some(Duration::from_secs(30))
    }
    fn attached(&mut self, handled: u32, _: Option<(Element, Element)>) -> Vec<Action> {
        self.detached = false;
        let mut seen = self.seen.lock().unwrap();
        seen.attached.push(handled);
        let held = std::mem::take(&mut seen.held);
        held.into_iter().map(Action::Send).collect()
    }
    fn take_handover(&mut self) -> Option<HandOver> {
        self.handover.take()
    }
    fn handover_failed(&mut self, _: Option<(Element, Element)>) -> Vec<Action> {
        self.seen.lock().unwrap().handover_failures += 1;
        vec![Action::Send(msg("resume-failed"))]
    }
    async fn finish(&mut self) {
        self.seen.lock().unwrap().finished = true;
    }
    async fn rescue(&mut self, unsent: Vec<Element>, unread: Vec<Element>) {
        let mut seen = self.seen.lock().unwrap();
        for el in unsent.into_iter().chain(unread) {
            seen.rescued
                .push(el.attr("id").unwrap_or_default().to_string());
        }
    }
}

fn timing() -> Timing {
    Timing {
        negotiation_deadline: Instant::now() + Duration::from_secs(60),
        idle: Duration::from_secs(60),
        ping_interval: None,
        ping_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_secs(60),
    }
}

fn msg(id: &str) -> Element {
    Element::new("message", ns::CLIENT).with_attr("id", id)
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A protocol whose session outlives its link (as with stream management), and what it
/// records.
fn resumable_protocol() -> (Arc<Mutex<Seen>>, FakeProtocol) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut protocol = FakeProtocol::new(seen.clone());
    protocol.resumable = true;
    (seen, protocol)
}

/// Queues the message with id `id` for the session.
async fn mail(tx: &mpsc::Sender<crate::router::Mail>, id: &str) {
    tx.send(Box::new(SessionMsg::Stanza(msg(id))))
        .await
        .unwrap();
}

/// Waits until something written on `wire` contains `text`.
async fn written(what: &str, wire: &Wire, text: &str) {
    eventually(what, || {
        wire.lock().unwrap().iter().any(|w| w.contains(text))
    })
    .await;
}

/// The client closes its stream; the session ends.
async fn close_and_end(peer: &mpsc::Sender<Inbound>, task: tokio::task::JoinHandle<()>) {
    peer.send(Inbound::Event(StreamEvent::Close)).await.unwrap();
    task.await.unwrap();
}

/// A running driver whose protocol routes every stanza as work that waits on `gate`
/// (no permits yet), and the ends a test holds.
struct Gated {
    seen: Arc<Mutex<Seen>>,
    gate: Arc<tokio::sync::Semaphore>,
    /// What the peer sends.
    peer: mpsc::Sender<Inbound>,
    /// What the driver wrote.
    wire: Wire,
    /// The session's mailbox.
    tx: crate::router::Mailbox,
    /// Dropping it tells the driver to shut down: tests keep it bound.
    _stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn gated_driver() -> Gated {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut protocol = FakeProtocol::new(seen.clone());
    protocol.gate = Some(gate.clone());
    let (link, peer, wire) = fake_link();
    let (tx, rx) = mpsc::channel(16);
    let (stop, shutdown) = crate::shutdown::Shutdown::new();
    let task = tokio::spawn(Driver::new(protocol, Box::new(link), rx, timing(), shutdown).run());
    Gated {
        seen,
        gate,
        peer,
        wire,
        tx,
        _stop: stop,
        task,
    }
}

fn stanza(id: &str) -> Inbound {
    Inbound::Event(StreamEvent::Stanza(msg(id)))
}

#[tokio::test]
async fn reading_past_held_stanzas_stops_at_a_bound() {
    let Gated {
        seen,
        gate,
        peer,
        wire: _wire,
        tx: _tx,
        _stop,
        task,
    } = gated_driver();
    // Enough stanzas to fill the routing work and the held events, then an ack.
    let n = MAX_PENDING_WORK + MAX_HELD_INBOUND;
    for i in 0..n {
        peer.send(stanza(&format!("m{i}"))).await.unwrap();
    }
    peer.send(ack("behind")).await.unwrap();
    // The link's buffer (64) holds what the driver does not read: the ack stays there.
    eventually("the driver to stop reading", || peer.capacity() == 64 - 1).await;
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        seen.lock().unwrap().acks.is_empty(),
        "not read past the bound"
    );
    gate.add_permits(1000);
    eventually("everything handled", || {
        let s = seen.lock().unwrap();
        s.routed.len() == n && s.acks == ["behind"]
    })
    .await;
    drop(peer);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

fn ack(id: &str) -> Inbound {
    Inbound::Event(StreamEvent::Stanza(
        Element::new("a", "urn:xmpp:sm:3").with_attr("id", id),
    ))
}

#[tokio::test]
async fn flow_control_is_handled_while_routing_is_backed_up_and_stanzas_keep_their_order() {
    let Gated {
        seen,
        gate,
        peer,
        wire: _wire,
        tx: _tx,
        _stop,
        task,
    } = gated_driver();
    // Routing is stuck (a recipient that does not read, say) and the peer has sent
    // more than the driver takes while it is.
    let ids: Vec<String> = (0..MAX_PENDING_WORK + 3).map(|i| format!("m{i}")).collect();
    for id in &ids {
        peer.send(stanza(id)).await.unwrap();
    }
    // It still acknowledges what it receives: that is handled at once, even behind
    // stanzas that wait for their turn (acks and stanzas are counted apart).
    peer.send(ack("a1")).await.unwrap();
    eventually("the first ack", || seen.lock().unwrap().acks == ["a1"]).await;
    peer.send(stanza("late")).await.unwrap();
    peer.send(ack("a2")).await.unwrap();
    eventually("the second ack", || {
        seen.lock().unwrap().acks == ["a1", "a2"]
    })
    .await;
    assert!(
        seen.lock().unwrap().routed.is_empty(),
        "routing still stuck"
    );
    gate.add_permits(1000);
    eventually("all routed", || {
        seen.lock().unwrap().routed.len() == ids.len() + 1
    })
    .await;
    let mut expected = ids.clone();
    expected.push("late".into());
    assert_eq!(seen.lock().unwrap().routed, expected);
    drop(peer);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
}

#[tokio::test]
async fn routing_work_that_waits_holds_up_neither_deliveries_nor_its_order() {
    let Gated {
        seen,
        gate,
        peer,
        wire,
        tx,
        _stop,
        task,
    } = gated_driver();
    // The peer sends three stanzas; routing the first waits (slow storage, say).
    for id in ["a", "b", "c"] {
        peer.send(stanza(id)).await.unwrap();
    }
    // Meanwhile others' messages reach the peer.
    mail(&tx, "in-1").await;
    written("the delivery", &wire, "in-1").await;
    assert!(seen.lock().unwrap().routed.is_empty(), "nothing routed yet");
    // Once routing goes on, the stanzas are routed in the order they came.
    gate.add_permits(3);
    eventually("routing", || seen.lock().unwrap().routed.len() == 3).await;
    assert_eq!(seen.lock().unwrap().routed, ["a", "b", "c"]);
    close_and_end(&peer, task).await;
    assert!(seen.lock().unwrap().finished);
}

#[tokio::test]
async fn the_protocols_own_deadline_wakes_it_once_when_due() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut protocol = FakeProtocol::new(seen.clone());
    let due = Instant::now() + Duration::from_millis(200);
    protocol.own_deadline = Some(due);
    let (link, _peer, wire) = fake_link();
    let (tx, rx) = mpsc::channel(16);
    let (_stop, shutdown) = crate::shutdown::Shutdown::new();
    let task = tokio::spawn(Driver::new(protocol, Box::new(link), rx, timing(), shutdown).run());
    // Mail meanwhile neither loses the deadline nor fires it early.
    mail(&tx, "m1").await;
    written("the deadline's write", &wire, "due").await;
    mail(&tx, "m2").await;
    written("the mail after it", &wire, "m2").await;
    let handled = seen.lock().unwrap().deadlines_handled.clone();
    assert_eq!(handled.len(), 1, "once: it cleared its deadline");
    assert!(handled[0] >= due, "not before it was due");
    task.abort();
}

#[tokio::test]
async fn what_a_failed_write_carried_and_the_queue_held_is_rescued() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (link, peer, _wire) = fake_link();
    let broken = link.broken.clone();
    let (tx, rx) = mpsc::channel(16);
    let (_stop, shutdown) = crate::shutdown::Shutdown::new();
    let task = tokio::spawn(
        Driver::new(
            FakeProtocol::new(seen.clone()),
            Box::new(link),
            rx,
            timing(),
            shutdown,
        )
        .run(),
    );
    broken.store(true, std::sync::atomic::Ordering::SeqCst);
    mail(&tx, "m1").await;
    task.await.unwrap();
    drop(peer);
    let seen = seen.lock().unwrap();
    assert!(seen.finished);
    assert_eq!(seen.rescued, ["m1"]);
}

#[tokio::test]
async fn a_session_outlives_its_link_and_goes_on_over_a_new_one() {
    let (seen, protocol) = resumable_protocol();
    let (link, peer, first_wire) = fake_link();
    let (tx, rx) = mpsc::channel(16);
    let (_stop, shutdown) = crate::shutdown::Shutdown::new();
    let task = tokio::spawn(Driver::new(protocol, Box::new(link), rx, timing(), shutdown).run());
    mail(&tx, "before").await;
    eventually("the first delivery", || {
        first_wire.lock().unwrap().len() == 1
    })
    .await;
    // The connection drops without a close: the session stays.
    peer.send(Inbound::Gone).await.unwrap();
    eventually("the link lost", || seen.lock().unwrap().links_lost == 1).await;
    mail(&tx, "while-away").await;
    eventually("the message held", || seen.lock().unwrap().held.len() == 1).await;
    assert!(!seen.lock().unwrap().finished);
    // A new link attaches: what was held goes out on it, then traffic goes on.
    let (link2, peer2, second_wire) = fake_link();
    tx.send(attach(link2, 3)).await.unwrap();
    eventually("the replay", || second_wire.lock().unwrap().len() == 1).await;
    assert!(second_wire.lock().unwrap()[0].contains("while-away"));
    mail(&tx, "after").await;
    eventually("the next delivery", || {
        second_wire.lock().unwrap().len() == 2
    })
    .await;
    peer2.send(stanza("x")).await.unwrap();
    eventually("routing on the new link", || {
        seen.lock().unwrap().routed == ["x"]
    })
    .await;
    close_and_end(&peer2, task).await;
    assert!(seen.lock().unwrap().finished);
    assert_eq!(
        first_wire.lock().unwrap().len(),
        1,
        "nothing went to the dead link"
    );
    assert_eq!(seen.lock().unwrap().attached, [3]);
}

#[tokio::test]
async fn a_link_that_arrived_in_a_batch_whose_write_failed_is_still_attached() {
    let (seen, protocol) = resumable_protocol();
    let (link, _peer, _wire) = fake_link();
    link.broken.store(true, std::sync::atomic::Ordering::SeqCst);
    let (tx, rx) = mpsc::channel(16);
    // Both wait before the driver runs: the link comes in the stanza's batch, and is held
    // back for the next wake-up; the batch's write then fails and the link is lost.
    mail(&tx, "m1").await;
    let (link2, peer2, second_wire) = fake_link();
    tx.send(attach(link2, 3)).await.unwrap();
    let (_stop, shutdown) = crate::shutdown::Shutdown::new();
    let task = tokio::spawn(Driver::new(protocol, Box::new(link), rx, timing(), shutdown).run());
    eventually("the link lost", || seen.lock().unwrap().links_lost == 1).await;
    eventually("the held-back link attached", || {
        seen.lock().unwrap().attached == [3]
    })
    .await;
    mail(&tx, "after").await;
    written("a delivery on the new link", &second_wire, "after").await;
    close_and_end(&peer2, task).await;
}

fn attach(link: FakeLink, handled: u32) -> crate::router::Mail {
    Box::new(SessionMsg::Attach(Box::new(Attach {
        link: Box::new(link),
        handled,
        sasl2: None,
    })))
}

#[tokio::test]
async fn a_new_link_replaces_one_that_is_still_open() {
    let (seen, protocol) = resumable_protocol();
    let (link, _peer, first_wire) = fake_link();
    let first_closed = link.closed.clone();
    let (tx, rx) = mpsc::channel(16);
    let (_stop, shutdown) = crate::shutdown::Shutdown::new();
    let task = tokio::spawn(Driver::new(protocol, Box::new(link), rx, timing(), shutdown).run());
    mail(&tx, "one").await;
    eventually("the first delivery", || {
        first_wire.lock().unwrap().len() == 1
    })
    .await;
    // The old connection is half-dead (still open, nobody reading): a new one takes over.
    let (link2, peer2, second_wire) = fake_link();
    tx.send(attach(link2, 1)).await.unwrap();
    eventually("the old link closed", || {
        first_closed.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    mail(&tx, "two").await;
    written("delivery on the new link", &second_wire, "two").await;
    assert_eq!(first_wire.lock().unwrap().len(), 1);
    assert_eq!(seen.lock().unwrap().attached, [1]);
    close_and_end(&peer2, task).await;
}

#[tokio::test]
async fn a_resumable_session_that_stops_answering_waits_instead_of_closing() {
    let (seen, protocol) = resumable_protocol();
    let (link, _peer, first_wire) = fake_link();
    let (tx, rx) = mpsc::channel(16);
    let (_stop, shutdown) = crate::shutdown::Shutdown::new();
    let mut t = timing();
    t.idle = Duration::from_millis(50);
    let task = tokio::spawn(Driver::new(protocol, Box::new(link), rx, t, shutdown).run());
    // The idle timeout passes (a phone that lost its network says nothing).
    eventually("the link given up", || seen.lock().unwrap().links_lost == 1).await;
    mail(&tx, "held").await;
    eventually("the stanza held", || seen.lock().unwrap().held.len() == 1).await;
    assert!(first_wire.lock().unwrap().is_empty(), "no close written");
    assert!(!seen.lock().unwrap().finished);
    let (link2, peer2, second_wire) = fake_link();
    tx.send(attach(link2, 0)).await.unwrap();
    eventually("the replay", || second_wire.lock().unwrap().len() == 1).await;
    close_and_end(&peer2, task).await;
}

#[tokio::test]
async fn a_resuming_stream_hands_its_link_over_and_reads_no_further() {
    // The session to resume: its mailbox receives the new link.
    let (target_tx, mut target_rx) = mpsc::channel(4);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut protocol = FakeProtocol::new(seen.clone());
    protocol.resume_to = Some(target_tx);
    let (link, peer, _wire) = fake_link();
    let (_tx, rx) = mpsc::channel(16);
    let (_stop, shutdown) = crate::shutdown::Shutdown::new();
    let task = tokio::spawn(Driver::new(protocol, Box::new(link), rx, timing(), shutdown).run());
    // `<resume/>` and a stanza right behind it: the stanza is for the resumed session.
    peer.send(stanza("resume")).await.unwrap();
    peer.send(stanza("after-resume")).await.unwrap();
    let Some(SessionMsg::Attach(attach)) = target_rx.recv().await.map(|m| *m) else {
        panic!("no link handed over");
    };
    assert_eq!(attach.handled, 7);
    task.await.unwrap();
    let mut link = attach.link;
    let next = link.recv().await;
    assert!(
        matches!(&next, Inbound::Event(StreamEvent::Stanza(el)) if el.attr("id") == Some("after-resume")),
        "{next:?}"
    );
    let seen = seen.lock().unwrap();
    assert!(seen.routed.is_empty(), "the new stream routed nothing");
    assert_eq!(seen.handover_failures, 0);
}

#[tokio::test]
async fn a_handover_to_a_session_that_ended_keeps_the_link() {
    let (target_tx, target_rx) = mpsc::channel(4);
    drop(target_rx);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut protocol = FakeProtocol::new(seen.clone());
    protocol.resume_to = Some(target_tx);
    let (link, peer, wire) = fake_link();
    let (_tx, rx) = mpsc::channel(16);
    let (_stop, shutdown) = crate::shutdown::Shutdown::new();
    let task = tokio::spawn(Driver::new(protocol, Box::new(link), rx, timing(), shutdown).run());
    peer.send(stanza("resume")).await.unwrap();
    written("the failure written", &wire, "resume-failed").await;
    // The stream goes on as a fresh one.
    peer.send(stanza("next")).await.unwrap();
    eventually("routing goes on", || {
        seen.lock().unwrap().routed == ["next"]
    })
    .await;
    close_and_end(&peer, task).await;
    assert_eq!(seen.lock().unwrap().handover_failures, 1);
}
