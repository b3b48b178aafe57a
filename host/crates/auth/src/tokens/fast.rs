//! XEP-0484 FAST tokens: per client (user-agent id) two slots, `current` and `new`, as the
//! XEP's implementation notes describe. A token is bound to the HT mechanism it was
//! requested for; it is checked with the HT family's proof (HMAC-SHA-256 keyed with the
//! token over `"Initiator"` followed by the channel-binding data) and answered with the
//! `"Responder"` proof. Using the `new` token promotes it to `current` (dropping the
//! older one); a token close to expiry is rotated; issuing a token replaces an unused
//! `new` one; `invalidate` removes the token used. A `count`, when the client sends
//! one, must grow on every use of a token (replay protection).
//!
//! Pure state: callers load [`FastSlots`] from storage, call these methods, store back.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};

use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::TokenError;
pub use heliograph_storage::tokens::{FastSlots, FastToken, HtMechanism};

/// The channel-binding data this mechanism needs from the connection, if it has it
/// (`Some(empty)` for NONE).
pub fn binding_data(mechanism: HtMechanism, cb: &crate::sasl::ChannelBindings) -> Option<Vec<u8>> {
    match mechanism {
        HtMechanism::None => Some(Vec::new()),
        HtMechanism::Endpoint => cb.tls_server_end_point.clone(),
        HtMechanism::Exporter => cb.tls_exporter.clone(),
    }
}

/// A successful FAST authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastUse {
    /// The `"Responder"` proof for the `<success/>` additional data.
    pub responder_proof: Vec<u8>,
    /// Half the token's lifetime or more has passed: issue a new one.
    pub due_for_rotation: bool,
}

fn proof(secret: &str, label: &[u8], cb: &[u8]) -> Vec<u8> {
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return Vec::new();
    };
    m.update(label);
    m.update(cb);
    m.finalize().into_bytes().to_vec()
}

/// The client's proof for `secret` (what an HT client sends after `username NUL`).
pub fn initiator_proof(secret: &str, cb: &[u8]) -> Vec<u8> {
    proof(secret, b"Initiator", cb)
}

/// Splits an HT initial response `authcid NUL initiator-hashed-token`.
pub fn parse_ht(input: &[u8]) -> Result<(String, Vec<u8>), TokenError> {
    let at = input
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| TokenError::Malformed("HT message without NUL".into()))?;
    let user = std::str::from_utf8(&input[..at])
        .map_err(|_| TokenError::Malformed("HT username is not UTF-8".into()))?;
    let hash = input[at + 1..].to_vec();
    if user.is_empty() || hash.len() != 32 {
        return Err(TokenError::Malformed("HT message fields".into()));
    }
    Ok((user.to_string(), hash))
}

/// What the auth layer does with a client's stored FAST slots.
pub trait FastSlotsExt {
    /// Issues a token for `mechanism` into the `new` slot (dropping an unused `new` one).
    fn issue(&mut self, mechanism: HtMechanism, now: u64, ttl: u64) -> FastToken;
    /// Checks a client's proof: the `new` slot first, then `current`. A match with an
    /// expired token removes it and fails with `Expired`.
    fn authenticate(
        &mut self,
        mechanism: HtMechanism,
        client_proof: &[u8],
        cb: &[u8],
        count: Option<u64>,
        invalidate: bool,
        now: u64,
    ) -> Result<FastUse, TokenError>;
}

impl FastSlotsExt for FastSlots {
    /// Issues a token for `mechanism` into the `new` slot (dropping an unused `new` one).
    fn issue(&mut self, mechanism: HtMechanism, now: u64, ttl: u64) -> FastToken {
        let secret: [u8; 32] = rand::random();
        let token = FastToken {
            mechanism,
            secret: B64.encode(secret),
            issued_at: now,
            expires_at: now.saturating_add(ttl),
            last_count: None,
        };
        self.new = Some(token.clone());
        token
    }

