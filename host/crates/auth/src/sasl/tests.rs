//! Exchange tests of [`SaslServer`]: the RFC 5802 / RFC 7677 test vectors, and full rounds
//! against the [`client`](super::client) implementation.

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};

use super::client::{ClientChannelBinding, ScramClient, plain_initial_response};
use super::credentials::scram_keys;
use super::*;

/// Accounts for the tests: username → credentials.
struct Accounts(HashMap<&'static str, StoredCredentials>);

impl Accounts {
    /// `juliet` / `secret` with cheap keys.
    fn new() -> Accounts {
        Accounts(HashMap::from([(
            "juliet",
            derive_credentials("secret", 64).unwrap(),
        )]))
    }

    /// `user` / `pencil` with the salts of the RFC 5802 and RFC 7677 examples.
    fn rfc() -> Accounts {
        let keys = |hash, salt| scram_keys(hash, b"pencil", &BASE64.decode(salt).unwrap(), 4096);
        let creds = StoredCredentials {
            sha1: keys(ScramHash::Sha1, "QSXCR+Q6sek8bf92"),
            sha256: keys(ScramHash::Sha256, "W22ZaJ0SNY7soEsUEjb6gQ=="),
        };
        Accounts(HashMap::from([("user", creds)]))
    }
}

impl CredentialSource for Accounts {
    fn scram_keys(
        &self,
        username: &str,
        hash: ScramHash,
    ) -> Result<Option<ScramKeys>, Unavailable> {
        let Some(creds) = self.0.get(username) else {
            return Ok(None);
        };
        Ok(Some(match hash {
            ScramHash::Sha1 => creds.sha1.clone(),
            ScramHash::Sha256 => creds.sha256.clone(),
        }))
    }

    fn check_password(&self, username: &str, password: &str) -> PasswordCheck {
        match self.0.get(username) {
            None => PasswordCheck::NoSuchUser,
            Some(c) if verify_password(password, &c.sha256, ScramHash::Sha256) => {
                PasswordCheck::Valid
            }
            Some(_) => PasswordCheck::Invalid,
        }
    }
}

const EXPORTER: &[u8] = b"exporter-keying-material-32-byte";
const END_POINT: &[u8] = b"certificate-hash";

fn tls_ctx() -> SaslContext {
    SaslContext {
        channel_bindings: ChannelBindings {
            tls_exporter: Some(EXPORTER.to_vec()),
            tls_server_end_point: Some(END_POINT.to_vec()),
        },
        plus_advertised: true,
    }
}

fn client(hash: ScramHash, user: &str, password: &str, cb: ClientChannelBinding) -> ScramClient {
    ScramClient::new(hash, user, password, cb).unwrap()
}

fn plus(name: &str, data: &[u8]) -> ClientChannelBinding {
    ClientChannelBinding::Plus {
        name: name.into(),
        data: data.to_vec(),
    }
}

fn failure(condition: SaslFailure, text: &str) -> Outcome {
    Outcome::Failure(condition, Some(text.into()))
}

fn text(data: &[u8]) -> &str {
    std::str::from_utf8(data).unwrap()
}

/// Runs a SCRAM exchange for `mechanism` until the server stops challenging; returns every
/// server outcome. On success the client must accept the server signature, and the server
/// must refuse any further message.
fn exchange_with(
    mechanism: Mechanism,
    ctx: SaslContext,
    mut client: ScramClient,
    creds: &Accounts,
) -> Vec<Outcome> {
    let mut server = SaslServer::new(mechanism, ctx);
    let mut outcomes = vec![server.step(client.client_first().as_bytes(), creds)];
    if let Outcome::Challenge(challenge) = &outcomes[0] {
        let last = client.handle_server_first(text(challenge)).unwrap();
        outcomes.push(server.step(last.as_bytes(), creds));
    }
    if let Some(Outcome::Success {
        additional_data, ..
    }) = outcomes.last()
    {
        client
            .handle_server_final(text(additional_data.as_ref().unwrap()))
            .unwrap();
    }
    let after = server.step(b"c=biws,r=x,p=AAAA", creds);
    assert_eq!(
        after,
        failure(SaslFailure::MalformedRequest, "exchange already complete")
    );
    outcomes
}

fn exchange(ctx: SaslContext, client: ScramClient, creds: &Accounts) -> Vec<Outcome> {
    let mechanism = client.mechanism();
    exchange_with(mechanism, ctx, client, creds)
}

/// Outcome list of a successful exchange: one challenge, then success for `juliet`.
fn assert_success(outcomes: &[Outcome], authzid: Option<&str>) {
    assert!(matches!(outcomes[0], Outcome::Challenge(_)), "{outcomes:?}");
    match &outcomes[1..] {
        [
            Outcome::Success {
                username,
                authzid: a,
                additional_data: Some(v),
            },
        ] => {
            assert_eq!(username, "juliet");
            assert_eq!(a.as_deref(), authzid);
            assert!(v.starts_with(b"v="));
        }
        other => panic!("expected success, got {other:?}"),
    }
}

// ---- RFC test vectors ------------------------------------------------------------------

fn check_server_vector(
    mechanism: Mechanism,
    client_first: &str,
    server_nonce: &str,
    messages: [&str; 3],
) {
    let [server_first, client_final, server_final] = messages;
    let mut server = SaslServer::new(mechanism, SaslContext::default());
    server.set_server_nonce(server_nonce);
    let creds = Accounts::rfc();
    assert_eq!(
        server.step(client_first.as_bytes(), &creds),
        Outcome::Challenge(server_first.into())
    );
    assert_eq!(
        server.step(client_final.as_bytes(), &creds),
        Outcome::Success {
            username: "user".into(),
            authzid: None,
            additional_data: Some(server_final.into()),
        }
    );
}

#[test]
fn rfc_5802_sha1_vector_server() {
    check_server_vector(
        Mechanism::ScramSha1,
        "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        "3rfcNHYJY1ZVvWVs7j",
        [
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        ],
    );
}

#[test]
fn rfc_7677_sha256_vector_server() {
    check_server_vector(
        Mechanism::ScramSha256,
        "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        [
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ],
    );
}

