//! Client side of SCRAM (RFC 5802, RFC 7677) including -PLUS channel binding, and the
//! PLAIN initial response (RFC 4616). Used by integration tests and load generators.
//!
//! ```
//! use heliograph_auth::sasl::ScramHash;
//! use heliograph_auth::sasl::client::{ClientChannelBinding, ScramClient};
//!
//! let mut client =
//!     ScramClient::new(ScramHash::Sha256, "juliet", "secret", ClientChannelBinding::Unsupported)?;
//! assert_eq!(client.mechanism().name(), "SCRAM-SHA-256");
//! let first = client.client_first(); // send in <auth/>
//! assert!(first.starts_with("n,,n=juliet,r="));
//! // let last = client.handle_server_first(&challenge)?;  // send in <response/>
//! // client.handle_server_final(&success_data)?;          // verifies the server
//! # Ok::<(), heliograph_auth::sasl::client::ScramClientError>(())
//! ```

use thiserror::Error;

use super::credentials::prepare;
use super::crypto::{AuthMessage, Digest};
pub use super::messages::ParseError;
use super::messages::{self, ServerFinal};
use super::{Mechanism, ScramHash};

/// Random bytes in the client's nonce.
const CLIENT_NONCE_LEN: usize = 18;

/// Channel-binding choice of the client, which determines the gs2 header.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientChannelBinding {
    /// `n`: the client does not support channel binding (or has no TLS).
    Unsupported,
    /// `y`: the client supports channel binding but the server advertised no -PLUS
    /// mechanism. A server that did advertise one treats this as a downgrade and fails.
    SupportedButUnused,
    /// `p=<name>`: bind to the connection with this type (`tls-exporter`,
    /// `tls-server-end-point`) and data; selects the -PLUS mechanism.
    Plus { name: String, data: Vec<u8> },
}

impl std::fmt::Debug for ClientChannelBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientChannelBinding::Unsupported => f.write_str("Unsupported"),
            ClientChannelBinding::SupportedButUnused => f.write_str("SupportedButUnused"),
            ClientChannelBinding::Plus { name, data } => {
                write!(f, "Plus {{ name: {name:?}, data: <{} bytes> }}", data.len())
            }
        }
    }
}

