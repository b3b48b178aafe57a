//! s2s authentication by certificates (RFC 6120 §6, XEP-0178) between two Heliograph
//! servers on loopback, with a test CA generated here: certificates that verify (by
//! dNSName, wildcard or `id-on-xmppAddr`) give SASL EXTERNAL both ways; a certificate for another name is refused EXTERNAL and accepted by
//! dialback only where the tenant allows dialback (queued stanzas bounce otherwise); a
//! self-signed certificate is refused where the tenant requires valid certificates.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, OtherNameValue, SanType,
};

use crate::common::*;
use crate::s2s::{LogsOnFailure, admin_get, federated, free_port, is_message_from, s2s_open};

/// A certificate authority made for one test, and the files it writes.
pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub dir: tempfile::TempDir,
}

impl TestCa {
    pub(crate) fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, "Heliograph test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa {
            issuer,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The CA certificate as a PEM file (`[s2s] ca_file`).
    pub(crate) fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        std::fs::write(&path, self.issuer.pem()).unwrap();
        path
    }

    /// A certificate for `names` (SAN dNSName) signed by this CA; (cert, key) files.
    pub(crate) fn issue(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        self.sign(file, params)
    }

    /// A certificate whose only name is `addr` as an `id-on-xmppAddr` otherName.
    pub(crate) fn issue_xmpp_addr(&self, file: &str, addr: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::OtherName((
            vec![1, 3, 6, 1, 5, 5, 7, 8, 5],
            OtherNameValue::Utf8String(addr.into()),
        ))];
        self.sign(file, params)
    }

    fn sign(&self, file: &str, mut params: CertificateParams) -> (PathBuf, PathBuf) {
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        write_pair(self.dir.path(), file, &cert.pem(), &key.serialize_pem())
    }
}

