//! The other nodes as this one sees them: who is alive, and a replica of each one's
//! sessions, kept in the router as entries whose queue leads to their node.
//!
//! A node's events are numbered; they are applied in order. A node heard for the first
//! time (or after it was declared dead, or with a new incarnation), a gap in its
//! numbers, or a heartbeat whose digest differs from the replica's, makes this node ask
//! it for its full list; events arriving meanwhile wait, and those the list already
//! holds are skipped. The list replaces the replica (entries it lacks are removed): after
//! a NATS outage or a netsplit the replicas heal with no ghost and no duplicate. A node
//! not heard from for `dead_after` is dead: its entries leave the router at once, so
//! messages to its users go to offline storage.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::core::Core;
use crate::core::router::{SessionEntry, UserFacts};
use crate::outbox::PeerSink;
use crate::wire::{Event, SessionRecord};
use crate::xml::Element;
use crate::xmpp::{Account, StreamErrorCondition};

/// Events kept while a node's full list is on its way; beyond this the list is asked
/// for again once it has come.
const MAX_WAITING_EVENTS: usize = 100_000;

/// What this node knows of another.
pub struct Peer {
    pub incarnation: u64,
    pub last_heard: Instant,
    pub sink: Arc<PeerSink>,
    /// Number of the last event applied.
    pub applied: u64,
    /// The replica is current (a full list was applied and no event was missed since).
    pub synced: bool,
    /// When the full list was last asked for.
    pub asked: Option<Instant>,
    /// Its sessions, by full JID.
    pub sessions: HashMap<String, (Arc<SessionEntry>, u64)>,
    pub digest: u64,
    /// Events that came while the full list was awaited.
    waiting: Vec<Event>,
    /// A full list being received, applied part by part: (incarnation, seq), the parts
    /// so far, and the JIDs they held (what is not among them goes at the end).
    parts: Option<((u64, u64), u32, HashSet<String>)>,
    /// What its last heartbeat said: (sessions, version).
    pub reported: (u64, String),
}

/// What the caller must do after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Todo {
    Nothing,
    /// Ask this node for its full list.
    AskFullList(String),
    /// Ask this node for the next part of its list.
    AskPart(String, u32),
}

/// Every other node.
pub struct Peers {
    core: Arc<Core>,
    me: String,
    dead_after: Duration,
    out: tokio::sync::mpsc::Sender<crate::outbox::Outgoing>,
    nodes: HashMap<String, Peer>,
    /// Nodes that said goodbye, with the incarnation that did: what that run still sends
    /// (its sessions ending) is ignored.
    left: HashMap<String, u64>,
}

fn parse_jid(full: &str) -> Option<(Account, String)> {
    let j = jid::FullJid::new(full).ok()?;
    Some((
        Account::new(j.node()?.as_str(), j.domain().as_str()),
        j.resource().as_str().to_string(),
    ))
}

impl Peers {
    pub fn new(
        core: Arc<Core>,
        me: String,
        dead_after: Duration,
        out: tokio::sync::mpsc::Sender<crate::outbox::Outgoing>,
    ) -> Peers {
        Peers {
            core,
            me,
            dead_after,
            out,
            nodes: HashMap::new(),
            left: HashMap::new(),
        }
    }

    /// The nodes alive, with what they last reported.
    pub fn alive(&self) -> impl Iterator<Item = (&String, &Peer)> {
        self.nodes.iter()
    }

    /// Applies one event from another node.
    pub fn on_event(&mut self, event: Event) -> Todo {
        let node = event.node().to_string();
        if node == self.me {
            return Todo::Nothing;
        }
        let incarnation = match &event {
            Event::Heartbeat { incarnation, .. }
            | Event::Up { incarnation, .. }
            | Event::Down { incarnation, .. }
            | Event::Leave { incarnation, .. } => *incarnation,
            Event::Notice { .. } => return Todo::Nothing,
        };
        if let Event::Leave { .. } = event {
            if self
                .nodes
                .get(&node)
                .is_some_and(|p| p.incarnation == incarnation)
            {
                tracing::info!(node, "cluster: node left");
                self.remove(&node);
            }
            self.left.insert(node, incarnation);
            return Todo::Nothing;
        }
        if self.left.get(&node) == Some(&incarnation) {
            return Todo::Nothing;
        }
        if self
            .nodes
            .get(&node)
            .is_some_and(|p| p.incarnation != incarnation)
        {
            tracing::info!(node, "cluster: node restarted");
            self.remove(&node);
        }
        if !self.nodes.contains_key(&node) {
            tracing::info!(node, "cluster: node joined");
            metrics::counter!("heliograph_cluster_joins_total").increment(1);
            self.nodes.insert(
                node.clone(),
                Peer {
                    incarnation,
                    last_heard: Instant::now(),
                    sink: PeerSink::new(&node, self.out.clone()),
                    applied: 0,
                    synced: false,
                    asked: None,
                    sessions: HashMap::new(),
                    digest: 0,
                    waiting: Vec::new(),
                    parts: None,
                    reported: (0, String::new()),
                },
            );
        }
        let peer = self.nodes.get_mut(&node).expect("inserted");
        peer.last_heard = Instant::now();
        if !peer.synced {
            if let Event::Heartbeat { count, version, .. } = &event {
                peer.reported = (*count, version.clone());
            } else if peer.waiting.len() < MAX_WAITING_EVENTS {
                peer.waiting.push(event);
            }
            return self.ask_if_due(&node);
        }
        self.apply(&node, event)
    }

