//! The one task that publishes to NATS, so that what this node says leaves in the order
//! it was said: session events in their numbered order, and the stanzas for one remote
//! session in the order they were routed (one sender to one recipient stays in order).
//! Encoding happens here, off the sessions' tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::core::router::{Mail, RemoteSink, SessionEntry, SessionMsg};
use crate::core::session::settle::{self, Settle};
use crate::inflight::InFlight;
use crate::readers::Readers;
use crate::wire::{self, Control, Direct, Event};

/// Room in the queue to the publisher; beyond it, stanzas for remote sessions are
/// handed back to the router (another resource, or offline storage).
pub const CAPACITY: usize = 65_536;

/// Something to publish.
pub enum Outgoing {
    Event(Event),
    Direct {
        node: Arc<str>,
        msg: Direct,
    },
    /// A message for a session of `node`, routed while its sending client waits until
    /// it is safe (see `inflight`).
    Message {
        node: Arc<str>,
        msg: Direct,
        settle: Settle,
    },
}

/// Publishes until every sender is gone. Stanzas for one node queued together go in one
/// NATS message (in their order); anything else first sends what is gathered, so events,
/// control messages and stanzas keep the order they were queued in. `message` stanzas
/// for sessions go as `Numbered` frames naming this node (`me`), kept in `inflight`
/// until their node says the client has them; a batch holding some ends with a `Sent`
/// frame (this node, the last number), which the receiver answers once it has taken them.
/// Stanzas go in the compact form to nodes that read it (`readers`), as XML to the others.
pub async fn run(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<Outgoing>,
    me: String,
    inflight: Arc<InFlight>,
    readers: Arc<Readers>,
) {
    let mut batch = Vec::with_capacity(GATHER);
    let mut gathered: Vec<Gathered> = Vec::new();
    while rx.recv_many(&mut batch, GATHER).await > 0 {
        gather_more(&mut rx, &mut batch).await;
        for item in batch.drain(..) {
            let (node, msg, settle) = match item {
                Outgoing::Message { node, msg, settle } => (node, msg, Some(settle)),
                Outgoing::Direct { node, msg } => (node, msg, None),
                Outgoing::Event(e) => {
                    flush(&client, &mut gathered, &me).await;
                    let payload = serde_json::to_vec(&e).unwrap_or_default();
                    publish(&client, wire::EVENTS.to_string(), payload).await;
                    continue;
                }
            };
            match msg {
                msg @ (Direct::Deliver { .. } | Direct::Hosted { .. }) => {
                    let form = readers.form(&node);
                    let (seq, frame) = match msg {
                        Direct::Deliver { jid, id, stanza } if stanza.name() == "message" => {
                            let (seq, frame) = inflight.keep(&node, settle, |seq, numbered| {
                                if !numbered {
                                    // An older node: a plain frame, taken is confirmed.
                                    return Direct::Deliver { jid, id, stanza }.encode_in(form);
                                }
                                Direct::Numbered {
                                    from: me.clone(),
                                    seq,
                                    jid,
                                    id,
                                    stanza,
                                }
                                .encode_in(form)
                            });
                            (Some(seq), frame)
                        }
                        other => (None, other.encode_in(form)),
                    };
                    let g = match gathered.iter_mut().position(|g| g.node == node) {
                        Some(i) => &mut gathered[i],
                        None => {
                            gathered.push(Gathered {
                                node,
                                frames: Vec::new(),
                                last: None,
                            });
                            gathered.last_mut().expect("pushed")
                        }
                    };
                    g.frames.push(frame);
                    if seq.is_some() {
                        g.last = seq;
                    }
                }
                msg => {
                    flush(&client, &mut gathered, &me).await;
                    publish(&client, wire::node_subject(&node), msg.encode()).await;
                }
            }
        }
        flush(&client, &mut gathered, &me).await;
    }
}

/// Items taken from the queue for one round of publishing at most.
const GATHER: usize = 1024;

