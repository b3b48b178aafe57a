//! The node: its NATS connection and the tasks that run the cluster — the publisher, the
//! heartbeat (and the check for dead nodes), the listener of every node's events and the
//! listener of this node's own subject (stanzas for its sessions, close requests, full
//! session lists asked for and received).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch};

use crate::bosh::BoshNodes;
use crate::components::RemoteComponents;
use crate::config::ClusterSettings;
use crate::core::router::{NotQueued, Receipt};
use crate::core::{Core, OfflineAnnouncer};
use crate::delivery::Deliveries;
use crate::handoff::HandOff;
use crate::inflight::{InFlight, Unconfirmed};
use crate::local::{LocalSessions, Snapshot};
use crate::outbox::{self, Outgoing};
use crate::peers::{Peers, Todo, now_us};
use crate::placement::ClusterPlacement;
use crate::queries::Queries;
use crate::readers::Readers;
use crate::wire::{self, Control, Direct, Event, Notice};
use crate::xml::Element;
use crate::xmpp::{Account, StreamErrorCondition};

/// How long an admin query to another node may take.
const QUERY_DEADLINE: Duration = Duration::from_secs(5);

/// Records in one part of a full session list (well under NATS's 1 MiB payload).
const LIST_PART: usize = 4_000;

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("NATS URL {url:?}: {source}")]
    Url { url: String, source: std::io::Error },
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("cannot subscribe on NATS: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
}

/// This node in the cluster.
pub struct Cluster {
    /// This node's name.
    pub node: String,
    incarnation: u64,
    core: Arc<Core>,
    local: Arc<LocalSessions>,
    peers: Arc<Mutex<Peers>>,
    out: mpsc::Sender<Outgoing>,
    connected: Arc<AtomicBool>,
    notices: broadcast::Sender<Notice>,
    client: async_nats::Client,
    /// Full lists being sent, by the node asking for them, part by part.
    lists: Mutex<HashMap<String, Arc<Snapshot>>>,
    /// The live nodes not draining (this one included, sorted) as last published by the
    /// heartbeat task: what rooms are placed by.
    members: watch::Sender<Arc<Vec<String>>>,
    /// Component domains held by other nodes' connections.
    components: RemoteComponents,
    /// Messages sent to other nodes and not yet confirmed.
    inflight: Arc<InFlight>,
    /// Which nodes read compact stanza frames.
    readers: Arc<Readers>,
    /// Messages other nodes numbered, handed to sessions here and not settled yet.
    deliveries: Arc<Deliveries>,
    /// Where clients reach this node (see `ClusterSettings::public_address`).
    address: Mutex<String>,
    /// What the other nodes' last heartbeats said about reaching them.
    reach: Mutex<HashMap<String, Reach>>,
    /// Sessions resumed on another node than theirs.
    handoff: HandOff,
    /// Admin queries between nodes.
    queries: Arc<Queries>,
}

/// How to send clients to another node, from its heartbeats.
#[derive(Debug, Clone, Default)]
struct Reach {
    address: String,
    sessions: u64,
    draining: bool,
}

/// `heliograph cluster status`: every node this one knows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClusterStatus {
    pub node: String,
    /// This node's connection to NATS is up.
    pub nats_connected: bool,
    pub nodes: Vec<NodeStatus>,
    /// The nodes MUC rooms are placed over: the live ones not draining (follows `nodes`
    /// within a heartbeat).
    pub room_nodes: Vec<String>,
}

/// One node in [`ClusterStatus`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeStatus {
    pub node: String,
    /// Sessions bound on it (its own count for this node, its last heartbeat's for others).
    pub sessions: u64,
    /// Its sessions this node's replica holds (equal to `sessions` once in sync).
    pub replicated: u64,
    /// The replica is in sync with it.
    pub synced: bool,
    /// Milliseconds since it was last heard from (0 for this node).
    pub last_heard_ms: u64,
    pub version: String,
    /// Where clients reach it (`host:port`; empty until its heartbeat said).
    pub address: String,
    /// It is draining.
    pub draining: bool,
}

fn condition_named(name: &str) -> StreamErrorCondition {
    use StreamErrorCondition::*;
    [
        Conflict,
        NotAuthorized,
        HostGone,
        PolicyViolation,
        SeeOtherHost,
        SystemShutdown,
        ResourceConstraint,
        ConnectionTimeout,
    ]
    .into_iter()
    .find(|c| c.name() == name)
    .unwrap_or(UndefinedCondition)
}

