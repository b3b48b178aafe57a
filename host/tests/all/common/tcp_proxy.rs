//! A TCP proxy on a loopback port of its own, in front of one server, that a test can cut
//! and restore: a network partition of whatever connects through it (a cluster node's
//! NATS connection). Cut, it closes every connection it carries and closes new ones at
//! once; restored, it carries new connections again. Started with a delay, it holds
//! every chunk of bytes that long before passing it on, in each direction (a WAN link
//! between two regions: latency added, order and throughput kept). It can also hold back
//! what the server sends (the client's publications still go out, it hears nothing: a
//! one-way delay as long as the test wants). Its target can be set after it started (a
//! server whose port is known only once it runs, and whose configuration names the
//! proxy).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The proxy; it stops when dropped.
pub struct TcpProxy {
    /// `127.0.0.1:PORT` to connect to instead of the server.
    pub addr: String,
    cut: Arc<AtomicBool>,
    /// Where connections go; `None`: closed at once.
    target: Arc<Mutex<Option<String>>>,
    /// Bumped on every cut: the connections carried until then end.
    generation: watch::Sender<u64>,
    /// While true, bytes from the server wait in the proxy.
    held: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// A proxy to `target` (`host:port`).
    pub async fn start(target: &str) -> TcpProxy {
        TcpProxy::start_delayed(Some(target), Duration::ZERO).await
    }

    /// A proxy to `target` (`None`: none yet, see [`TcpProxy::retarget`]) that passes
    /// bytes on `delay` after they arrived, each way.
    pub async fn start_delayed(target: Option<&str>, delay: Duration) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let target = Arc::new(Mutex::new(target.map(str::to_string)));
        let (held, _) = watch::channel(false);
        let task = tokio::spawn(accept(
            listener,
            target.clone(),
            cut.clone(),
            generation.clone(),
            held.clone(),
            delay,
        ));
        TcpProxy {
            addr,
            cut,
            target,
            generation,
            held,
            task,
        }
    }

    /// Closes every connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Carries new connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Holds back what the server sends until [`TcpProxy::release`] (in order, nothing
    /// dropped); what the client sends still goes through.
    pub fn hold_replies(&self) {
        self.held.send_replace(true);
    }

    /// Passes on what was held, and what comes from then on.
    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// Sends new connections to `target` (`host:port`).
    pub fn retarget(&self, target: &str) {
        *self.target.lock().unwrap() = Some(target.to_string());
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn accept(
    listener: TcpListener,
    target: Arc<Mutex<Option<String>>>,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    held: watch::Sender<bool>,
    delay: Duration,
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            return;
        };
        if cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let mut ended = generation.subscribe();
        let Some(target) = target.lock().unwrap().clone() else {
            drop(inbound);
            continue;
        };
        let held = held.subscribe();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let (a_read, a_write) = inbound.into_split();
            let (b_read, b_write) = outbound.into_split();
            let (never_held, _) = watch::channel(false);
            tokio::select! {
                _ = async {
                    tokio::join!(
                        pipe(a_read, b_write, delay, never_held.subscribe()),
                        pipe(b_read, a_write, delay, held)
                    )
                } => {}
                _ = ended.changed() => {}
            }
        });
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read and not while
/// `held`; the reading goes on meanwhile, so only latency is added, not a limit on
/// throughput.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    mut held: watch::Receiver<bool>,
) {
    let (chunks, mut queued) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if chunks
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            if held.wait_for(|h| !*h).await.is_err() {
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
