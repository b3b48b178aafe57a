//! Server-to-server federation (RFC 6120, SASL EXTERNAL with certificates per XEP-0178,
//! XEP-0220 dialback with XEP-0185 keys, SRV resolution and XEP-0368 direct TLS): the [`S2s`] service the core routes remote stanzas to, its
//! outgoing streams ([`outgoing`], one per (local domain, remote domain) pair, stanzas
//! queued while it comes up and bounced if it fails), its incoming streams
//! ([`incoming`], several authenticated pairs each), dialback keys ([`dialback`]),
//! resolution ([`resolve`]), the socket ([`stream`]) and the peer certificate check
//! ([`certs`], with [`xmpp_addr`] for `id-on-xmppAddr` names).

pub mod certs;
pub mod dialback;
pub mod incoming;
pub mod outgoing;
pub mod rate;
pub mod resolve;
pub mod stream;
pub mod xmpp_addr;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use heliograph_core::Core;
use heliograph_core::federation::Federation;
use heliograph_core::pipeline::{self, Origin};
use heliograph_xml::Element;
use heliograph_xmpp::stanza::{self, Condition};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::tls::TlsStore;

pub use incoming::serve_s2s;

/// Direction of an s2s stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Incoming,
    Outgoing,
}

/// What the admin API shows of one s2s stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    pub id: u64,
    pub direction: Direction,
    /// Authenticated (local domain, remote domain) pairs.
    pub pairs: BTreeSet<(String, String)>,
    /// How the peer authenticated (`dialback`, `external`), once it did.
    pub auth: Option<&'static str>,
    pub tls: bool,
    pub stanzas_in: u64,
    pub stanzas_out: u64,
    /// Seconds since the Unix epoch.
    pub since: u64,
}

/// A live stream: what the API shows, and the switch that ends it.
struct Live {
    info: StreamInfo,
    stop: watch::Sender<bool>,
}

/// The handle of an outgoing stream's queue.
struct Queue {
    stream_id: u64,
    tx: mpsc::Sender<Element>,
}

/// Counters for metrics and the admin API.
#[derive(Default, Debug, Serialize)]
pub struct Counters {
    pub stanzas_in: AtomicU64,
    pub stanzas_out: AtomicU64,
    pub connections_in: AtomicU64,
    pub connections_out: AtomicU64,
    pub bounced: AtomicU64,
    /// Incoming stanzas a stream waited for, its peer being over `[s2s] rate`.
    pub throttled: AtomicU64,
}

/// Federation: the outgoing queues and every live stream (see the module docs).
pub struct S2s {
    me: Weak<S2s>,
    tls: Arc<TlsStore>,
    certs: certs::PeerCerts,
    dns: resolve::Dns,
    secret: String,
    queues: DashMap<(String, String), Queue>,
    streams: DashMap<u64, Live>,
    next_id: AtomicU64,
    pub counters: Counters,
    /// The per-remote-domain stanza rate of incoming streams.
    rates: rate::PeerRates,
}

impl S2s {
    /// The service, with the dialback secret and the peer certificate authorities.
    pub fn new(
        tls: Arc<TlsStore>,
        secret: String,
        certs: certs::PeerCerts,
    ) -> Result<Arc<S2s>, rustls::Error> {
        // The TLS settings build (they are built per stream, with the local domain's
        // certificate).
        certs::client_config(None)?;
        Ok(Arc::new_cyclic(|me| S2s {
            me: me.clone(),
            tls,
            certs,
            dns: resolve::Dns::default(),
            secret,
            queues: DashMap::new(),
            streams: DashMap::new(),
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
            rates: rate::PeerRates::default(),
        }))
    }

