//! The minimal relay: the limit reference for the chat scenario.
//!
//! A trivial tokio program that forwards the same bytes between the same pairs as the
//! server would, with no parsing, routing or TLS: each client connects and sends one line
//! `HELLO <index>\n`; connections `2k` and `2k+1` are paired and their bytes copied both
//! ways. Prints `LISTENING <addr>` on stdout once bound; runs until killed.
//!
//! Usage: `relay [ADDR]` (default `127.0.0.1:0`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let listener = TcpListener::bind(&addr).await?;
    println!("LISTENING {}", listener.local_addr()?);
    let waiting: Arc<Mutex<HashMap<u64, BufReader<TcpStream>>>> = Arc::default();
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let waiting = waiting.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let Some(index) = line
                .trim()
                .strip_prefix("HELLO ")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                return;
            };
            // Pair or wait, under one lock so two partners cannot both wait.
            let partner = {
                let mut w = waiting.lock().expect("lock");
                match w.remove(&(index ^ 1)) {
                    Some(other) => Some(other),
                    None => {
                        w.insert(index, reader);
                        return;
                    }
                }
            };
            match partner {
                None => {}
                Some(mut other) => {
                    // Bytes already buffered past the hello line go through too.
                    let _ = tokio::io::copy_bidirectional(&mut reader, &mut other).await;
                }
            }
        });
    }
}
