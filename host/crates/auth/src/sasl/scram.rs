//! Server side of SCRAM (RFC 5802, RFC 7677) and SCRAM-PLUS with channel binding
//! (RFC 5056 via `tls-exporter`, RFC 9266, and `tls-server-end-point`, RFC 5929).
//!
//! The exchange is `client-first` → challenge `server-first` → `client-final` → success
//! with `v=<ServerSignature>`. An unknown username is not revealed: the server answers with
//! a salt derived from the username and fails only at the final step, exactly like a wrong
//! password.

use std::borrow::Cow;

use super::credentials::{fake_keys, prepare};
use super::crypto::AuthMessage;
use super::messages::{self, CbFlag, ClientFinal, ClientFirst, ParseError};
use super::{CredentialSource, Outcome, SaslContext, SaslFailure, ScramHash, ScramKeys};

/// Random bytes in the server's part of the nonce.
const SERVER_NONCE_LEN: usize = 18;

/// A failed step: the condition and a short text for the `<failure/>`.
type Reject = (SaslFailure, &'static str);

fn malformed(text: &'static str) -> Reject {
    (SaslFailure::MalformedRequest, text)
}

fn not_authorized(text: &'static str) -> Reject {
    (SaslFailure::NotAuthorized, text)
}

/// Every syntax error is `malformed-request`.
fn syntax_error(e: ParseError) -> Reject {
    match e {
        ParseError::Syntax(text) => malformed(text),
        ParseError::Base64(_) => malformed("invalid base64"),
        ParseError::MandatoryExtension => malformed("unsupported mandatory extension"),
    }
}

/// Channel-binding types the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CbType {
    TlsExporter,
    TlsServerEndPoint,
}

impl CbType {
    fn from_name(name: &str) -> Option<CbType> {
        match name {
            "tls-exporter" => Some(CbType::TlsExporter),
            "tls-server-end-point" => Some(CbType::TlsServerEndPoint),
            _ => None,
        }
    }
}

/// Where the exchange is.
enum State {
    /// Waiting for `client-first`; `prompted` once an empty challenge was sent because the
    /// client gave no initial response.
    Start { prompted: bool },
    /// `server-first` sent, waiting for `client-final`.
    AwaitingFinal(Box<Pending>),
    /// Succeeded or failed; any further message is an error.
    Done,
}

/// What the final step needs from the first.
struct Pending {
    /// The whole `client-first-message`; the gs2 header is `client_first[..bare_start]`.
    client_first: String,
    bare_start: usize,
    server_first: String,
    /// `r=` value of `server_first` (client nonce + server nonce).
    nonce_len: usize,
    username: String,
    authzid: Option<String>,
    channel_binding: Option<CbType>,
    keys: ScramKeys,
    known_user: bool,
}

impl Pending {
    fn gs2_header(&self) -> &str {
        &self.client_first[..self.bare_start]
    }

    fn nonce(&self) -> &str {
        &self.server_first[2..2 + self.nonce_len]
    }

    fn auth_message<'a>(&'a self, client_final: &ClientFinal<'a>) -> AuthMessage<'a> {
        AuthMessage {
            client_first_bare: &self.client_first[self.bare_start..],
            server_first: &self.server_first,
            client_final_without_proof: client_final.without_proof,
        }
    }
}

/// One SCRAM exchange on the server.
pub(crate) struct ScramServer {
    hash: ScramHash,
    plus: bool,
    ctx: SaslContext,
    state: State,
    /// Replaces the random server nonce (test vectors only).
    fixed_nonce: Option<String>,
}