fn write_pair(dir: &Path, file: &str, cert: &str, key: &str) -> (PathBuf, PathBuf) {
    let (c, k) = (
        dir.join(format!("{file}.crt")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (c, k)
}

/// `[tenants.t.s2s]` settings followed by the tenant's own certificate.
fn tenant(s2s: &str, cert: &(PathBuf, PathBuf)) -> String {
    format!(
        "enabled = true\n{s2s}\n[tenants.t.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.0.display(),
        cert.1.display()
    )
}

/// `a.test` (alice) and `b.test` (bob) federating, with these tenant sections and
/// `[s2s]` extras.
fn pair_with(a_tenant: &str, a_s2s: &str, b_tenant: &str, b_s2s: &str) -> (TestServer, TestServer) {
    let (pa, pb) = (free_port(), free_port());
    let a = federated(
        "a.test",
        pa,
        &[("b.test", format!("127.0.0.1:{pb}"))],
        a_tenant,
        a_s2s,
        &[("alice", "a.test", "pw-a")],
    );
    let b = federated(
        "b.test",
        pb,
        &[("a.test", format!("127.0.0.1:{pa}"))],
        b_tenant,
        b_s2s,
        &[("bob", "b.test", "pw-b")],
    );
    (a, b)
}

fn ca_setting(ca: &TestCa) -> String {
    format!("ca_file = \"{}\"", ca.ca_file().display())
}

/// Alice sends bob a message; bob (available) receives it.
async fn alice_reaches_bob(a: &TestServer, b: &TestServer) {
    let mut alice = RawClient::login_on(a, "a.test", "alice", "pw-a", "phone").await;
    let mut bob = RawClient::login_on(b, "b.test", "bob", "pw-b", "desk").await;
    bob.send_raw("<presence/>").await;
    ping_barrier(&mut bob).await;
    alice
        .send_raw("<message to='bob@b.test' type='chat' id='x1'><body>by cert</body></message>")
        .await;
    let got = bob
        .next_matching(|e| is_message_from(e, "alice@a.test/phone"))
        .await;
    assert_eq!(
        got.child_text("body", heliograph::xml::ns::CLIENT)
            .as_deref(),
        Some("by cert"),
        "{got}"
    );
}

/// Alice's message to bob bounces with `condition`.
async fn alice_bounces(a: &TestServer, condition: &str) {
    let mut alice = RawClient::login_on(a, "a.test", "alice", "pw-a", "phone").await;
    alice
        .send_raw("<message to='bob@b.test' type='chat' id='x2'><body>no way</body></message>")
        .await;
    let err = alice.next_matching(|e| e.attr("id") == Some("x2")).await;
    assert_eq!(err.attr("type"), Some("error"), "{err}");
    assert_eq!(
        stanza_error_condition(&err).as_deref(),
        Some(condition),
        "{err}"
    );
}

/// The s2s stream of `server` in `direction` with the pair (local, remote).
async fn stream_of(
    server: &TestServer,
    direction: &str,
    local: &str,
    remote: &str,
) -> Option<serde_json::Value> {
    let streams = admin_get(server, "/api/v1/s2s").await;
    streams["streams"].as_array().unwrap().iter().find_map(|s| {
        let has_pair = s["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p[0] == local && p[1] == remote);
        (s["direction"] == direction && has_pair).then(|| s.clone())
    })
}

/// Waits (30 s at most) until the stream exists and has authenticated; its `auth`.
async fn auth_of(server: &TestServer, direction: &str, local: &str, remote: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(s) = stream_of(server, direction, local, remote).await
            && let Some(auth) = s["auth"].as_str()
        {
            return auth.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no authenticated {direction} stream {local} -> {remote}: {}",
            admin_get(server, "/api/v1/s2s").await
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Asserts that the stream from `sender` (domain `from`) to `receiver` (domain `to`)
/// authenticated with `method` on both ends: the sender's outgoing side and the
/// receiver's incoming side.
async fn assert_both_ends_used(
    sender: &TestServer,
    receiver: &TestServer,
    from: &str,
    to: &str,
    method: &str,
) {
    assert_eq!(auth_of(sender, "outgoing", from, to).await, method);
    assert_eq!(auth_of(receiver, "incoming", to, from).await, method);
}

#[tokio::test]
async fn certificates_that_verify_authenticate_with_sasl_external_both_ways() {
    let ca = TestCa::new();
    let (a, b) = pair_with(
        &tenant("", &ca.issue("a", &["a.test"])),
        &ca_setting(&ca),
        &tenant("", &ca.issue("b", &["b.test"])),
        &ca_setting(&ca),
    );
    let _logs = LogsOnFailure::of(&[&a, &b]);
    alice_reaches_bob(&a, &b).await;
    assert_both_ends_used(&a, &b, "a.test", "b.test", "external").await;

    // And the other way, over b's own outgoing stream.
    let mut alice = RawClient::login_on(&a, "a.test", "alice", "pw-a", "laptop").await;
    alice.send_raw("<presence/>").await;
    ping_barrier(&mut alice).await;
    let mut bob = RawClient::login_on(&b, "b.test", "bob", "pw-b", "phone").await;
    bob.send_raw("<message to='alice@a.test' type='chat' id='y1'><body>back</body></message>")
        .await;
    alice
        .next_matching(|e| is_message_from(e, "bob@b.test/phone"))
        .await;
    assert_both_ends_used(&b, &a, "b.test", "a.test", "external").await;
}

#[tokio::test]
async fn a_wildcard_certificate_covers_a_subdomain() {
    let ca = TestCa::new();
    let (pa, pb) = (free_port(), free_port());
    let a = federated(
        "chat.a.test",
        pa,
        &[("b.test", format!("127.0.0.1:{pb}"))],
        &tenant("", &ca.issue("a", &["*.a.test"])),
        &ca_setting(&ca),
        &[("alice", "chat.a.test", "pw-a")],
    );
    let b = federated(
        "b.test",
        pb,
        &[("chat.a.test", format!("127.0.0.1:{pa}"))],
        &tenant("", &ca.issue("b", &["b.test"])),
        &ca_setting(&ca),
        &[("bob", "b.test", "pw-b")],
    );
    let _logs = LogsOnFailure::of(&[&a, &b]);
    let mut alice = RawClient::login_on(&a, "chat.a.test", "alice", "pw-a", "phone").await;
    alice
        .send_raw("<iq type='get' to='b.test' id='w1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let r = alice
        .next_matching(|e| e.name() == "iq" && e.attr("id") == Some("w1"))
        .await;
    assert_eq!(r.attr("type"), Some("result"), "{r}");
    assert_eq!(
        auth_of(&b, "incoming", "b.test", "chat.a.test").await,
        "external"
    );
}

#[tokio::test]
async fn an_xmpp_addr_name_alone_is_enough_for_sasl_external() {
    let ca = TestCa::new();
    let (a, b) = pair_with(
        &tenant("", &ca.issue_xmpp_addr("a", "a.test")),
        &ca_setting(&ca),
        &tenant("auth = [\"external\"]", &ca.issue("b", &["b.test"])),
        &ca_setting(&ca),
    );
    let _logs = LogsOnFailure::of(&[&a, &b]);
    alice_reaches_bob(&a, &b).await;
    assert_eq!(
        auth_of(&b, "incoming", "b.test", "a.test").await,
        "external"
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused_external_and_accepted_by_dialback() {
    let ca = TestCa::new();
    let (a, b) = pair_with(
        &tenant("", &ca.issue("a", &["other.test"])),
        &ca_setting(&ca),
        &tenant("", &ca.issue("b", &["b.test"])),
        &ca_setting(&ca),
    );
    let _logs = LogsOnFailure::of(&[&a, &b]);
    alice_reaches_bob(&a, &b).await;
    assert_both_ends_used(&a, &b, "a.test", "b.test", "dialback").await;

    // A peer without a certificate is not offered EXTERNAL, and asking anyway fails
    // with not-authorized; the stream stays open for dialback.
    let mut raw = RawClient::connect(&b.s2s).await;
    let (_, features) = s2s_open(&mut raw, "a.test", "b.test").await;
    assert!(features.has_child("starttls", heliograph::xml::ns::TLS));
    raw.starttls().await;
    let (_, features) = s2s_open(&mut raw, "a.test", "b.test").await;
    assert!(
        !features.has_child("mechanisms", heliograph::xml::ns::SASL),
        "{features}"
    );
    raw.send_raw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        .await;
    let answer = raw
        .next_matching(|e| e.ns() == heliograph::xml::ns::SASL)
        .await;
    assert_eq!(answer.name(), "failure", "{answer}");
    assert!(
        answer.has_child("not-authorized", heliograph::xml::ns::SASL),
        "{answer}"
    );
    raw.send_raw("<db:result from='a.test' to='b.test'>not-a-real-key</db:result>")
        .await;
    let verdict = raw
        .next_matching(|e| e.name() == "result" || e.name() == "error")
        .await;
    assert_eq!(verdict.attr("type"), Some("invalid"), "{verdict}");
}

#[tokio::test]
async fn external_only_tenants_refuse_a_wrong_certificate_and_queued_stanzas_bounce() {
    let ca = TestCa::new();
    let (a, b) = pair_with(
        &tenant("", &ca.issue("a", &["other.test"])),
        &ca_setting(&ca),
        &tenant("auth = [\"external\"]", &ca.issue("b", &["b.test"])),
        &ca_setting(&ca),
    );
    let _logs = LogsOnFailure::of(&[&a, &b]);
    alice_bounces(&a, "remote-server-not-found").await;
    assert!(
        stream_of(&b, "incoming", "b.test", "a.test")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_self_signed_peer_is_refused_where_valid_certificates_are_required() {
    let ca = TestCa::new();
    // a.test has no certificate of its own: it presents the generated self-signed one.
    let (a, b) = pair_with(
        "enabled = true",
        "",
        &tenant("require_valid_certs = true", &ca.issue("b", &["b.test"])),
        &ca_setting(&ca),
    );
    let _logs = LogsOnFailure::of(&[&a, &b]);
    alice_bounces(&a, "remote-server-not-found").await;
    assert!(
        stream_of(&b, "incoming", "b.test", "a.test")
            .await
            .is_none()
    );
}