#[test]
fn rfc_vector_with_wrong_proof_fails() {
    let mut server = SaslServer::new(Mechanism::ScramSha1, SaslContext::default());
    server.set_server_nonce("3rfcNHYJY1ZVvWVs7j");
    let creds = Accounts::rfc();
    server.step(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL", &creds);
    let last =
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v1X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    assert_eq!(
        server.step(last, &creds),
        failure(SaslFailure::NotAuthorized, "invalid credentials")
    );
}

// ---- Full exchanges ----------------------------------------------------------------------

#[test]
fn scram_without_channel_binding() {
    let creds = Accounts::new();
    for hash in [ScramHash::Sha1, ScramHash::Sha256] {
        let c = client(hash, "juliet", "secret", ClientChannelBinding::Unsupported);
        assert_success(&exchange(SaslContext::default(), c, &creds), None);
        // `n` is fine even when -PLUS was advertised.
        let c = client(hash, "juliet", "secret", ClientChannelBinding::Unsupported);
        assert_success(&exchange(tls_ctx(), c, &creds), None);
        // `y` is fine when -PLUS was not advertised.
        let c = client(
            hash,
            "juliet",
            "secret",
            ClientChannelBinding::SupportedButUnused,
        );
        assert_success(&exchange(SaslContext::default(), c, &creds), None);
    }
}

#[test]
fn scram_plus_with_each_channel_binding_type() {
    let creds = Accounts::new();
    for hash in [ScramHash::Sha1, ScramHash::Sha256] {
        for (name, data) in [
            ("tls-exporter", EXPORTER),
            ("tls-server-end-point", END_POINT),
        ] {
            let c = client(hash, "juliet", "secret", plus(name, data));
            assert!(c.mechanism().is_plus());
            assert_success(&exchange(tls_ctx(), c, &creds), None);
        }
    }
}

#[test]
fn authzid_is_reported() {
    let creds = Accounts::new();
    let c = client(
        ScramHash::Sha256,
        "juliet",
        "secret",
        plus("tls-exporter", EXPORTER),
    )
    .with_authzid("romeo@example.com")
    .unwrap();
    assert_success(&exchange(tls_ctx(), c, &creds), Some("romeo@example.com"));
    let c = client(
        ScramHash::Sha1,
        "juliet",
        "secret",
        ClientChannelBinding::Unsupported,
    )
    .with_authzid("a,b=c")
    .unwrap();
    assert_success(&exchange(SaslContext::default(), c, &creds), Some("a,b=c"));
}

#[test]
fn mismatched_channel_binding_data_is_refused() {
    let creds = Accounts::new();
    let cases = [
        ("tls-exporter", b"other-exporter".as_slice()),
        ("tls-server-end-point", EXPORTER),
        ("tls-exporter", b"".as_slice()),
    ];
    for (name, data) in cases {
        let c = client(ScramHash::Sha256, "juliet", "secret", plus(name, data));
        let outcomes = exchange(tls_ctx(), c, &creds);
        assert_eq!(
            outcomes[1],
            failure(SaslFailure::NotAuthorized, "channel bindings do not match")
        );
    }
}

#[test]
fn unsupported_channel_binding_type_is_refused() {
    let creds = Accounts::new();
    let only_end_point = SaslContext {
        channel_bindings: ChannelBindings {
            tls_exporter: None,
            tls_server_end_point: Some(END_POINT.to_vec()),
        },
        plus_advertised: true,
    };
    let expected = vec![failure(
        SaslFailure::NotAuthorized,
        "unsupported channel binding type",
    )];
    let c = client(
        ScramHash::Sha256,
        "juliet",
        "secret",
        plus("tls-exporter", EXPORTER),
    );
    assert_eq!(exchange(only_end_point, c, &creds), expected);
    let c = client(
        ScramHash::Sha256,
        "juliet",
        "secret",
        plus("tls-unique", EXPORTER),
    );
    assert_eq!(exchange(tls_ctx(), c, &creds), expected);
}

#[test]
fn gs2_flag_must_match_mechanism() {
    let creds = Accounts::new();
    // -PLUS mechanism without binding.
    for cb in [
        ClientChannelBinding::Unsupported,
        ClientChannelBinding::SupportedButUnused,
    ] {
        let c = client(ScramHash::Sha256, "juliet", "secret", cb);
        assert_eq!(
            exchange_with(Mechanism::ScramSha256Plus, tls_ctx(), c, &creds),
            vec![failure(
                SaslFailure::MalformedRequest,
                "channel binding required by -PLUS mechanism"
            )]
        );
    }
    // Binding with a non-PLUS mechanism.
    let c = client(
        ScramHash::Sha1,
        "juliet",
        "secret",
        plus("tls-exporter", EXPORTER),
    );
    assert_eq!(
        exchange_with(Mechanism::ScramSha1, tls_ctx(), c, &creds),
        vec![failure(
            SaslFailure::MalformedRequest,
            "channel binding requires a -PLUS mechanism"
        )]
    );
}

#[test]
fn y_flag_downgrade_is_refused() {
    let creds = Accounts::new();
    let c = client(
        ScramHash::Sha256,
        "juliet",
        "secret",
        ClientChannelBinding::SupportedButUnused,
    );
    assert_eq!(
        exchange(tls_ctx(), c, &creds),
        vec![failure(
            SaslFailure::NotAuthorized,
            "channel binding downgrade detected"
        )]
    );
}

#[test]
fn wrong_password_and_unknown_user_fail_alike() {
    let creds = Accounts::new();
    let refused = failure(SaslFailure::NotAuthorized, "invalid credentials");
    for (user, password) in [("juliet", "wrong"), ("nobody", "secret")] {
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            let c = client(hash, user, password, ClientChannelBinding::Unsupported);
            let outcomes = exchange(SaslContext::default(), c, &creds);
            assert!(
                matches!(outcomes[0], Outcome::Challenge(_)),
                "{user}: {outcomes:?}"
            );
            assert_eq!(outcomes[1], refused, "{user}");
        }
    }
}