impl std::fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Start { .. } => "start",
            State::AwaitingFinal(_) => "awaiting-final",
            State::Done => "done",
        };
        f.debug_struct("ScramServer")
            .field("hash", &self.hash)
            .field("plus", &self.plus)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    pub(crate) fn new(hash: ScramHash, plus: bool, ctx: SaslContext) -> Self {
        ScramServer {
            hash,
            plus,
            ctx,
            state: State::Start { prompted: false },
            fixed_nonce: None,
        }
    }

    /// Uses `nonce` as the server part of the nonce instead of a random one.
    #[cfg(test)]
    pub(crate) fn set_server_nonce(&mut self, nonce: &str) {
        self.fixed_nonce = Some(nonce.to_owned());
    }

    pub(crate) fn step(&mut self, input: &[u8], creds: &dyn CredentialSource) -> Outcome {
        let result = match std::mem::replace(&mut self.state, State::Done) {
            State::Start { prompted: false } if input.is_empty() => {
                self.state = State::Start { prompted: true };
                return Outcome::Challenge(Vec::new());
            }
            State::Start { .. } => self.client_first(input, creds).map(|(challenge, pending)| {
                self.state = State::AwaitingFinal(Box::new(pending));
                Outcome::Challenge(challenge.into_bytes())
            }),
            State::AwaitingFinal(pending) => self.client_final(&pending, input),
            State::Done => Err(malformed("exchange already complete")),
        };
        result
            .unwrap_or_else(|(condition, text)| Outcome::Failure(condition, Some(text.to_owned())))
    }

    /// Handles `client-first-message`, returning `server-first-message`.
    fn client_first(
        &mut self,
        input: &[u8],
        creds: &dyn CredentialSource,
    ) -> Result<(String, Pending), Reject> {
        let msg = std::str::from_utf8(input).map_err(|_| malformed("invalid UTF-8"))?;
        let first = messages::parse_client_first(msg).map_err(syntax_error)?;
        let channel_binding = self.check_cb_flag(first.cb_flag)?;
        let username = prepare(&first.username)
            .ok_or(malformed("invalid username"))?
            .into_owned();
        let (keys, known_user) = match creds.scram_keys(&username, self.hash) {
            Ok(Some(keys)) => (keys, true),
            Ok(None) => (fake_keys(self.hash, &username), false),
            Err(super::Unavailable) => {
                return Err((
                    SaslFailure::TemporaryAuthFailure,
                    "account storage unavailable",
                ));
            }
        };
        let (server_first, nonce_len) = self.server_first(&first, &keys);
        let pending = Pending {
            client_first: msg.to_owned(),
            bare_start: first.gs2_header.len(),
            server_first: server_first.clone(),
            nonce_len,
            username,
            authzid: first.authzid.map(Cow::into_owned),
            channel_binding,
            keys,
            known_user,
        };
        Ok((server_first, pending))
    }

    /// Checks the gs2 channel-binding flag against the mechanism and the connection.
    fn check_cb_flag(&self, flag: CbFlag<'_>) -> Result<Option<CbType>, Reject> {
        match (self.plus, flag) {
            (true, CbFlag::Required(name)) => CbType::from_name(name)
                .filter(|&t| self.cb_data(t).is_some())
                .map(Some)
                .ok_or(not_authorized("unsupported channel binding type")),
            (true, _) => Err(malformed("channel binding required by -PLUS mechanism")),
            (false, CbFlag::Required(_)) => {
                Err(malformed("channel binding requires a -PLUS mechanism"))
            }
            (false, CbFlag::SupportedButUnused) if self.ctx.plus_advertised => {
                Err(not_authorized("channel binding downgrade detected"))
            }
            (false, _) => Ok(None),
        }
    }

    fn cb_data(&self, cb: CbType) -> Option<&[u8]> {
        let bindings = &self.ctx.channel_bindings;
        match cb {
            CbType::TlsExporter => bindings.tls_exporter.as_deref(),
            CbType::TlsServerEndPoint => bindings.tls_server_end_point.as_deref(),
        }
    }

    /// Builds `server-first-message = r=<cnonce><snonce>,s=<salt>,i=<iterations>`; also
    /// returns the length of the combined nonce.
    fn server_first(&mut self, first: &ClientFirst<'_>, keys: &ScramKeys) -> (String, usize) {
        let server_nonce = self
            .fixed_nonce
            .take()
            .unwrap_or_else(|| messages::encode_base64(&rand::random::<[u8; SERVER_NONCE_LEN]>()));
        let msg = format!(
            "r={}{},s={},i={}",
            first.nonce,
            server_nonce,
            messages::encode_base64(&keys.salt),
            keys.iterations
        );
        (msg, first.nonce.len() + server_nonce.len())
    }

    /// Handles `client-final-message`, returning success with `v=<ServerSignature>`.
    fn client_final(&self, pending: &Pending, input: &[u8]) -> Result<Outcome, Reject> {
        let msg = std::str::from_utf8(input).map_err(|_| malformed("invalid UTF-8"))?;
        let last = messages::parse_client_final(msg).map_err(syntax_error)?;
        if last.nonce != pending.nonce() {
            return Err(not_authorized("nonce mismatch"));
        }
        if !self.channel_binding_matches(pending, &last.channel_binding) {
            return Err(not_authorized("channel bindings do not match"));
        }
        let auth_message = pending.auth_message(&last);
        let proof_ok = auth_message.verify_proof(self.hash, &pending.keys.stored_key, &last.proof);
        if !(proof_ok && pending.known_user) {
            return Err(not_authorized("invalid credentials"));
        }
        let signature = auth_message.server_signature(self.hash, &pending.keys.server_key);
        Ok(Outcome::Success {
            username: pending.username.clone(),
            authzid: pending.authzid.clone(),
            additional_data: Some(
                format!("v={}", messages::encode_base64(signature.as_ref())).into_bytes(),
            ),
        })
    }

    /// `c=` must be the gs2 header followed by the channel-binding data (for `p=` only).
    fn channel_binding_matches(&self, pending: &Pending, received: &[u8]) -> bool {
        let header = pending.gs2_header().as_bytes();
        let data = pending
            .channel_binding
            .and_then(|t| self.cb_data(t))
            .unwrap_or_default();
        received.len() == header.len() + data.len()
            && received.starts_with(header)
            && received.ends_with(data)
    }
}