    /// The client TLS configuration of a stream opened as `local`: it presents `local`'s
    /// certificate (XEP-0178); direct TLS names the protocol with ALPN `xmpp-server`
    /// (XEP-0368).
    fn client_tls(
        &self,
        local: &str,
        direct_tls: bool,
    ) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        let ours = self.tls.choose(Some(local)).certified.clone();
        let mut config = certs::client_config(Some(ours))?;
        if direct_tls {
            config.alpn_protocols = vec![b"xmpp-server".to_vec()];
        }
        Ok(Arc::new(config))
    }

    /// Every live stream, for the admin API.
    pub fn streams(&self) -> Vec<StreamInfo> {
        let mut v: Vec<StreamInfo> = self.streams.iter().map(|s| s.info.clone()).collect();
        v.sort_by_key(|s| s.id);
        v
    }

    /// Ends every stream that carries one of these local domains (a tenant disabled or
    /// removed), or every stream when `domains` is `None` (shutdown, drain).
    pub fn close_streams(&self, domains: Option<&[String]>) -> usize {
        let mut n = 0;
        for s in self.streams.iter() {
            let hit = match domains {
                None => true,
                Some(d) => s.info.pairs.iter().any(|(l, _)| d.contains(l)),
            };
            if hit {
                let _ = s.stop.send(true);
                n += 1;
            }
        }
        n
    }

    /// Closes the streams of local domains whose tenant no longer federates (call after
    /// every tenant change).
    pub fn close_unfederated(&self, core: &Core) -> usize {
        let mut gone = Vec::new();
        for s in self.streams.iter() {
            for (local, remote) in &s.info.pairs {
                let ok = core
                    .tenant_of_any(local)
                    .is_some_and(|t| t.spec.s2s.permits(remote));
                if !ok {
                    gone.push(local.clone());
                }
            }
        }
        if gone.is_empty() {
            0
        } else {
            self.close_streams(Some(&gone))
        }
    }

    /// Incoming streams with an authenticated pair for `remote`.
    fn incoming_from(&self, remote: &str) -> usize {
        self.streams
            .iter()
            .filter(|s| {
                s.info.direction == Direction::Incoming
                    && s.info.pairs.iter().any(|(_, r)| r == remote)
            })
            .count()
    }

    fn register(&self, direction: Direction) -> (u64, watch::Receiver<bool>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (stop, rx) = watch::channel(false);
        let since = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.streams.insert(
            id,
            Live {
                info: StreamInfo {
                    id,
                    direction,
                    pairs: BTreeSet::new(),
                    auth: None,
                    tls: false,
                    stanzas_in: 0,
                    stanzas_out: 0,
                    since,
                },
                stop,
            },
        );
        let counter = match direction {
            Direction::Incoming => &self.counters.connections_in,
            Direction::Outgoing => &self.counters.connections_out,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("heliograph_s2s_streams", "direction" => dir_label(direction))
            .increment(1.0);
        (id, rx)
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut StreamInfo)) {
        if let Some(mut s) = self.streams.get_mut(&id) {
            f(&mut s.info);
        }
    }

    fn unregister(&self, id: u64) {
        if let Some((_, live)) = self.streams.remove(&id) {
            metrics::gauge!("heliograph_s2s_streams", "direction" => dir_label(live.info.direction))
                .decrement(1.0);
        }
    }

    fn count_stanza(&self, id: u64, direction: Direction) {
        let (total, label) = match direction {
            Direction::Incoming => (&self.counters.stanzas_in, "in"),
            Direction::Outgoing => (&self.counters.stanzas_out, "out"),
        };
        total.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("heliograph_s2s_stanzas_total", "direction" => label).increment(1);
        self.update(id, |i| match direction {
            Direction::Incoming => i.stanzas_in += 1,
            Direction::Outgoing => i.stanzas_out += 1,
        });
    }

    /// True if the local domain federates with `remote` (tenant on, lists allow it).
    pub fn permits(core: &Core, local: &str, remote: &str) -> bool {
        !core.serves_domain(remote)
            && core
                .tenant_of_any(local)
                .is_some_and(|t| t.spec.s2s.permits(remote))
    }
}

fn dir_label(d: Direction) -> &'static str {
    match d {
        Direction::Incoming => "in",
        Direction::Outgoing => "out",
    }
}

/// Counts a failure by cause (metrics).
fn failure(cause: &'static str) {
    metrics::counter!("heliograph_s2s_failures_total", "cause" => cause).increment(1);
}

/// Sends the sender of `stanza` (a local entity) an error from the remote side.
fn bounce(s2s: &S2s, core: &Arc<Core>, remote: &str, stanza: Element, condition: Condition) {
    bounce_all(s2s, core, remote, vec![stanza], condition);
}