fn parse_jid(full: &str) -> Option<(Account, String)> {
    let j = jid::FullJid::new(full).ok()?;
    Some((
        Account::new(j.node()?.as_str(), j.domain().as_str()),
        j.resource().as_str().to_string(),
    ))
}

impl Cluster {
    /// Connects to NATS (retrying in the background while no server answers), installs
    /// the session watcher in the router and starts the node's tasks.
    pub async fn start(
        core: Arc<Core>,
        settings: &ClusterSettings,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let connected = Arc::new(AtomicBool::new(false));
        let flag = connected.clone();
        let node = settings.node.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("heliograph {node}"))
            .retry_on_initial_connect()
            .max_reconnects(None)
            // Quick to come back: a node away from NATS is declared dead by the others
            // after dead_after_ms.
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis((attempt as u64 * 100).clamp(50, 1000))
            })
            .event_callback(move |event| {
                let flag = flag.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("cluster: connected to NATS");
                            flag.store(true, Ordering::Relaxed);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("cluster: disconnected from NATS");
                            flag.store(false, Ordering::Relaxed);
                        }
                        other => tracing::info!(event = %other, "cluster: NATS event"),
                    }
                }
            })
            .connect(settings.nats.as_slice())
            .await?;
        let events = client.subscribe(wire::EVENTS).await?;
        let direct = client.subscribe(wire::node_subject(&node)).await?;
        let handoff_requests = client.subscribe(crate::handoff::subject(&node)).await?;
        let bosh_requests = client.subscribe(crate::bosh::subject(&node)).await?;
        let admin_queries = client.subscribe(crate::queries::subject(&node)).await?;

        let incarnation = now_us();
        let (out, rx) = mpsc::channel(outbox::CAPACITY);
        let inflight = Arc::new(InFlight::starting_at(incarnation));
        let readers = Arc::new(Readers::default());
        tokio::spawn(outbox::run(
            client.clone(),
            rx,
            node.clone(),
            inflight.clone(),
            readers.clone(),
        ));
        let deliveries = Deliveries::start(node.clone(), out.clone());
        let local = LocalSessions::new(node.clone(), &core, incarnation, out.clone());
        let dead_after = Duration::from_millis(settings.dead_after_ms);
        let peers = Arc::new(Mutex::new(Peers::new(
            core.clone(),
            node.clone(),
            dead_after,
            out.clone(),
        )));
        let handoff = HandOff::new(
            core.clone(),
            node.clone(),
            client.clone(),
            crate::handoff::NodeParts {
                out: out.clone(),
                peers: peers.clone(),
                local: local.clone(),
                readers: readers.clone(),
            },
            Duration::from_millis(settings.handoff_timeout_ms.max(1)),
        );
        let _ = core.remote_sessions.set(Arc::new(handoff.clone()));
        core.bosh_relays
            .set_relay(Arc::new(BoshNodes::new(node.clone(), client.clone())));
        let out_for_components = out.clone();
        let (members, members_rx) = watch::channel(Arc::new(vec![node.clone()]));
        let placement = ClusterPlacement::new(node.clone(), members_rx, out.clone());
        let _ = core.placement.set(Arc::new(placement));
        let queries = Queries::new(client.clone(), QUERY_DEADLINE);
        let cluster = Arc::new(Cluster {
            node,
            incarnation,
            core: core.clone(),
            local: local.clone(),
            peers,
            out,
            connected,
            notices: broadcast::channel(64).0,
            client,
            lists: Mutex::new(HashMap::new()),
            members,
            components: RemoteComponents::new(out_for_components),
            inflight,
            readers,
            deliveries,
            address: Mutex::new(settings.public_address.clone()),
            reach: Mutex::new(HashMap::new()),
            handoff: handoff.clone(),
            queries,
        });
        let _ = core.offline_announcer.set(Arc::new(OfflineNotices {
            node: cluster.node.clone(),
            out: cluster.out.clone(),
        }));
        core.router.set_watcher(local);
        tokio::spawn(cluster.clone().listen_events(events));
        tokio::spawn(cluster.clone().listen_direct(direct));
        tokio::spawn(handoff.serve(handoff_requests));
        tokio::spawn(cluster.queries.clone().serve(admin_queries));
        tokio::spawn(BoshNodes::serve(
            core.clone(),
            cluster.client.clone(),
            bosh_requests,
        ));
        tokio::spawn(
            cluster
                .clone()
                .heartbeat(Duration::from_millis(settings.heartbeat_ms)),
        );
        tracing::info!(node = %cluster.node, "cluster: node started");
        Ok(cluster)
    }

    /// Admin queries to other nodes, and the handler answering theirs.
    pub fn queries(&self) -> &Arc<Queries> {
        &self.queries
    }

    /// This node's own sessions as the cluster sees them.
    pub fn local(&self) -> &Arc<LocalSessions> {
        &self.local
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Change notices from any node (this one's included), for the layers above.
    pub fn notices(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// Tells every node (this one too) that something in the shared database changed.
    pub fn notify(&self, notice: Notice) {
        send_notice(&self.out, &self.node, notice);
    }

    /// Says goodbye (the others remove this node's sessions at once) and waits until
    /// NATS has it.
    pub async fn leave(&self) {
        let event = Event::Leave {
            node: self.node.clone(),
            incarnation: self.incarnation,
        };
        let _ = self.out.send(Outgoing::Event(event)).await;
        // The publisher runs in order: a flush after a short wait covers the goodbye.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
    }

    /// True while this node's NATS connection is up.
    pub fn nats_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The names of the live nodes, this one included, sorted.
    pub fn live_nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.peers().alive().map(|(n, _)| n.clone()).collect();
        nodes.push(self.node.clone());
        nodes.sort();
        nodes
    }

    /// Sets where clients reach this node, unless the configuration said it.
    pub fn default_public_address(&self, address: &str) {
        let mut a = self.address.lock().unwrap_or_else(|e| e.into_inner());
        if a.is_empty() {
            *a = address.to_string();
        }
    }

    /// The address of the live node, not draining, with the fewest sessions: where a
    /// draining node sends its clients (`see-other-host`). `None` when there is none.
    pub fn redirect_target(&self) -> Option<String> {
        let live = self.live_nodes();
        let reach = self.reach.lock().unwrap_or_else(|e| e.into_inner());
        live.iter()
            .filter(|n| **n != self.node)
            .filter_map(|n| reach.get(n))
            .filter(|r| !r.draining && !r.address.is_empty())
            .min_by_key(|r| r.sessions)
            .map(|r| r.address.clone())
    }

    /// The nodes rooms may be placed on: the live ones that are not draining.
    fn placeable_nodes(&self) -> Vec<String> {
        let live = self.live_nodes();
        let reach = self.reach.lock().unwrap_or_else(|e| e.into_inner());
        live.into_iter()
            .filter(|n| {
                if *n == self.node {
                    !self.core.drain.is_draining()
                } else {
                    !reach.get(n).is_some_and(|r| r.draining)
                }
            })
            .collect()
    }

    /// The live nodes as rooms are placed by, told each time they change (checked every
    /// heartbeat).
    pub fn membership(&self) -> watch::Receiver<Arc<Vec<String>>> {
        self.members.subscribe()
    }

    /// Publishes the live nodes when they changed.
    fn update_membership(&self) {
        let alive = self.live_nodes();
        self.components.retain_nodes(&self.core, &alive);
        self.handoff.forget_dead(&alive);
        self.reroute_unconfirmed(&alive);
        let live = self.placeable_nodes();
        self.members.send_if_modified(|cur| {
            if **cur == live {
                return false;
            }
            tracing::info!(nodes = ?live, "cluster: live nodes changed");
            *cur = Arc::new(live);
            true
        });
    }

    /// Routes again the messages dead nodes never confirmed: their sessions have left the
    /// routing table, so they go to the users' other sessions or offline storage.
    fn reroute_unconfirmed(&self, alive: &[String]) {
        let frames = self.inflight.take_dead(alive);
        if frames.is_empty() {
            return;
        }
        tracing::warn!(
            messages = frames.len(),
            "cluster: messages a dead node never confirmed are routed again"
        );
        self.reroute(frames);
    }

    /// Routes kept message frames again, in order, as messages to their account (its
    /// other sessions, or offline storage); a sending client still waiting for one waits
    /// until this routing is safe in turn.
    fn reroute(&self, frames: Vec<Unconfirmed>) {
        if frames.is_empty() {
            return;
        }
        metrics::counter!("heliograph_cluster_messages_rerouted_total")
            .increment(frames.len() as u64);
        let core = self.core.clone();
        tokio::spawn(async move {
            for (frame, settle) in frames {
                let Some((jid, stanza)) =
                    Direct::decode(&frame).ok().and_then(Direct::into_message)
                else {
                    continue;
                };
                if let Some((account, _)) = parse_jid(&jid) {
                    let again = crate::core::pipeline::message::redeliver(&core, &account, stanza);
                    crate::core::session::settle::scope(settle, again).await;
                }
            }
        });
    }

    /// Every node this one knows, with its sessions.
    pub fn status(&self) -> ClusterStatus {
        let (_, count, _) = self.local.version();
        let mut nodes = vec![NodeStatus {
            node: self.node.clone(),
            sessions: count,
            replicated: count,
            synced: true,
            last_heard_ms: 0,
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: self
                .address
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            draining: self.core.drain.is_draining(),
        }];
        let reach = self.reach.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for (name, p) in self.peers().alive() {
            let r = reach.get(name).cloned().unwrap_or_default();
            nodes.push(NodeStatus {
                node: name.clone(),
                sessions: p.reported.0,
                replicated: p.sessions.len() as u64,
                synced: p.synced,
                last_heard_ms: p.last_heard.elapsed().as_millis() as u64,
                version: p.reported.1.clone(),
                address: r.address,
                draining: r.draining,
            });
        }
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        ClusterStatus {
            node: self.node.clone(),
            nats_connected: self.nats_connected(),
            nodes,
            room_nodes: self.members.borrow().as_ref().clone(),
        }
    }

    async fn heartbeat(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (seq, count, digest) = self.local.version();
            let beat = Event::Heartbeat {
                node: self.node.clone(),
                incarnation: self.incarnation,
                seq,
                count,
                digest,
                version: env!("CARGO_PKG_VERSION").to_string(),
                components: crate::components::local_domains(&self.core),
                address: self
                    .address
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
                draining: self.core.drain.is_draining(),
                numbered: true,
                compact: true,
                moved_receipts: true,
            };
            let _ = self.out.try_send(Outgoing::Event(beat));
            let (nodes, remote) = {
                let mut peers = self.peers();
                peers.expire();
                (peers.alive().count(), peers.session_count())
            };
            self.update_membership();
            metrics::gauge!("heliograph_cluster_nodes").set((nodes + 1) as f64);
            metrics::gauge!("heliograph_cluster_remote_sessions").set(remote as f64);
            metrics::gauge!("heliograph_cluster_inflight_messages").set(self.inflight.len() as f64);
            metrics::gauge!("heliograph_cluster_delivering_messages")
                .set(self.deliveries.len() as f64);
            metrics::gauge!("heliograph_cluster_nats_connected").set(if self.nats_connected() {
                1.0
            } else {
                0.0
            });
        }
    }

    /// A notice of `node`: offline storage is handled here (one per stored message, too
    /// many for the control layer's channel), the rest goes to the layers above.
    fn apply_notice(&self, node: &str, notice: Notice) {
        match notice {
            // This node ran its own handlers when it stored the message.
            Notice::OfflineStored { .. } if node == self.node => {}
            Notice::OfflineStored { local, domain } => {
                let account = Account::new(local, domain);
                self.core.hooks.offline_stored(&self.core, &account);
            }
            notice => {
                let _ = self.notices.send(notice);
            }
        }
    }

    async fn listen_events(self: Arc<Self>, mut sub: async_nats::Subscriber) {
        while let Some(msg) = sub.next().await {
            let event: Event = match serde_json::from_slice(&msg.payload) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: event not understood");
                    continue;
                }
            };
            if let Event::Notice { node, notice } = event {
                self.apply_notice(&node, notice);
                continue;
            }
            let components = match &event {
                Event::Heartbeat {
                    node,
                    components,
                    address,
                    count,
                    draining,
                    numbered,
                    compact,
                    moved_receipts,
                    ..
                } => {
                    self.inflight.set_numbered(node, *numbered);
                    self.readers.heard(node, *compact, *moved_receipts);
                    let reach = Reach {
                        address: address.clone(),
                        sessions: *count,
                        draining: *draining,
                    };
                    self.reach
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(node.clone(), reach);
                    Some((node.clone(), components.clone()))
                }
                _ => None,
            };
            let announced = match &event {
                Event::Up { node, session, .. } => Some((node.clone(), session.jid.clone())),
                _ => None,
            };
            let todo = self.peers().on_event(event);
            if let Some((node, jid)) = announced {
                // After the replica took it: a session this node handed there is now
                // announced by its new node, and this node's record of it goes.
                self.handoff.announced(&node, &jid);
            }
            if let Some((node, components)) = components {
                // Only a node the registry counts alive (not one that said goodbye).
                let alive = self.peers().alive().any(|(n, _)| *n == node);
                if alive {
                    self.components.sync(&self.core, &node, &components);
                }
            }
            self.act(todo).await;
        }
    }

    async fn act(&self, todo: Todo) {
        let (node, part) = match todo {
            Todo::Nothing => return,
            Todo::AskFullList(node) => (node, 0),
            Todo::AskPart(node, part) => (node, part),
        };
        let ask = Control::SyncRequest {
            from: self.node.clone(),
            part,
        };
        let _ = self
            .out
            .send(Outgoing::Direct {
                node: node.into(),
                msg: Direct::Control(ask),
            })
            .await;
    }

    async fn listen_direct(self: Arc<Self>, mut sub: async_nats::Subscriber) {
        while let Some(msg) = sub.next().await {
            let all = match Direct::decode_all(&msg.payload) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: message not understood");
                    continue;
                }
            };
            for direct in all {
                self.on_direct(direct).await;
            }
        }
    }

    async fn on_direct(&self, direct: Direct) {
        match direct {
            Direct::Deliver { jid, stanza, .. } => self.deliver_local(&jid, stanza).await,
            Direct::Numbered {
                from,
                seq,
                jid,
                stanza,
                ..
            } => {
                let receipt = self.deliveries.receipt(&from, seq);
                self.deliver_numbered(&jid, stanza, receipt).await
            }
            Direct::Hosted { stanza } => self.deliver_hosted(stanza).await,
            Direct::Sent { from, seq } => {
                // The frames before this one are queued for their sessions (or stored):
                // they are taken, and their senders' clients need not wait any more.
                let ack = Control::Received {
                    node: self.node.clone(),
                    upto: seq,
                };
                let _ = self
                    .out
                    .send(Outgoing::Direct {
                        node: from.into(),
                        msg: Direct::Control(ack),
                    })
                    .await;
            }
            Direct::Control(Control::Received { node, upto }) => {
                self.inflight.taken_upto(&node, upto)
            }
            Direct::Control(Control::Delivered { node, seqs }) => {
                self.inflight.confirmed(&node, &seqs)
            }
            Direct::Control(Control::Returned { node, seqs }) => {
                let frames = self.inflight.returned(&node, &seqs);
                self.reroute(frames);
            }
            Direct::Control(Control::Close {
                jid,
                id,
                condition,
                text,
            }) => {
                if let Some((account, resource)) = parse_jid(&jid)
                    && let Some(entry) = self.core.router.resource(&account, &resource)
                    && !entry.is_remote()
                    && entry.id == id
                {
                    entry.close(condition_named(&condition), text.as_deref());
                }
            }
            Direct::Control(Control::SyncRequest { from, part }) => {
                self.send_list(from, part).await
            }
            Direct::Control(Control::Snapshot {
                node,
                incarnation,
                seq,
                part,
                parts,
                sessions,
            }) => {
                let todo = self
                    .peers()
                    .on_snapshot(&node, incarnation, seq, part, parts, sessions);
                self.act(todo).await;
            }
        }
    }

    /// A stanza another node routed to a session here: queued for it; a message for a
    /// session that ended meanwhile goes to the account's other sessions or offline. A
    /// session whose queue is full is waited for up to the write timeout, as a sender on
    /// this node would wait (this holds up the stanzas behind it: backpressure through
    /// NATS), and closed as a slow client after that.
    async fn deliver_local(&self, jid: &str, stanza: Element) {
        metrics::counter!("heliograph_cluster_stanzas_received_total").increment(1);
        let Some((account, resource)) = parse_jid(jid) else {
            return;
        };
        let stanza = match self.core.router.resource(&account, &resource) {
            Some(entry) if !entry.is_remote() => match entry.try_queue(stanza) {
                Ok(()) => return,
                Err(NotQueued::Closed(back)) => back,
                Err(NotQueued::Full(back)) => {
                    let limit = Duration::from_secs(self.core.config().c2s.write_timeout.max(1));
                    match entry.send_waiting(back, limit).await {
                        Ok(()) => return,
                        Err(back) => match entry.try_deliver(back) {
                            Ok(()) => return,
                            Err(back) => back,
                        },
                    }
                }
            },
            // A session moving here or moved on from here (see `handoff`).
            _ => match self.handoff.take(jid, stanza) {
                Ok(()) => return,
                Err(back) => back,
            },
        };
        if stanza.name() == "message" {
            let core = self.core.clone();
            tokio::spawn(async move {
                crate::core::pipeline::message::redeliver(&core, &account, stanza).await;
            });
        }
    }

    /// A message another node numbered for a session here: handed to the session with
    /// `receipt`, which tells that node when the client has it (or that the session ended
    /// first, and the sender routes its copy again: see `delivery`). A session whose
    /// queue is full is waited for up to the write timeout (backpressure through NATS,
    /// as in [`Cluster::deliver_local`]) and closed as a slow client after that. For a
    /// session gone meanwhile, the message is routed again here (the account's other
    /// sessions, or offline storage) and then confirmed.
    async fn deliver_numbered(&self, jid: &str, stanza: Element, receipt: Receipt) {
        metrics::counter!("heliograph_cluster_stanzas_received_total").increment(1);
        let Some((account, resource)) = parse_jid(jid) else {
            return;
        };
        match self.core.router.resource(&account, &resource) {
            Some(entry) if !entry.is_remote() && entry.is_alive() => {
                let limit = Duration::from_secs(self.core.config().c2s.write_timeout.max(1));
                // Not handed over: the receipt went with it and says `returned`.
                if entry.send_stored(stanza, receipt, limit).await.is_err() && entry.is_full() {
                    tracing::warn!(jid = %entry.full_jid, "session queue full, closing slow client");
                    entry.close(
                        StreamErrorCondition::PolicyViolation,
                        Some("too many queued stanzas"),
                    );
                }
            }
            // Awaited (rare): the batch's `Sent` is answered once this is stored or queued.
            _ => {
                crate::core::pipeline::message::redeliver(&self.core, &account, stanza).await;
                receipt.confirm();
            }
        }
    }

    /// A stanza another node forwarded because this node hosts its target (a room).
    async fn deliver_hosted(&self, stanza: Element) {
        metrics::counter!("heliograph_cluster_stanzas_received_total").increment(1);
        let domain = stanza
            .attr("to")
            .and_then(|t| jid::Jid::new(t).ok())
            .map(|j| j.domain().as_str().to_string());
        match domain.and_then(|d| self.core.hosted(&d)) {
            Some(hosted) => hosted.deliver_here(self.core.clone(), stanza).await,
            None => tracing::debug!("cluster: forwarded stanza for a domain not hosted here"),
        }
    }

    /// Sends `to` one part of the full list of this node's sessions: part 0 of a list
    /// taken now, later parts of the list kept for `to` since its part 0.
    async fn send_list(&self, to: String, part: u32) {
        let list = {
            let mut lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
            match lists.get(&to) {
                Some(list) if part > 0 => list.clone(),
                _ => {
                    let list = Arc::new(self.local.snapshot());
                    lists.insert(to.clone(), list.clone());
                    list
                }
            }
        };
        let parts = list.sessions.len().div_ceil(LIST_PART).max(1) as u32;
        let part = if part >= parts { 0 } else { part };
        let start = part as usize * LIST_PART;
        let end = (start + LIST_PART).min(list.sessions.len());
        let msg = Control::Snapshot {
            node: self.node.clone(),
            incarnation: self.incarnation,
            seq: list.seq,
            part,
            parts,
            sessions: list.sessions[start..end].to_vec(),
        };
        if part + 1 == parts {
            // The last part: the list is not needed any more.
            self.lists
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&to);
        }
        let _ = self
            .out
            .send(Outgoing::Direct {
                node: to.into(),
                msg: Direct::Control(msg),
            })
            .await;
    }
}

fn send_notice(out: &mpsc::Sender<Outgoing>, node: &str, notice: Notice) {
    let event = Event::Notice {
        node: node.to_string(),
        notice,
    };
    if out.try_send(Outgoing::Event(event)).is_err() {
        tracing::warn!("cluster: outgoing queue full; change notice not sent");
    }
}

/// Announces every message this node stores offline (see [`Notice::OfflineStored`]).
struct OfflineNotices {
    node: String,
    out: mpsc::Sender<Outgoing>,
}

impl OfflineAnnouncer for OfflineNotices {
    fn stored(&self, account: &Account) {
        let notice = Notice::OfflineStored {
            local: account.local.clone(),
            domain: account.domain.clone(),
        };
        send_notice(&self.out, &self.node, notice);
    }
}
