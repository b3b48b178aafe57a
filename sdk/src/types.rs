//! The authenticator's request and answer, as plain Rust types.

/// How the client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// A password.
    Password,
    /// A bearer token from the tenant's identity system.
    Token,
}

/// The transport the client connected over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Bosh,
    Websocket,
}

/// Facts about the client's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The client's IP address as text, if known.
    pub client_address: Option<String>,
    pub transport: Transport,
    /// Whether the connection is encrypted.
    pub tls: bool,
}

/// One XEP-0077 in-band registration attempt on a tenant that turned registration on
/// (see [`crate::Authenticator::approve_registration`]). The server checked TLS, the
/// name, the rate and the account limit first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRequest {
    /// The tenant the domain belongs to.
    pub tenant: String,
    /// The XMPP domain.
    pub domain: String,
    /// The username (localpart), normalized.
    pub username: String,
    /// The password the client chose.
    pub password: String,
    /// The client's IP address as text, if known.
    pub client_address: Option<String>,
    /// Whether the connection is encrypted with TLS.
    pub tls: bool,
}

/// One authentication attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// The tenant the domain belongs to.
    pub tenant: String,
    /// The XMPP domain.
    pub domain: String,
    pub mechanism: Mechanism,
    /// The username as the client sent it (not normalized).
    pub username: String,
    /// The password or token.
    pub credential: String,
    pub connection: Connection,
}

impl AuthRequest {
    /// A password attempt over TLS on TCP from 127.0.0.1 (tenant `test`, domain
    /// `example.com`), for tests.
    pub fn password(username: &str, password: &str) -> AuthRequest {
        AuthRequest {
            tenant: "test".into(),
            domain: "example.com".into(),
            mechanism: Mechanism::Password,
            username: username.into(),
            credential: password.into(),
            connection: Connection {
                client_address: Some("127.0.0.1".into()),
                transport: Transport::Tcp,
                tls: true,
            },
        }
    }

    /// Like [`AuthRequest::password`], with a token.
    pub fn token(username: &str, token: &str) -> AuthRequest {
        AuthRequest {
            mechanism: Mechanism::Token,
            ..AuthRequest::password(username, token)
        }
    }

    /// The same request over a plain (unencrypted) connection.
    pub fn without_tls(mut self) -> AuthRequest {
        self.connection.tls = false;
        self
    }
}

/// The authenticated user. Build it with [`User::new`] and the chained setters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    /// The canonical username (localpart) the session gets.
    pub username: String,
    pub display_name: Option<String>,
    pub roles: Vec<String>,
    /// Seconds since the Unix epoch when the login stops being valid.
    pub expires_at: Option<u64>,
    pub attributes: Vec<(String, String)>,
}

impl User {
    pub fn new(username: impl Into<String>) -> User {
        User {
            username: username.into(),
            ..User::default()
        }
    }

    pub fn display_name(mut self, name: impl Into<String>) -> User {
        self.display_name = Some(name.into());
        self
    }

    pub fn role(mut self, role: impl Into<String>) -> User {
        self.roles.push(role.into());
        self
    }

    pub fn expires_at(mut self, unix_seconds: u64) -> User {
        self.expires_at = Some(unix_seconds);
        self
    }

    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> User {
        self.attributes.push((key.into(), value.into()));
        self
    }
}

/// Why authentication did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// Wrong username or credential.
    NotAuthorized,
    /// The account may not log in.
    AccountDisabled,
    /// Cannot decide now; the reason goes to the server log.
    TemporaryFailure(String),
}

impl AuthFailure {
    /// A temporary failure with a reason.
    pub fn temporary(reason: impl Into<String>) -> AuthFailure {
        AuthFailure::TemporaryFailure(reason.into())
    }
}

/// What [`crate::Authenticator::authenticate`] returns.
pub type AuthResult = Result<User, AuthFailure>;