/// Errors of the SCRAM client.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScramClientError {
    /// The username, password or authzid is prohibited or empty under SASLprep.
    #[error("{0} is not valid under SASLprep")]
    InvalidString(&'static str),
    /// The channel-binding name is not a valid `cb-name`.
    #[error("invalid channel binding name")]
    InvalidChannelBindingName,
    /// A method was called out of order.
    #[error("SCRAM client method called out of order")]
    OutOfOrder,
    /// The server's message does not follow the SCRAM grammar.
    #[error("malformed server message: {0}")]
    Malformed(#[from] ParseError),
    /// The server nonce does not extend the client nonce.
    #[error("server nonce does not extend the client nonce")]
    NonceMismatch,
    /// The server answered `e=<error>`.
    #[error("server error: {0}")]
    Server(String),
    /// The server signature is wrong: the server does not know the password.
    #[error("invalid server signature")]
    InvalidServerSignature,
}

/// Where the exchange is.
enum State {
    Start,
    /// `client-first` sent; `client_first[bare_start..]` is the bare message.
    SentFirst {
        client_first: String,
        bare_start: usize,
        nonce_len: usize,
    },
    /// `client-final` sent; the server must prove this signature.
    SentFinal {
        server_signature: Digest,
    },
    Done,
}

/// A SCRAM client exchange: [`client_first`](Self::client_first), then
/// [`handle_server_first`](Self::handle_server_first), then
/// [`handle_server_final`](Self::handle_server_final).
pub struct ScramClient {
    hash: ScramHash,
    /// SASLprep'd and `saslname`-escaped.
    username: String,
    /// SASLprep'd and `saslname`-escaped.
    authzid: Option<String>,
    /// SASLprep'd.
    password: String,
    channel_binding: ClientChannelBinding,
    state: State,
    /// Replaces the random client nonce (test vectors only).
    fixed_nonce: Option<String>,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism())
            .field("username", &self.username)
            .field("authzid", &self.authzid)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Prepares an exchange for `username` (the authentication identity, usually the
    /// localpart) and `password`, both SASLprep'd here.
    pub fn new(
        hash: ScramHash,
        username: &str,
        password: &str,
        channel_binding: ClientChannelBinding,
    ) -> Result<ScramClient, ScramClientError> {
        let username = prepare(username).ok_or(ScramClientError::InvalidString("username"))?;
        let password = prepare(password).ok_or(ScramClientError::InvalidString("password"))?;
        if let ClientChannelBinding::Plus { name, .. } = &channel_binding {
            let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
            if name.is_empty() || !name.bytes().all(valid) {
                return Err(ScramClientError::InvalidChannelBindingName);
            }
        }
        Ok(ScramClient {
            hash,
            username: messages::encode_saslname(&username).into_owned(),
            authzid: None,
            password: password.into_owned(),
            channel_binding,
            state: State::Start,
            fixed_nonce: None,
        })
    }

    /// Requests authorization as `authzid` (sent as `a=` in the gs2 header).
    pub fn with_authzid(mut self, authzid: &str) -> Result<ScramClient, ScramClientError> {
        let authzid = prepare(authzid).ok_or(ScramClientError::InvalidString("authzid"))?;
        self.authzid = Some(messages::encode_saslname(&authzid).into_owned());
        Ok(self)
    }

    /// Uses `nonce` instead of a random client nonce (test vectors only).
    #[cfg(test)]
    pub(crate) fn with_nonce(mut self, nonce: &str) -> ScramClient {
        self.fixed_nonce = Some(nonce.to_owned());
        self
    }

    /// The mechanism to request: the -PLUS variant when binding to the channel.
    pub fn mechanism(&self) -> Mechanism {
        let plus = matches!(self.channel_binding, ClientChannelBinding::Plus { .. });
        match (self.hash, plus) {
            (ScramHash::Sha1, false) => Mechanism::ScramSha1,
            (ScramHash::Sha1, true) => Mechanism::ScramSha1Plus,
            (ScramHash::Sha256, false) => Mechanism::ScramSha256,
            (ScramHash::Sha256, true) => Mechanism::ScramSha256Plus,
        }
    }

    /// Starts (or restarts) the exchange: the `client-first-message`, to send as the
    /// initial response.
    pub fn client_first(&mut self) -> String {
        let nonce = match &self.fixed_nonce {
            Some(nonce) => nonce.clone(),
            None => messages::encode_base64(&rand::random::<[u8; CLIENT_NONCE_LEN]>()),
        };
        let mut client_first = self.gs2_header();
        let bare_start = client_first.len();
        client_first.push_str("n=");
        client_first.push_str(&self.username);
        client_first.push_str(",r=");
        client_first.push_str(&nonce);
        self.state = State::SentFirst {
            client_first: client_first.clone(),
            bare_start,
            nonce_len: nonce.len(),
        };
        client_first
    }

    /// Processes the `server-first-message` (the challenge) and returns the
    /// `client-final-message` carrying the proof. Runs PBKDF2 with the server's salt and
    /// iteration count.
    pub fn handle_server_first(&mut self, server_first: &str) -> Result<String, ScramClientError> {
        let State::SentFirst {
            client_first,
            bare_start,
            nonce_len,
        } = &self.state
        else {
            return Err(ScramClientError::OutOfOrder);
        };
        let parsed = messages::parse_server_first(server_first)?;
        let client_nonce = &client_first[client_first.len() - nonce_len..];
        if parsed.nonce.len() <= client_nonce.len() || !parsed.nonce.starts_with(client_nonce) {
            return Err(ScramClientError::NonceMismatch);
        }
        let without_proof = format!(
            "c={},r={}",
            self.channel_binding_input(&client_first[..*bare_start]),
            parsed.nonce
        );
        let hash = self.hash;
        let salted =
            hash.salted_password(self.password.as_bytes(), &parsed.salt, parsed.iterations);
        let auth_message = AuthMessage {
            client_first_bare: &client_first[*bare_start..],
            server_first,
            client_final_without_proof: &without_proof,
        };
        let proof = auth_message.client_proof(hash, &hash.client_key(&salted));
        let server_signature =
            auth_message.server_signature(hash, hash.server_key(&salted).as_ref());
        let client_final = format!(
            "{without_proof},p={}",
            messages::encode_base64(proof.as_ref())
        );
        self.state = State::SentFinal { server_signature };
        Ok(client_final)
    }

    /// Processes the `server-final-message` (the `<success/>` data) and checks the server
    /// signature in constant time.
    pub fn handle_server_final(&mut self, server_final: &str) -> Result<(), ScramClientError> {
        let State::SentFinal { server_signature } = &self.state else {
            return Err(ScramClientError::OutOfOrder);
        };
        let verified = match messages::parse_server_final(server_final)? {
            ServerFinal::Error(e) => Err(ScramClientError::Server(e.to_owned())),
            ServerFinal::Verifier(v) if server_signature.ct_eq(&v) => Ok(()),
            ServerFinal::Verifier(_) => Err(ScramClientError::InvalidServerSignature),
        };
        self.state = State::Done;
        verified
    }

    /// `gs2-header = gs2-cbind-flag "," [authzid] ","`.
    fn gs2_header(&self) -> String {
        let mut header = match &self.channel_binding {
            ClientChannelBinding::Unsupported => String::from("n,"),
            ClientChannelBinding::SupportedButUnused => String::from("y,"),
            ClientChannelBinding::Plus { name, .. } => format!("p={name},"),
        };
        if let Some(authzid) = &self.authzid {
            header.push_str("a=");
            header.push_str(authzid);
        }
        header.push(',');
        header
    }

    /// base64 of the gs2 header followed by the channel-binding data (for `p=` only).
    fn channel_binding_input(&self, gs2_header: &str) -> String {
        match &self.channel_binding {
            ClientChannelBinding::Plus { data, .. } => {
                let mut input = Vec::with_capacity(gs2_header.len() + data.len());
                input.extend_from_slice(gs2_header.as_bytes());
                input.extend_from_slice(data);
                messages::encode_base64(&input)
            }
            _ => messages::encode_base64(gs2_header.as_bytes()),
        }
    }
}

/// The PLAIN (RFC 4616) initial response `[authzid] NUL username NUL password`.
pub fn plain_initial_response(authzid: Option<&str>, username: &str, password: &str) -> Vec<u8> {
    let authzid = authzid.unwrap_or_default();
    let mut out = Vec::with_capacity(authzid.len() + username.len() + password.len() + 2);
    out.extend_from_slice(authzid.as_bytes());
    out.push(0);
    out.extend_from_slice(username.as_bytes());
    out.push(0);
    out.extend_from_slice(password.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the client against the RFC messages and checks every message it produces.
    fn check_vector(
        hash: ScramHash,
        nonce: &str,
        server_first: &str,
        client_final: &str,
        server_final: &str,
    ) {
        let mut client =
            ScramClient::new(hash, "user", "pencil", ClientChannelBinding::Unsupported)
                .unwrap()
                .with_nonce(nonce);
        assert_eq!(client.client_first(), format!("n,,n=user,r={nonce}"));
        assert_eq!(
            client.handle_server_first(server_first).unwrap(),
            client_final
        );
        client.handle_server_final(server_final).unwrap();
    }

    #[test]
    fn rfc_5802_sha1_vector() {
        check_vector(
            ScramHash::Sha1,
            "fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        );
    }

    #[test]
    fn rfc_7677_sha256_vector() {
        check_vector(
            ScramHash::Sha256,
            "rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        );
    }

    #[test]
    fn gs2_headers() {
        let client = |cb| {
            ScramClient::new(ScramHash::Sha1, "us,er", "p", cb)
                .unwrap()
                .with_nonce("N")
        };
        let plus = ClientChannelBinding::Plus {
            name: "tls-exporter".into(),
            data: vec![1],
        };
        assert_eq!(
            client(ClientChannelBinding::Unsupported).client_first(),
            "n,,n=us=2Cer,r=N"
        );
        assert_eq!(
            client(ClientChannelBinding::SupportedButUnused).client_first(),
            "y,,n=us=2Cer,r=N"
        );
        assert_eq!(
            client(plus.clone()).client_first(),
            "p=tls-exporter,,n=us=2Cer,r=N"
        );
        let mut c = client(plus).with_authzid("a=b").unwrap();
        assert_eq!(c.mechanism(), Mechanism::ScramSha1Plus);
        assert_eq!(c.client_first(), "p=tls-exporter,a=a=3Db,n=us=2Cer,r=N");
        // c= covers the header and the binding data.
        let last = c.handle_server_first("r=NX,s=QQ==,i=1").unwrap();
        assert!(last.starts_with(&format!(
            "c={},",
            messages::encode_base64(b"p=tls-exporter,a=a=3Db,\x01")
        )));
    }

    #[test]
    fn rejects_bad_server_messages() {
        let mut c = ScramClient::new(
            ScramHash::Sha256,
            "user",
            "pencil",
            ClientChannelBinding::Unsupported,
        )
        .unwrap()
        .with_nonce("abc");
        assert_eq!(
            c.handle_server_first("r=abcd,s=QQ==,i=1"),
            Err(ScramClientError::OutOfOrder)
        );
        c.client_first();
        assert_eq!(
            c.handle_server_first("r=abc,s=QQ==,i=1"),
            Err(ScramClientError::NonceMismatch)
        );
        assert_eq!(
            c.handle_server_first("r=xbcd,s=QQ==,i=1"),
            Err(ScramClientError::NonceMismatch)
        );
        assert_eq!(
            c.handle_server_first("r=abcd,s=QQ==,i=0"),
            Err(ScramClientError::Malformed(ParseError::Syntax(
                "invalid iteration count"
            )))
        );
        c.handle_server_first("r=abcd,s=QQ==,i=1").unwrap();
        assert_eq!(
            c.handle_server_final("v=AAAA"),
            Err(ScramClientError::InvalidServerSignature)
        );
        assert_eq!(
            c.handle_server_final("v=AAAA"),
            Err(ScramClientError::OutOfOrder)
        );
        c.client_first();
        c.handle_server_first("r=abcd,s=QQ==,i=1").unwrap();
        assert_eq!(
            c.handle_server_final("e=invalid-proof"),
            Err(ScramClientError::Server("invalid-proof".into()))
        );
    }

    #[test]
    fn rejects_invalid_inputs() {
        let new = |user, pass, cb| ScramClient::new(ScramHash::Sha1, user, pass, cb).map(|_| ());
        let cb = |name: &str| ClientChannelBinding::Plus {
            name: name.into(),
            data: vec![],
        };
        assert_eq!(
            new("", "p", ClientChannelBinding::Unsupported),
            Err(ScramClientError::InvalidString("username"))
        );
        assert_eq!(
            new("u", "\u{7}", ClientChannelBinding::Unsupported),
            Err(ScramClientError::InvalidString("password"))
        );
        assert_eq!(
            new("u", "p", cb("a,b")),
            Err(ScramClientError::InvalidChannelBindingName)
        );
        assert_eq!(
            new("u", "p", cb("")),
            Err(ScramClientError::InvalidChannelBindingName)
        );
    }

    #[test]
    fn plain_response() {
        assert_eq!(
            plain_initial_response(None, "user", "pass"),
            b"\0user\0pass"
        );
        assert_eq!(
            plain_initial_response(Some("admin"), "u", "p"),
            b"admin\0u\0p"
        );
    }
}
