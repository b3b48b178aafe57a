//! Authentication: SASL mechanisms and their server side ([`sasl`]: PLAIN, SCRAM with
//! channel binding, the bearer mechanisms, and the credentials they check), and tokens
//! ([`tokens`]: tenant JWTs, server-issued access/refresh tokens, XEP-0484 FAST).
//! Pure logic over the storage traits: nothing here knows about streams or sessions.

pub mod sasl;
pub mod tokens;

/// What API views show instead of a write-only secret; sent back in a change, it keeps
/// the current secret.
pub const REDACTED: &str = "<redacted>";
