//! The `[[listen.component]]` accept loop: drain refusal, the PROXY protocol header from
//! trusted proxies, connection limits per listener and per address, then one
//! [`super::connection`] task per connection with a log span (`conn`, `peer`, `domain`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::Instrument as _;

use crate::config::ComponentListener;
use crate::server::Server;
use crate::transport::http::proxy::IpRange;
use crate::transport::listener::{ConnectionTracker, Shutdown};
use crate::transport::tls::TlsStore;

/// Connection ids for logs, unique in the process (own range, apart from c2s ids).
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

fn refused(reason: &'static str) {
    metrics::counter!("heliograph_connections_refused_total", "transport" => "component", "reason" => reason)
        .increment(1);
}

/// Accepts component connections until shutdown.
pub async fn serve(
    listener: TcpListener,
    config: Arc<ComponentListener>,
    server: Arc<Server>,
    tls: Option<Arc<TlsStore>>,
    tracker: Arc<ConnectionTracker>,
    mut shutdown: Shutdown,
) {
    let live = Arc::new(AtomicUsize::new(0));
    let trusted: Arc<Vec<IpRange>> = Arc::new(
        config
            .trusted_proxies
            .iter()
            .filter_map(|p| IpRange::parse(p))
            .collect(),
    );
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.requested() => return,
        };
        let (mut stream, mut peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "component accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if server.edge.drain.is_draining() {
            refused("draining");
            continue;
        }
        let guard = tracker.enter();
        let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "component",
            conn = id,
            peer = %peer,
            domain = tracing::field::Empty,
            tenant = tracing::field::Empty,
        );
        let (server, config, tls, live, trusted, shutdown) = (
            server.clone(),
            config.clone(),
            tls.clone(),
            live.clone(),
            trusted.clone(),
            shutdown.clone(),
        );
        tokio::spawn(
            async move {
                let negotiation = Duration::from_secs(config.negotiation_timeout.max(1));
                let deadline = tokio::time::Instant::now() + negotiation;
                if config.proxy_protocol {
                    let read = crate::edge::proxy_protocol::accept(
                        &mut stream,
                        peer,
                        &trusted,
                        negotiation,
                        "component",
                    );
                    match read.await {
                        Some(client) => {
                            peer = client;
                            tracing::Span::current()
                                .record("peer", tracing::field::display(client));
                        }
                        None => return,
                    }
                }
                let _permit = match server.edge.limits.admit(
                    peer.ip(),
                    &live,
                    config.max_connections,
                    config.max_connections_per_address,
                ) {
                    Ok(p) => p,
                    Err(r) => {
                        tracing::debug!(reason = r.label(), "component connection refused");
                        refused(r.label());
                        return;
                    }
                };
                metrics::counter!("heliograph_connections_total", "transport" => "component")
                    .increment(1);
                let open = metrics::gauge!("heliograph_connections", "transport" => "component");
                open.increment(1.0);
                super::connection::run(super::connection::Params {
                    id,
                    server,
                    listener: config,
                    tls,
                    stream,
                    peer,
                    deadline,
                    shutdown,
                })
                .await;
                open.decrement(1.0);
                drop(guard);
            }
            .instrument(span),
        );
    }
}
