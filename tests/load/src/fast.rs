//! FAST logins (XEP-0484 over XEP-0388 SASL2 with XEP-0386 Bind 2), the way a mobile
//! client reconnects: one `<authenticate mechanism='HT-SHA-256-NONE'/>` carrying the
//! token's proof, the user-agent id the token was issued to and an inline bind, answered
//! by `<success/>` with the bound full JID and no stream restart.
//!
//! [`provision`] gets each account its token before a run (a SASL2 PLAIN login with
//! `<request-token/>`, as a client does on its first login) and uses it once, as the
//! client's first reconnect does: the server then holds it as the client's current token,
//! and the measured logins ([`authenticate`]) are the steady-state reconnects of a client
//! whose token is neither new nor due for rotation.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use heliograph::sasl::client::plain_initial_response;
use heliograph::xml::{Element, StreamParser, ns};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::xmpp::{self, Io, LoginSpec};

/// The FAST mechanism the load client uses: no channel binding, so it works on every
/// TLS connection.
pub const MECHANISM: &str = "HT-SHA-256-NONE";

/// The user-agent id every load client presents. Tokens are kept per account and client,
/// so one id for all accounts is one client per account.
pub const USER_AGENT_ID: &str = "6c0e2b5e-1f7a-4c39-9a52-4f1d3b0a8e77";

/// The client's proof for `token` (HMAC-SHA-256 keyed with the token over `"Initiator"`;
/// no channel-binding data for the NONE variant).
pub fn initiator_proof(token: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes any key");
    m.update(b"Initiator");
    m.finalize().into_bytes().to_vec()
}

/// The HT initial response: `username NUL proof`.
pub fn initial_response(user: &str, token: &str) -> Vec<u8> {
    let mut out = user.as_bytes().to_vec();
    out.push(0);
    out.extend(initiator_proof(token));
    out
}

fn user_agent() -> String {
    format!("<user-agent id='{USER_AGENT_ID}'><software>heliograph-load</software></user-agent>")
}

/// The `<authenticate/>` of a FAST login with an inline bind of `resource`.
pub fn fast_authenticate(user: &str, token: &str, resource: &str) -> String {
    format!(
        "<authenticate xmlns='{sasl2}' mechanism='{MECHANISM}'>\
         <initial-response>{ir}</initial-response>{ua}\
         <bind xmlns='{bind2}'><tag>{resource}</tag></bind>\
         <fast xmlns='{fast}'/></authenticate>",
        sasl2 = ns::SASL2,
        ir = B64.encode(initial_response(user, token)),
        ua = user_agent(),
        bind2 = ns::BIND2,
        fast = ns::FAST,
    )
}

/// The `<authenticate/>` of a PLAIN login that asks for a FAST token.
pub fn plain_requesting_token(user: &str, password: &str) -> String {
    format!(
        "<authenticate xmlns='{sasl2}' mechanism='PLAIN'>\
         <initial-response>{ir}</initial-response>{ua}\
         <request-token xmlns='{fast}' mechanism='{MECHANISM}'/></authenticate>",
        sasl2 = ns::SASL2,
        ir = B64.encode(plain_initial_response(None, user, password)),
        ua = user_agent(),
        fast = ns::FAST,
    )
}

/// Sends `authenticate` on a stream whose features were read; returns `<success/>`.
async fn sasl2_exchange(
    io: &mut Io,
    parser: &mut StreamParser,
    authenticate: &str,
) -> anyhow::Result<Element> {
    io.write_all(authenticate.as_bytes()).await?;
    let answer = xmpp::next_stanza(io, parser).await?;
    if !answer.is("success", ns::SASL2) {
        bail!("SASL2 login failed: {}", answer.to_string_in(ns::CLIENT));
    }
    Ok(answer)
}