    /// Checks a client's proof: the `new` slot first, then `current`. A match with an
    /// expired token removes it and fails with `Expired`.
    fn authenticate(
        &mut self,
        mechanism: HtMechanism,
        client_proof: &[u8],
        cb: &[u8],
        count: Option<u64>,
        invalidate: bool,
        now: u64,
    ) -> Result<FastUse, TokenError> {
        for from_new in [true, false] {
            let slot = if from_new {
                &mut self.new
            } else {
                &mut self.current
            };
            let Some(token) = slot.as_mut() else {
                continue;
            };
            let expected = initiator_proof(&token.secret, cb);
            if token.mechanism != mechanism || !bool::from(expected.ct_eq(client_proof)) {
                continue;
            }
            if token.expires_at <= now {
                *slot = None;
                return Err(TokenError::Expired);
            }
            if let Some(c) = count {
                if token.last_count.is_some_and(|last| c <= last) {
                    return Err(TokenError::Revoked);
                }
                token.last_count = Some(c);
            }
            let used = token.clone();
            let responder_proof = proof(&used.secret, b"Responder", cb);
            let lifetime = used.expires_at.saturating_sub(used.issued_at);
            let due_for_rotation = used.expires_at.saturating_sub(now) * 2 <= lifetime;
            if invalidate {
                *slot = None;
            } else if from_new {
                // The new token is in use: it becomes current, the older one is gone.
                self.current = self.new.take();
            }
            return Ok(FastUse {
                responder_proof,
                due_for_rotation: due_for_rotation && !invalidate,
            });
        }
        Err(TokenError::BadSignature)
    }
}

/// Storage key of a client: SHA-256 (hex) of its user-agent id.
pub fn client_key(user_agent_id: &str) -> String {
    use sha2::Digest;
    Sha256::digest(user_agent_id.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: HtMechanism = HtMechanism::None;

    fn use_token(s: &mut FastSlots, t: &FastToken, now: u64) -> Result<FastUse, TokenError> {
        s.authenticate(M, &initiator_proof(&t.secret, b""), b"", None, false, now)
    }

    #[test]
    fn rotation_keeps_the_old_token_until_the_new_one_is_used() {
        let mut s = FastSlots::default();
        let t1 = s.issue(M, 0, 100);
        let u = use_token(&mut s, &t1, 10).unwrap();
        assert_eq!(u.responder_proof, proof(&t1.secret, b"Responder", b""));
        assert!(!u.due_for_rotation);
        assert_eq!(s.current.as_ref(), Some(&t1), "promoted to current");
        // Near expiry: rotation is due; the server issues t2 but t1 still works until
        // t2 is used (the client may not have received t2).
        assert!(use_token(&mut s, &t1, 60).unwrap().due_for_rotation);
        let t2 = s.issue(M, 60, 100);
        assert!(use_token(&mut s, &t1, 61).is_ok());
        assert!(use_token(&mut s, &t2, 62).is_ok());
        assert_eq!(use_token(&mut s, &t1, 63), Err(TokenError::BadSignature));
        // Issuing again drops an unused new token.
        let t3 = s.issue(M, 70, 100);
        let t4 = s.issue(M, 71, 100);
        assert_eq!(use_token(&mut s, &t3, 72), Err(TokenError::BadSignature));
        assert!(use_token(&mut s, &t4, 72).is_ok());
        assert_eq!(use_token(&mut s, &t2, 73), Err(TokenError::BadSignature));
    }

    #[test]
    fn expiry_mechanism_binding_count_and_invalidate() {
        let mut s = FastSlots::default();
        let t = s.issue(HtMechanism::Exporter, 0, 100);
        let cb = b"exporter-bytes";
        let p = initiator_proof(&t.secret, cb);
        // Bound to the mechanism and the channel.
        assert!(s.authenticate(M, &p, cb, None, false, 1).is_err());
        assert!(
            s.authenticate(HtMechanism::Exporter, &p, b"other", None, false, 1)
                .is_err()
        );
        assert!(
            s.authenticate(HtMechanism::Exporter, &p, cb, Some(5), false, 1)
                .is_ok()
        );
        // Replayed count.
        assert_eq!(
            s.authenticate(HtMechanism::Exporter, &p, cb, Some(5), false, 2),
            Err(TokenError::Revoked)
        );
        assert!(
            s.authenticate(HtMechanism::Exporter, &p, cb, Some(6), false, 2)
                .is_ok()
        );
        // Invalidate.
        assert!(
            s.authenticate(HtMechanism::Exporter, &p, cb, None, true, 3)
                .is_ok()
        );
        assert!(s.is_empty());
        // Expired: refused and removed.
        let t = s.issue(M, 0, 10);
        assert_eq!(use_token(&mut s, &t, 10), Err(TokenError::Expired));
        assert!(s.is_empty());
    }

    #[test]
    fn parses_ht_messages() {
        let mut msg = b"alice\0".to_vec();
        msg.extend([7u8; 32]);
        assert_eq!(parse_ht(&msg).unwrap(), ("alice".into(), vec![7u8; 32]));
        assert!(parse_ht(b"alice").is_err());
        assert!(parse_ht(b"\0aaaa").is_err());
        assert!(parse_ht(b"alice\0short").is_err());
    }
}