    /// Asks for a node's full list unless that was done in the last two seconds.
    fn ask_if_due(&mut self, node: &str) -> Todo {
        let Some(peer) = self.nodes.get_mut(node) else {
            return Todo::Nothing;
        };
        if peer
            .asked
            .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
        {
            return Todo::Nothing;
        }
        peer.asked = Some(Instant::now());
        Todo::AskFullList(node.to_string())
    }

    fn resync(&mut self, node: &str, why: &str) -> Todo {
        tracing::info!(
            node,
            why,
            "cluster: asking a node for its full session list"
        );
        metrics::counter!("heliograph_cluster_resyncs_total").increment(1);
        if let Some(p) = self.nodes.get_mut(node) {
            p.synced = false;
            p.asked = None;
            p.waiting.clear();
        }
        self.ask_if_due(node)
    }

    fn apply(&mut self, node: &str, event: Event) -> Todo {
        let peer = self.nodes.get_mut(node).expect("known");
        match event {
            Event::Heartbeat {
                seq,
                count,
                digest,
                version,
                ..
            } => {
                peer.reported = (count, version);
                if seq != peer.applied {
                    return self.resync(node, "missed events");
                }
                if count != peer.sessions.len() as u64 || digest != peer.digest {
                    return self.resync(node, "digest differs");
                }
                Todo::Nothing
            }
            // Already in the full list applied.
            Event::Up { seq, .. } | Event::Down { seq, .. } if seq <= peer.applied => Todo::Nothing,
            Event::Up { seq, session, .. } => {
                if seq != peer.applied + 1 {
                    return self.resync(node, "gap in events");
                }
                peer.applied = seq;
                self.put(node, session);
                Todo::Nothing
            }
            Event::Down { seq, jid, id, .. } => {
                if seq != peer.applied + 1 {
                    return self.resync(node, "gap in events");
                }
                peer.applied = seq;
                self.take(node, &jid, Some(id));
                Todo::Nothing
            }
            Event::Leave { .. } | Event::Notice { .. } => Todo::Nothing,
        }
    }

    /// Adds or updates a replicated session.
    fn put(&mut self, node: &str, record: SessionRecord) {
        let Some((account, resource)) = parse_jid(&record.jid) else {
            return;
        };
        let digest = record.digest();
        let peer = self.nodes.get_mut(node).expect("known");
        let presence = record.presence.as_deref().and_then(|x| {
            crate::xml::parser::parse_element(
                x.as_bytes(),
                crate::xml::ns::CLIENT,
                crate::xml::ParserLimits::default(),
            )
            .ok()
        });
        if let Some((entry, old)) = peer.sessions.get_mut(&record.jid)
            && entry.origin_id() == record.id
        {
            peer.digest ^= *old ^ digest;
            *old = digest;
            set_presence(entry, record.priority, presence);
            self.core
                .hooks
                .restore_session_flags(&self.core, entry, &record.flags);
            return;
        }
        if let Some((old, d)) = peer.sessions.remove(&record.jid) {
            peer.digest ^= d;
            drop_replica(&self.core, &old);
        }
        let since = UNIX_EPOCH + Duration::from_micros(record.since_us);
        let entry = Arc::new(
            SessionEntry::remote(account, resource, since, peer.sink.clone(), record.id)
                .with_user_facts(UserFacts::default()),
        );
        set_presence(&entry, record.priority, presence);
        // A new entry has no setting on yet (most records carry none).
        if !record.flags.is_empty() {
            self.core
                .hooks
                .restore_session_flags(&self.core, &entry, &record.flags);
        }
        let peer = self.nodes.get_mut(node).expect("known");
        peer.digest ^= digest;
        peer.sessions
            .insert(record.jid.clone(), (entry.clone(), digest));
        match self.core.router.register_remote(entry, &self.me) {
            // A local session of the same full JID bound before this one: the newer
            // session wins (RFC 6120 §7.7.2.2), as on one node.
            Ok(Some(old)) if !old.is_remote() => old.close(
                StreamErrorCondition::Conflict,
                Some("replaced by a new session"),
            ),
            Ok(_) => {}
            // A newer session holds the JID; the other node closes its own when it hears
            // of it. The replica still counts this one until its node says it ended.
            Err(_) => {}
        }
    }