#[test]
fn unknown_user_gets_a_stable_salt() {
    let creds = Accounts::new();
    let server_first = |user: &str| {
        let mut server = SaslServer::new(Mechanism::ScramSha256, SaslContext::default());
        let Outcome::Challenge(c) = server.step(format!("n,,n={user},r=abc").as_bytes(), &creds)
        else {
            panic!("no challenge");
        };
        let c = String::from_utf8(c).unwrap();
        c[c.find(",s=").unwrap()..].to_owned()
    };
    assert_eq!(server_first("nobody"), server_first("nobody"));
    assert_ne!(server_first("nobody"), server_first("somebody"));
    assert!(server_first("nobody").ends_with(&format!(",i={DEFAULT_ITERATIONS}")));
    // A real account keeps its own salt too.
    assert_eq!(server_first("juliet"), server_first("juliet"));
}

#[test]
fn server_nonce_is_random_and_extends_client_nonce() {
    let creds = Accounts::new();
    let nonce = || {
        let mut server = SaslServer::new(Mechanism::ScramSha1, SaslContext::default());
        let Outcome::Challenge(c) = server.step(b"n,,n=juliet,r=abc", &creds) else {
            panic!()
        };
        let c = String::from_utf8(c).unwrap();
        c[2..c.find(',').unwrap()].to_owned()
    };
    let (a, b) = (nonce(), nonce());
    assert!(a.starts_with("abc") && a.len() == 3 + 24, "{a}");
    assert_ne!(a, b);
}

