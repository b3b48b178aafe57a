//! Fuzz target `sasl`: the server side of the SASL mechanisms ([`SaslServer`]: PLAIN and
//! the SCRAM family, whose client-first and client-final parsers decode saslnames and
//! base64) and the token mechanisms' message parsers (OAUTHBEARER, X-OAUTH, the FAST HT
//! initial response).
//!
//! Input: byte 0 picks the mechanism (low 3 bits) and the connection's channel bindings
//! (bits 3-4); the rest is split at 0xFF bytes (never part of UTF-8, so SCRAM text cannot
//! contain one) into the client's messages, fed in turn. In a message, `%NONCE%` is
//! replaced by the nonce of the server's last challenge, so that the fuzzer gets past the
//! nonce check into the proof and channel-binding checks. Each message is also given to
//! the token parsers. Checked: nothing panics; a finished exchange refuses further
//! messages; only the one known account ever succeeds.
#![no_main]

use heliograph_auth::sasl::{
    ChannelBindings, CredentialSource, Mechanism, Outcome, PasswordCheck, SaslContext, SaslFailure,
    SaslServer, ScramHash, ScramKeys, StoredCredentials, Unavailable,
    bearer::{parse_oauthbearer, parse_xoauth},
    derive_credentials, parse_plain,
};
use heliograph_auth::tokens::fast::parse_ht;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// `juliet` / `secret`, with cheap keys (the parsers are what is fuzzed, not PBKDF2).
struct Accounts(StoredCredentials);

impl CredentialSource for Accounts {
    fn scram_keys(
        &self,
        username: &str,
        hash: ScramHash,
    ) -> Result<Option<ScramKeys>, Unavailable> {
        match (username, hash) {
            ("juliet", ScramHash::Sha1) => Ok(Some(self.0.sha1.clone())),
            ("juliet", ScramHash::Sha256) => Ok(Some(self.0.sha256.clone())),
            ("outage", _) => Err(Unavailable),
            _ => Ok(None),
        }
    }

    fn check_password(&self, username: &str, password: &str) -> PasswordCheck {
        match (username, password) {
            ("juliet", "secret") => PasswordCheck::Valid,
            ("juliet", _) => PasswordCheck::Invalid,
            ("outage", _) => PasswordCheck::Unavailable,
            _ => PasswordCheck::NoSuchUser,
        }
    }
}

fn accounts() -> &'static Accounts {
    static ACCOUNTS: OnceLock<Accounts> = OnceLock::new();
    ACCOUNTS.get_or_init(|| Accounts(derive_credentials("secret", 1).expect("valid password")))
}

const MECHANISMS: [Mechanism; 8] = [
    Mechanism::ScramSha256Plus,
    Mechanism::ScramSha1Plus,
    Mechanism::ScramSha256,
    Mechanism::ScramSha1,
    Mechanism::Plain,
    Mechanism::OAuthBearer,
    Mechanism::XOAuth,
    Mechanism::XOAuth2,
];

/// The `r=` value of a SCRAM server-first message.
fn server_nonce(challenge: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(challenge).ok()?;
    let r = text.split(',').find_map(|a| a.strip_prefix("r="))?;
    Some(r.to_string())
}

fuzz_target!(|data: &[u8]| {
    let [selector, rest @ ..] = data else {
        return;
    };
    let mechanism = MECHANISMS[usize::from(selector & 7)];
    let channel_bindings = ChannelBindings {
        tls_exporter: (selector & 8 != 0).then(|| b"exporter-bytes".to_vec()),
        tls_server_end_point: (selector & 16 != 0).then(|| vec![0xAB; 32]),
    };
    let ctx = SaslContext {
        plus_advertised: channel_bindings != ChannelBindings::default(),
        channel_bindings,
    };
    let mut server = SaslServer::new(mechanism, ctx);
    let mut nonce: Option<String> = None;
    let mut finished = false;
    for message in rest.split(|&b| b == 0xFF) {
        let _ = parse_plain(message);
        let _ = parse_oauthbearer(message);
        let _ = parse_xoauth(message);
        let _ = parse_ht(message);

        let message = match &nonce {
            Some(n) => String::from_utf8_lossy(message)
                .replace("%NONCE%", n)
                .into_bytes(),
            None => message.to_vec(),
        };
        let outcome = server.step(&message, accounts());
        if finished {
            // (The token mechanisms are run by the session: here they always refuse.)
            assert!(
                mechanism.is_token()
                    || matches!(outcome, Outcome::Failure(SaslFailure::MalformedRequest, _)),
                "a finished exchange went on: {outcome:?}"
            );
            continue;
        }
        match outcome {
            Outcome::Challenge(challenge) => nonce = server_nonce(&challenge),
            Outcome::Success { username, .. } => {
                assert_eq!(username, "juliet", "success for an unknown user");
                finished = true;
            }
            Outcome::Failure(..) => finished = true,
        }
    }
});