    /// Removes a replicated session (`id`: only if it is still that session).
    fn take(&mut self, node: &str, jid: &str, id: Option<u64>) {
        let peer = self.nodes.get_mut(node).expect("known");
        let matches = peer
            .sessions
            .get(jid)
            .is_some_and(|(e, _)| id.is_none_or(|id| e.origin_id() == id));
        if !matches {
            return;
        }
        if let Some((entry, d)) = peer.sessions.remove(jid) {
            peer.digest ^= d;
            drop_replica(&self.core, &entry);
        }
    }

    /// One part of a node's full list.
    pub fn on_snapshot(
        &mut self,
        node: &str,
        incarnation: u64,
        seq: u64,
        part: u32,
        parts: u32,
        sessions: Vec<SessionRecord>,
    ) -> Todo {
        let Some(peer) = self.nodes.get_mut(node) else {
            return Todo::Nothing;
        };
        if peer.incarnation != incarnation {
            return Todo::Nothing;
        }
        peer.last_heard = Instant::now();
        let key = (incarnation, seq);
        match &mut peer.parts {
            Some((k, got, _)) if *k == key && *got == part => *got += 1,
            _ if part == 0 => peer.parts = Some((key, 1, HashSet::new())),
            // A part of an older list, or one out of order: the list is asked for again.
            _ => {
                peer.parts = None;
                return self.resync(node, "incomplete session list");
            }
        }
        let started = Instant::now();
        if let Some((_, _, seen)) = &mut peer.parts {
            seen.extend(sessions.iter().map(|r| r.jid.clone()));
        }
        for record in sessions {
            self.put(node, record);
        }
        metrics::histogram!("heliograph_cluster_sync_part_seconds")
            .record(started.elapsed().as_secs_f64());
        let peer = self.nodes.get_mut(node).expect("known");
        if peer.parts.as_ref().is_none_or(|(_, got, _)| *got != parts) {
            peer.asked = Some(Instant::now());
            return Todo::AskPart(node.to_string(), part + 1);
        }
        let (_, _, seen) = peer.parts.take().expect("complete");
        self.finish_list(node, seq, seen)
    }

    /// The last part of a full list (as of event `seq`) came: what it did not hold is
    /// removed, and the events that waited are applied.
    fn finish_list(&mut self, node: &str, seq: u64, seen: HashSet<String>) -> Todo {
        let gone: Vec<String> = self.nodes[node]
            .sessions
            .keys()
            .filter(|j| !seen.contains(j.as_str()))
            .cloned()
            .collect();
        for jid in gone {
            self.take(node, &jid, None);
        }
        let peer = self.nodes.get_mut(node).expect("known");
        peer.applied = seq;
        peer.synced = true;
        let waiting = std::mem::take(&mut peer.waiting);
        tracing::info!(
            node,
            sessions = peer.sessions.len(),
            "cluster: session list of a node applied"
        );
        for event in waiting {
            if let Todo::AskFullList(n) = self.apply(node, event) {
                return Todo::AskFullList(n);
            }
        }
        Todo::Nothing
    }

    /// Removes the nodes not heard from for `dead_after`; returns their names.
    pub fn expire(&mut self) -> Vec<String> {
        let dead: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, p)| p.last_heard.elapsed() > self.dead_after)
            .map(|(n, _)| n.clone())
            .collect();
        for node in &dead {
            tracing::warn!(
                node,
                "cluster: node not heard from; its sessions are removed"
            );
            metrics::counter!("heliograph_cluster_node_deaths_total").increment(1);
            self.remove(node);
        }
        dead
    }

    /// Forgets a node and removes its sessions from the router.
    fn remove(&mut self, node: &str) {
        if let Some(peer) = self.nodes.remove(node) {
            peer.sink.mark_dead();
            for (entry, _) in peer.sessions.values() {
                drop_replica(&self.core, entry);
            }
        }
    }

    /// The way to a live node's sessions.
    pub fn sink(&self, node: &str) -> Option<Arc<PeerSink>> {
        self.nodes.get(node).map(|p| p.sink.clone())
    }

    /// Sessions replicated from other nodes.
    pub fn session_count(&self) -> usize {
        self.nodes.values().map(|p| p.sessions.len()).sum()
    }
}

/// Removes a replicated session from the router; the features forget its settings.
fn drop_replica(core: &Core, entry: &SessionEntry) {
    core.router.unregister(&entry.account, entry.id);
    core.hooks.restore_session_flags(core, entry, &[]);
}

fn set_presence(entry: &SessionEntry, priority: i8, presence: Option<Element>) {
    entry.update_presence(|p| {
        p.priority = priority;
        p.last = presence;
    });
}

/// Microseconds since the Unix epoch now (an incarnation number).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
