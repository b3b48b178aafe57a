//! Every end-to-end and integration test of the `heliograph` crate, in one test binary:
//! one link of the crate and its dependencies instead of one per file, and one process
//! that runs them all in parallel (`cargo test -p heliograph --test all`; a module's
//! tests with `cargo test -p heliograph --test all bosh::`).
//!
//! `common` starts the real server binary on ephemeral loopback ports and speaks XMPP to
//! it; `plugins_support` builds the first-party plugins and makes plugin hosts.

#[macro_use]
mod plugins_support;
mod common;

mod architecture;
mod bosh;
mod c2s;
mod calls;
mod cli;
mod cluster;
mod component_plugins;
mod components;
mod console;
mod edge;
mod external_services;
mod features;
mod hardening;
mod offline;
mod plugin_cli;
mod plugin_reuse;
mod plugins;
mod postgres;
mod room_policy;
mod s2s;
mod s2s_auth;
mod s2s_dns;
mod static_files;
mod stream_management;
mod unauthenticated;
mod websocket;
