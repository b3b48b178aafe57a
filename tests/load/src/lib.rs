//! Heliograph's load generator: what the server costs per login, per idle session and per
//! delivered message, measured by commands anyone can run (see `tests/load/README.md`).
//!
//! [`xmpp`] is a lean client (login over plain TCP, STARTTLS or direct TLS with PLAIN or
//! SCRAM-SHA-256, or PLAIN carrying a JWT minted by [`jwt`]; [`web`] adds BOSH and
//! WebSocket; [`sm`] scans for stream management; [`ping`] answers the server's pings),
//! [`connect`], [`chat`], [`muc`], [`offline`], [`resume`] (a resumption storm), [`soak`]
//! (mixed load with random disconnects for a long time), [`s2s`] and [`cluster`]
//! (cross-node against same-node chat on two nodes, with their [`nats`] server and a
//! [`scratch_db`]) are the scenarios, [`admin`] provisions the accounts, [`target`]
//! starts or finds the server, [`procfs`] reads its CPU time and memory, [`stats`] holds
//! latency samples, [`report`] names every figure of a report run for comparisons, and
//! [`cli`] ties them into the `heliograph-load` command.

pub mod admin;
pub mod chat;
pub mod cli;
pub mod cluster;
pub mod connect;
pub mod fast;
pub mod jwt;
pub mod muc;
pub mod nats;
pub mod offline;
pub mod ping;
pub mod procfs;
pub mod report;
pub mod resume;
pub mod s2s;
pub mod scratch_db;
pub mod sm;
pub mod soak;
pub mod stats;
pub mod target;
pub mod web;
pub mod xmpp;
