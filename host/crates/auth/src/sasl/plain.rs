//! Server side of PLAIN (RFC 4616): one message `[authzid] NUL authcid NUL passwd`,
//! checked with [`CredentialSource::check_password`]. A wrong password and an unknown
//! user get the same answer.

use super::credentials::prepare;
use super::{CredentialSource, Outcome, PasswordCheck, SaslFailure};

/// Longest accepted authzid, authcid or password, in bytes. RFC 4616 requires at least 255;
/// a little more room is left for long generated passwords.
pub(crate) const MAX_FIELD_LEN: usize = 1024;

/// One PLAIN exchange on the server.
#[derive(Debug, Default)]
pub(crate) struct PlainServer {
    /// An empty challenge was sent because the client gave no initial response.
    prompted: bool,
    done: bool,
}

/// The three fields of a PLAIN message.
#[derive(Debug, PartialEq, Eq)]
struct PlainMessage<'a> {
    authzid: Option<&'a str>,
    authcid: &'a str,
    password: &'a str,
}

impl PlainServer {
    pub(crate) fn step(&mut self, input: &[u8], creds: &dyn CredentialSource) -> Outcome {
        if self.done {
            return failure(SaslFailure::MalformedRequest, "exchange already complete");
        }
        if input.is_empty() && !self.prompted {
            self.prompted = true;
            return Outcome::Challenge(Vec::new());
        }
        self.done = true;
        let Some(msg) = parse(input) else {
            return failure(SaslFailure::MalformedRequest, "malformed PLAIN message");
        };
        let (Some(username), Some(password)) = (prepare(msg.authcid), prepare(msg.password)) else {
            return failure(
                SaslFailure::MalformedRequest,
                "invalid username or password encoding",
            );
        };
        match creds.check_password(&username, &password) {
            PasswordCheck::Valid => Outcome::Success {
                username: username.into_owned(),
                authzid: msg.authzid.map(str::to_owned),
                additional_data: None,
            },
            PasswordCheck::Invalid | PasswordCheck::NoSuchUser => {
                failure(SaslFailure::NotAuthorized, "invalid credentials")
            }
            PasswordCheck::Unavailable => failure(
                SaslFailure::TemporaryAuthFailure,
                "account storage unavailable",
            ),
        }
    }
}

/// The fields of a PLAIN message, SASLprep'd, for verifiers that need the password itself
/// (authenticator plugins) rather than a [`CredentialSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    pub authzid: Option<String>,
    pub username: String,
    pub password: String,
}

/// Parses and prepares a PLAIN message the way [`PlainServer`] does; a malformed message is
/// the `Failure` outcome the server would send.
pub fn parse_plain(input: &[u8]) -> Result<PlainCredentials, Outcome> {
    let Some(msg) = parse(input) else {
        return Err(failure(
            SaslFailure::MalformedRequest,
            "malformed PLAIN message",
        ));
    };
    let (Some(username), Some(password)) = (prepare(msg.authcid), prepare(msg.password)) else {
        return Err(failure(
            SaslFailure::MalformedRequest,
            "invalid username or password encoding",
        ));
    };
    Ok(PlainCredentials {
        authzid: msg.authzid.map(str::to_owned),
        username: username.into_owned(),
        password: password.into_owned(),
    })
}

fn failure(condition: SaslFailure, text: &str) -> Outcome {
    Outcome::Failure(condition, Some(text.to_owned()))
}

/// Splits `[authzid] NUL authcid NUL passwd`; authcid and passwd must be non-empty, every
/// field valid UTF-8 of at most [`MAX_FIELD_LEN`] bytes.
fn parse(input: &[u8]) -> Option<PlainMessage<'_>> {
    let mut fields = input.split(|&b| b == 0);
    let (authzid, authcid, password) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() || authcid.is_empty() || password.is_empty() {
        return None;
    }
    Some(PlainMessage {
        authzid: Some(field(authzid)?).filter(|a| !a.is_empty()),
        authcid: field(authcid)?,
        password: field(password)?,
    })
}

/// A field as UTF-8 of at most [`MAX_FIELD_LEN`] bytes.
fn field(f: &[u8]) -> Option<&str> {
    std::str::from_utf8(f)
        .ok()
        .filter(|_| f.len() <= MAX_FIELD_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields() {
        assert_eq!(
            parse(b"\0user\0pass"),
            Some(PlainMessage {
                authzid: None,
                authcid: "user",
                password: "pass"
            })
        );
        assert_eq!(
            parse("admin@x\0us\u{e9}r\0p\u{e4}ss".as_bytes()),
            Some(PlainMessage {
                authzid: Some("admin@x"),
                authcid: "us\u{e9}r",
                password: "p\u{e4}ss"
            })
        );
        let long = "p".repeat(MAX_FIELD_LEN);
        assert!(parse(format!("\0user\0{long}").as_bytes()).is_some());
    }

    #[test]
    fn rejects_malformed() {
        let too_long = format!("\0user\0{}", "p".repeat(MAX_FIELD_LEN + 1));
        for input in [
            &b"user\0pass"[..],
            b"\0\0pass",
            b"\0user\0",
            b"\0user\0pass\0",
            b"a\0b\0c\0d",
            b"\0us\xffer\0pass",
            b"\xff\0user\0pass",
            b"userpass",
            too_long.as_bytes(),
        ] {
            assert_eq!(parse(input), None, "{input:?}");
        }
    }
}