#[test]
fn empty_initial_response_gets_empty_challenge() {
    let creds = Accounts::new();
    let mut c = client(
        ScramHash::Sha256,
        "juliet",
        "secret",
        ClientChannelBinding::Unsupported,
    );
    let mut server = SaslServer::new(Mechanism::ScramSha256, SaslContext::default());
    assert_eq!(server.step(b"", &creds), Outcome::Challenge(Vec::new()));
    let Outcome::Challenge(challenge) = server.step(c.client_first().as_bytes(), &creds) else {
        panic!()
    };
    let last = c.handle_server_first(text(&challenge)).unwrap();
    assert!(matches!(
        server.step(last.as_bytes(), &creds),
        Outcome::Success { .. }
    ));
    // Only once.
    let mut server = SaslServer::new(Mechanism::ScramSha256, SaslContext::default());
    server.step(b"", &creds);
    assert_eq!(
        server.step(b"", &creds),
        failure(SaslFailure::MalformedRequest, "missing gs2 header")
    );
}

// ---- Malformed messages ------------------------------------------------------------------

#[test]
fn malformed_client_first_messages() {
    let creds = Accounts::new();
    let cases: [(&[u8], &str); 7] = [
        (b"n,,n=juliet,r=abc\xff", "invalid UTF-8"),
        (b"n,n=juliet,r=abc", "expected authzid"),
        (b"n,,m=x,n=juliet,r=abc", "unsupported mandatory extension"),
        (b"n,,r=abc,n=juliet", "expected username"),
        (b"n,,n=jul=2Xiet,r=abc", "invalid escape in name"),
        (b"c=biws,r=abc,p=AAAA", "invalid channel binding flag"),
        (b"n,,n=\xc2\xad,r=abc", "invalid username"),
    ];
    for (msg, text) in cases {
        let mut server = SaslServer::new(Mechanism::ScramSha256, SaslContext::default());
        assert_eq!(
            server.step(msg, &creds),
            failure(SaslFailure::MalformedRequest, text),
            "{msg:?}"
        );
        // The exchange is over.
        let after = server.step(b"n,,n=juliet,r=abc", &creds);
        assert_eq!(
            after,
            failure(SaslFailure::MalformedRequest, "exchange already complete")
        );
    }
}

/// Starts an exchange for `juliet` and returns the server, the combined nonce and a valid
/// client-final message.
fn after_first_step(creds: &Accounts) -> (SaslServer, String, String) {
    let mut c = client(
        ScramHash::Sha256,
        "juliet",
        "secret",
        ClientChannelBinding::Unsupported,
    );
    let mut server = SaslServer::new(Mechanism::ScramSha256, SaslContext::default());
    let Outcome::Challenge(challenge) = server.step(c.client_first().as_bytes(), creds) else {
        panic!()
    };
    let challenge = text(&challenge);
    let nonce = challenge[2..challenge.find(',').unwrap()].to_owned();
    let last = c.handle_server_first(challenge).unwrap();
    (server, nonce, last)
}

#[test]
fn malformed_client_final_messages() {
    use SaslFailure::{MalformedRequest, NotAuthorized};
    let creds = Accounts::new();
    // `NONCE` stands for the combined nonce, `LAST` for the valid client-final message.
    let cases = [
        ("LAST\u{0}", MalformedRequest, "NUL character"),
        ("c=biws,r=NONCE", MalformedRequest, "expected proof last"),
        (
            "c=biws,p=AAAA,r=NONCE",
            MalformedRequest,
            "expected proof last",
        ),
        ("c=bi!s,r=NONCE,p=AAAA", MalformedRequest, "invalid base64"),
        ("c=biws,r=NONCE,p=AAA", MalformedRequest, "invalid base64"),
        (
            "r=NONCE,c=biws,p=AAAA",
            MalformedRequest,
            "expected channel binding",
        ),
        (
            "n,,n=juliet,r=NONCE",
            MalformedRequest,
            "expected proof last",
        ),
        ("c=biws,r=abc,p=AAAA", NotAuthorized, "nonce mismatch"),
        // The gs2 header was `n,,` but c= claims `y,,`.
        (
            "c=eSws,r=NONCE,p=AAAA",
            NotAuthorized,
            "channel bindings do not match",
        ),
    ];
    for (template, condition, text) in cases {
        let (mut server, nonce, last) = after_first_step(&creds);
        let msg = template.replace("LAST", &last).replace("NONCE", &nonce);
        assert_eq!(
            server.step(msg.as_bytes(), &creds),
            failure(condition, text),
            "{msg:?}"
        );
        let after = server.step(last.as_bytes(), &creds);
        assert_eq!(
            after,
            failure(MalformedRequest, "exchange already complete")
        );
    }
    // Not UTF-8.
    let (mut server, _, last) = after_first_step(&creds);
    let msg = [last.as_bytes(), b"\xff"].concat();
    assert_eq!(
        server.step(&msg, &creds),
        failure(MalformedRequest, "invalid UTF-8")
    );
    // And the unmodified message works.
    let (mut server, _, last) = after_first_step(&creds);
    assert!(matches!(
        server.step(last.as_bytes(), &creds),
        Outcome::Success { .. }
    ));
}

