//! XMPP vocabulary shared by every layer above the XML one: accounts (bare JIDs),
//! stanza kinds and stanza errors (RFC 6120 §8), stream errors (RFC 6120 §4.9), and the
//! wire formats of the HTTP transports: the BOSH `<body/>` ([`bosh`]) and the WebSocket
//! frames of RFC 7395 ([`framing`]).
//! Nothing here does I/O or knows about sessions, tenants or storage.

pub mod account;
pub mod bosh;
pub mod framing;
pub mod jid;
pub mod muc;
pub mod stanza;
pub mod stream_error;

pub use account::{Account, AccountHasher};
pub use stream_error::StreamErrorCondition;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