/// Lets the tasks that are ready run once before publishing what `batch` holds, and
/// takes what they queued meanwhile: under load the sessions' stanzas then leave in one
/// NATS message per node and round rather than one each (and each batch gets one
/// `received` back, not one per stanza), for the wait of one turn of the scheduler.
async fn gather_more(rx: &mut mpsc::Receiver<Outgoing>, batch: &mut Vec<Outgoing>) {
    if batch.len() >= GATHER {
        return;
    }
    tokio::task::yield_now().await;
    while batch.len() < GATHER {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => return,
        }
    }
}

/// The frames gathered for one node, and the number of the last message among them.
struct Gathered {
    node: Arc<str>,
    frames: Vec<Vec<u8>>,
    last: Option<u64>,
}

/// Sends the stanzas gathered per node: one message each (a batch when there are several).
async fn flush(client: &async_nats::Client, gathered: &mut Vec<Gathered>, me: &str) {
    for Gathered {
        node,
        mut frames,
        last,
    } in gathered.drain(..)
    {
        metrics::counter!("heliograph_cluster_stanzas_sent_total").increment(frames.len() as u64);
        if let Some(seq) = last {
            frames.push(
                Direct::Sent {
                    from: me.to_string(),
                    seq,
                }
                .encode(),
            );
        }
        let payload = if frames.len() == 1 {
            frames.pop().unwrap_or_default()
        } else {
            Direct::encode_batch(&frames)
        };
        publish(client, wire::node_subject(&node), payload).await;
    }
}

async fn publish(client: &async_nats::Client, subject: String, payload: Vec<u8>) {
    if let Err(e) = client.publish(subject, Bytes::from(payload)).await {
        tracing::warn!(error = %e, "cluster: publishing to NATS failed");
    }
}

/// The way to the sessions of one other node: what the router queues for them goes to
/// the publisher, addressed to that node.
#[derive(Debug)]
pub struct PeerSink {
    node: Arc<str>,
    alive: AtomicBool,
    out: mpsc::Sender<Outgoing>,
}

impl PeerSink {
    pub fn new(node: &str, out: mpsc::Sender<Outgoing>) -> Arc<PeerSink> {
        Arc::new(PeerSink {
            node: node.into(),
            alive: AtomicBool::new(true),
            out,
        })
    }

    /// The node is gone: nothing more is sent to it.
    pub fn mark_dead(&self) {
        self.alive.store(false, Ordering::Relaxed);
    }
}

impl RemoteSink for PeerSink {
    fn node(&self) -> &str {
        &self.node
    }

    fn forward(&self, entry: &SessionEntry, msg: Mail) -> Result<(), Mail> {
        if !self.is_alive() {
            return Err(msg);
        }
        let direct = match *msg {
            SessionMsg::Stanza(stanza) => Direct::Deliver {
                jid: entry.full_jid.clone(),
                id: entry.origin_id(),
                stanza,
            },
            SessionMsg::Close(condition, text) => Direct::Control(Control::Close {
                jid: entry.full_jid.clone(),
                id: entry.origin_id(),
                condition: condition.name().to_string(),
                text,
            }),
            // Stored stanzas are confirmed by the entry once handed over; a link is
            // never attached to another node's session here.
            other => return Err(Box::new(other)),
        };
        let node = self.node.clone();
        // A client's message being routed: its wait goes along (see `inflight`).
        let item = match settle::current() {
            Some(settle) if matches!(&direct, Direct::Deliver { stanza, .. } if stanza.name() == "message") => {
                Outgoing::Message {
                    node,
                    msg: direct,
                    settle,
                }
            }
            _ => Outgoing::Direct { node, msg: direct },
        };
        self.out.try_send(item).map_err(|e| match e.into_inner() {
            Outgoing::Direct {
                msg: Direct::Deliver { stanza, .. },
                ..
            }
            | Outgoing::Message {
                msg: Direct::Deliver { stanza, .. },
                ..
            } => Box::new(SessionMsg::Stanza(stanza)),
            _ => Box::new(SessionMsg::Close(
                crate::xmpp::StreamErrorCondition::UndefinedCondition,
                None,
            )),
        })
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}