/// A FAST login on a fresh connection; returns the connection, its parser and the bound
/// full JID. The features that follow `<success/>` are read.
pub async fn authenticate(
    spec: &LoginSpec,
    source: Option<IpAddr>,
    user: &str,
    token: &str,
    resource: &str,
) -> anyhow::Result<(Io, StreamParser, String)> {
    let (mut io, mut parser) = xmpp::connected(spec, source).await?;
    let success = sasl2_exchange(
        &mut io,
        &mut parser,
        &fast_authenticate(user, token, resource),
    )
    .await?;
    if success.child("bound", ns::BIND2).is_none() {
        bail!("FAST login was not bound inline");
    }
    let jid = success
        .child_text("authorization-identifier", ns::SASL2)
        .context("<success/> without an authorization identifier")?;
    let features = xmpp::next_stanza(&mut io, &mut parser).await?;
    if !features.is("features", ns::STREAM) {
        bail!(
            "expected stream features after <success/>, got <{}>",
            features.name()
        );
    }
    Ok((io, parser, jid))
}

/// Gets a FAST token for one account: a SASL2 PLAIN login asking for one.
pub async fn request_token(
    spec: &LoginSpec,
    source: Option<IpAddr>,
    user: &str,
    password: &str,
) -> anyhow::Result<String> {
    let (mut io, mut parser) = xmpp::connected(spec, source).await?;
    let success = sasl2_exchange(
        &mut io,
        &mut parser,
        &plain_requesting_token(user, password),
    )
    .await?;
    let token = success
        .child("token", ns::FAST)
        .and_then(|t| t.attr("token"))
        .context("no FAST token in <success/> (does the tenant have [tokens]?)")?
        .to_string();
    let _ = io.write_all(b"</stream:stream>").await;
    let _ = io.shutdown().await;
    Ok(token)
}

/// FAST tokens for `users` (in order), each used once; `concurrency` accounts at a time.
pub async fn provision(
    spec: LoginSpec,
    users: Vec<String>,
    password: String,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let spec = Arc::new(spec);
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let tasks: Vec<_> = users
        .into_iter()
        .map(|user| {
            let (spec, sem, password) = (spec.clone(), sem.clone(), password.clone());
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await?;
                let token = request_token(&spec, None, &user, &password)
                    .await
                    .with_context(|| format!("FAST token for {user}"))?;
                let mut fast_spec = (*spec).clone();
                fast_spec.mech = crate::xmpp::Mech::Fast;
                let (mut io, _, _) = authenticate(&fast_spec, None, &user, &token, "provision")
                    .await
                    .with_context(|| format!("first FAST login of {user}"))?;
                let _ = io.write_all(b"</stream:stream>").await;
                let _ = io.shutdown().await;
                anyhow::Ok(token)
            })
        })
        .collect();
    let mut tokens = Vec::with_capacity(tasks.len());
    for t in tasks {
        tokens.push(t.await??);
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_response_is_the_user_a_nul_and_a_32_byte_proof() {
        let ir = initial_response("alice", "secret-token");
        assert_eq!(&ir[..6], b"alice\0");
        assert_eq!(ir.len(), 6 + 32);
        assert_eq!(&ir[6..], initiator_proof("secret-token").as_slice());
        assert_ne!(initiator_proof("a"), initiator_proof("b"));
    }

    #[test]
    fn the_proof_matches_the_servers_check() {
        assert_eq!(
            initiator_proof("tok"),
            heliograph::tokens::fast::initiator_proof("tok", b"")
        );
    }

    #[test]
    fn a_fast_authenticate_names_the_mechanism_client_and_bind() {
        let xml = fast_authenticate("u1", "tok", "load");
        assert!(xml.contains("mechanism='HT-SHA-256-NONE'"));
        assert!(xml.contains(USER_AGENT_ID));
        assert!(xml.contains("<bind xmlns='urn:xmpp:bind:0'><tag>load</tag></bind>"));
        assert!(xml.contains("<fast xmlns='urn:xmpp:fast:0'/>"));
    }
}
