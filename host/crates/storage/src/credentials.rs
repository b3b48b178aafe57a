//! What is stored for an account's password: SCRAM keys per hash function (RFC 5802),
//! never the password itself. Deriving and checking them is the auth layer's job.

use serde::{Deserialize, Serialize};

/// SCRAM keys for one hash function (RFC 5802 §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramKeys {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

/// Everything stored for a password: the SCRAM keys for each supported hash. The password
/// itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredentials {
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
}