// ---- PLAIN ---------------------------------------------------------------------------------

fn plain(input: &[u8]) -> Outcome {
    SaslServer::new(Mechanism::Plain, SaslContext::default()).step(input, &Accounts::new())
}

#[test]
fn plain_success() {
    let success = |authzid: Option<&str>| Outcome::Success {
        username: "juliet".into(),
        authzid: authzid.map(Into::into),
        additional_data: None,
    };
    assert_eq!(
        plain(&plain_initial_response(None, "juliet", "secret")),
        success(None)
    );
    assert_eq!(
        plain(&plain_initial_response(Some(""), "juliet", "secret")),
        success(None)
    );
    assert_eq!(
        plain(&plain_initial_response(Some("admin@x"), "juliet", "secret")),
        success(Some("admin@x"))
    );
    // SASLprep: U+00AD SOFT HYPHEN is mapped to nothing in both fields.
    assert_eq!(
        plain(&plain_initial_response(
            None,
            "jul\u{ad}iet",
            "sec\u{ad}ret"
        )),
        success(None)
    );
}

#[test]
fn plain_wrong_password_and_unknown_user_fail_alike() {
    let refused = failure(SaslFailure::NotAuthorized, "invalid credentials");
    assert_eq!(
        plain(&plain_initial_response(None, "juliet", "wrong")),
        refused
    );
    assert_eq!(
        plain(&plain_initial_response(None, "nobody", "secret")),
        refused
    );
}

#[test]
fn plain_malformed() {
    let malformed = failure(SaslFailure::MalformedRequest, "malformed PLAIN message");
    for input in [
        &b"juliet\0secret"[..],
        b"\0\0secret",
        b"\0juliet\0",
        b"\0juliet\0secret\0x",
        b"\0jul\xffiet\0secret",
    ] {
        assert_eq!(plain(input), malformed, "{input:?}");
    }
    let prohibited = failure(
        SaslFailure::MalformedRequest,
        "invalid username or password encoding",
    );
    assert_eq!(plain(b"\0juliet\0sec\x07ret"), prohibited);
}

#[test]
fn plain_prompts_once_then_completes() {
    let creds = Accounts::new();
    let mut server = SaslServer::new(Mechanism::Plain, SaslContext::default());
    assert_eq!(server.step(b"", &creds), Outcome::Challenge(Vec::new()));
    assert!(matches!(
        server.step(b"\0juliet\0secret", &creds),
        Outcome::Success { .. }
    ));
    let after = server.step(b"\0juliet\0secret", &creds);
    assert_eq!(
        after,
        failure(SaslFailure::MalformedRequest, "exchange already complete")
    );
}

// ---- an unreadable account store -------------------------------------------------------

/// Accounts whose store cannot be read (a database outage).
struct Down;

impl CredentialSource for Down {
    fn scram_keys(&self, _: &str, _: ScramHash) -> Result<Option<ScramKeys>, Unavailable> {
        Err(Unavailable)
    }

    fn check_password(&self, _: &str, _: &str) -> PasswordCheck {
        PasswordCheck::Unavailable
    }
}

#[test]
fn an_unreadable_store_fails_with_temporary_auth_failure_not_not_authorized() {
    let down = failure(
        SaslFailure::TemporaryAuthFailure,
        "account storage unavailable",
    );
    let mut server = SaslServer::new(Mechanism::Plain, SaslContext::default());
    assert_eq!(
        server.step(&plain_initial_response(None, "juliet", "secret"), &Down),
        down
    );
    for hash in [ScramHash::Sha1, ScramHash::Sha256] {
        let mut c = client(hash, "juliet", "secret", ClientChannelBinding::Unsupported);
        let mut server = SaslServer::new(c.mechanism(), SaslContext::default());
        assert_eq!(server.step(c.client_first().as_bytes(), &Down), down);
    }
}