/// Sends the senders of `stanzas` their errors, in order.
fn bounce_all(
    s2s: &S2s,
    core: &Arc<Core>,
    remote: &str,
    stanzas: Vec<Element>,
    condition: Condition,
) {
    let text = match condition {
        Condition::RemoteServerTimeout => format!("{remote} did not answer in time"),
        Condition::ResourceConstraint => format!("too many stanzas waiting for {remote}"),
        _ => format!("{remote} could not be reached"),
    };
    let errors: Vec<Element> = stanzas
        .iter()
        .filter(|s| pipeline::expects_error(s))
        .filter_map(|s| stanza::error_reply(s, condition, Some(&text)))
        .collect();
    if errors.is_empty() {
        return;
    }
    s2s.counters
        .bounced
        .fetch_add(errors.len() as u64, Ordering::Relaxed);
    let core = core.clone();
    let origin = Origin::Remote(remote.to_string());
    tokio::spawn(async move {
        for err in errors {
            pipeline::route(&core, &origin, err).await;
        }
    });
}

impl Federation for S2s {
    fn send(&self, core: &Arc<Core>, local: &str, remote: &str, stanza: Element) {
        self.enqueue(core, local, remote, stanza);
    }

    fn send_waiting<'a>(
        &'a self,
        core: &'a Arc<Core>,
        local: &'a str,
        remote: &'a str,
        stanza: Element,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            let key = (local.to_string(), remote.to_string());
            let tx = self.queues.get(&key).map(|q| q.tx.clone());
            let Some(tx) = tx.filter(|tx| tx.capacity() == 0) else {
                // Room (or no stream yet): the usual way.
                return self.enqueue(core, local, remote, stanza);
            };
            // The stream is backed up (the peer reads slowly): wait for room, up to the
            // time a client gets to take what is written to it.
            let limit = Duration::from_secs(core.config().c2s.write_timeout.max(1));
            match tokio::time::timeout(limit, tx.reserve()).await {
                Ok(Ok(permit)) => permit.send(stanza),
                // The stream ended meanwhile, or never made room: the usual way (a new
                // stream, or a bounce).
                _ => self.enqueue(core, local, remote, stanza),
            }
        })
    }
}

impl S2s {
    /// Queues a stanza on the (local, remote) stream, opening it if needed.
    pub fn enqueue(&self, core: &Arc<Core>, local: &str, remote: &str, mut stanza: Element) {
        let key = (local.to_string(), remote.to_string());
        for _ in 0..3 {
            let tx = match self.queues.get(&key) {
                Some(q) => q.tx.clone(),
                None => {
                    let Some(me) = self.me.upgrade() else {
                        return bounce(self, core, remote, stanza, Condition::RemoteServerNotFound);
                    };
                    let limit = core.config().s2s.queue_limit.max(1);
                    let (tx, rx) = mpsc::channel(limit);
                    let (stream_id, stop) = self.register(Direction::Outgoing);
                    self.update(stream_id, |i| {
                        i.pairs.insert(key.clone());
                    });
                    match self.queues.entry(key.clone()) {
                        dashmap::Entry::Occupied(q) => {
                            self.unregister(stream_id);
                            q.get().tx.clone()
                        }
                        dashmap::Entry::Vacant(v) => {
                            v.insert(Queue {
                                stream_id,
                                tx: tx.clone(),
                            });
                            tokio::spawn(outgoing::run(
                                me,
                                core.clone(),
                                key.clone(),
                                stream_id,
                                rx,
                                stop,
                            ));
                            tx
                        }
                    }
                }
            };
            match tx.try_send(stanza) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(s)) => {
                    failure("queue-full");
                    return bounce(self, core, remote, s, Condition::ResourceConstraint);
                }
                Err(mpsc::error::TrySendError::Closed(s)) => {
                    // The stream just ended: drop its queue and open a new one.
                    self.queues.remove_if(&key, |_, q| q.tx.same_channel(&tx));
                    stanza = s;
                }
            }
        }
        bounce(self, core, remote, stanza, Condition::RemoteServerNotFound);
    }

    /// Removes the queue of a stream that ended, if it is still that stream's.
    fn drop_queue(&self, key: &(String, String), stream_id: u64) {
        self.queues.remove_if(key, |_, q| q.stream_id == stream_id);
    }
}
