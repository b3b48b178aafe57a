//! Syntax of the four SCRAM messages (RFC 5802 §7): parsing into borrowed views and the
//! `saslname` escaping (`=2C`, `=3D`). Shared by the server mechanism and the client;
//! semantic checks (nonces, channel binding, proofs) are left to them.

use std::borrow::Cow;

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use thiserror::Error;

/// Why a SCRAM message was rejected by the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The message does not follow the RFC 5802 grammar; the text names the offending part.
    #[error("malformed SCRAM message: {0}")]
    Syntax(&'static str),
    /// A base64 attribute value does not decode.
    #[error("invalid base64 in SCRAM attribute {0}")]
    Base64(&'static str),
    /// The message carries a mandatory extension (`m=`), which is not supported.
    #[error("unsupported mandatory SCRAM extension")]
    MandatoryExtension,
}

type Result<T> = std::result::Result<T, ParseError>;

/// The channel-binding flag of a gs2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CbFlag<'a> {
    /// `n`: the client does not support channel binding.
    NotSupported,
    /// `y`: the client supports channel binding but thinks the server does not.
    SupportedButUnused,
    /// `p=<cb-name>`: the client requires channel binding of this type.
    Required(&'a str),
}

/// `client-first-message` (with its gs2 header).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ClientFirst<'a> {
    pub cb_flag: CbFlag<'a>,
    /// Decoded authorization identity, `None` when absent.
    pub authzid: Option<Cow<'a, str>>,
    /// The gs2 header exactly as sent (`n,,`, `p=tls-exporter,a=x,`, ...).
    pub gs2_header: &'a str,
    /// `client-first-message-bare`, exactly as sent.
    pub bare: &'a str,
    /// Decoded (not yet SASLprep'd) username.
    pub username: Cow<'a, str>,
    pub nonce: &'a str,
}

/// `server-first-message`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ServerFirst<'a> {
    pub nonce: &'a str,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

/// `client-final-message`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ClientFinal<'a> {
    /// Decoded `c=` value: gs2 header followed by the channel-binding data, if any.
    pub channel_binding: Vec<u8>,
    pub nonce: &'a str,
    /// `client-final-message-without-proof`, exactly as sent.
    pub without_proof: &'a str,
    pub proof: Vec<u8>,
}

/// `server-final-message`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ServerFinal<'a> {
    /// `v=`: the decoded server signature.
    Verifier(Vec<u8>),
    /// `e=`: the server's error value.
    Error(&'a str),
}

/// Parses a `client-first-message`.
pub(crate) fn parse_client_first(msg: &str) -> Result<ClientFirst<'_>> {
    check_chars(msg)?;
    let (flag, rest) = msg
        .split_once(',')
        .ok_or(ParseError::Syntax("missing gs2 header"))?;
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or(ParseError::Syntax("missing gs2 header"))?;
    let cb_flag = parse_cb_flag(flag)?;
    let authzid = match authzid {
        "" => None,
        a => Some(decode_saslname(attr(a, b'a', "expected authzid")?)?),
    };
    let gs2_header = &msg[..msg.len() - bare.len()];

    let mut attrs = bare.split(',');
    let first = attrs.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(ParseError::MandatoryExtension);
    }
    let username = decode_saslname(attr(first, b'n', "expected username")?)?;
    let nonce = parse_nonce(attrs.next())?;
    check_extensions(attrs)?;
    Ok(ClientFirst {
        cb_flag,
        authzid,
        gs2_header,
        bare,
        username,
        nonce,
    })
}

/// Parses a `server-first-message`.
pub(crate) fn parse_server_first(msg: &str) -> Result<ServerFirst<'_>> {
    check_chars(msg)?;
    let mut attrs = msg.split(',');
    let first = attrs.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(ParseError::MandatoryExtension);
    }
    let nonce = parse_nonce(Some(first))?;
    let salt = decode_base64(
        attr(attrs.next().unwrap_or_default(), b's', "expected salt")?,
        "s",
    )?;
    let iterations = parse_iterations(attr(
        attrs.next().unwrap_or_default(),
        b'i',
        "expected iteration count",
    )?)?;
    check_extensions(attrs)?;
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

/// Parses a `client-final-message`; the proof must be the last attribute.
pub(crate) fn parse_client_final(msg: &str) -> Result<ClientFinal<'_>> {
    check_chars(msg)?;
    let (without_proof, proof) = msg
        .rsplit_once(',')
        .ok_or(ParseError::Syntax("missing proof"))?;
    let proof = decode_base64(attr(proof, b'p', "expected proof last")?, "p")?;
    let mut attrs = without_proof.split(',');
    let cb = attr(
        attrs.next().unwrap_or_default(),
        b'c',
        "expected channel binding",
    )?;
    let channel_binding = decode_base64(cb, "c")?;
    let nonce = parse_nonce(attrs.next())?;
    check_extensions(attrs)?;
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

/// Parses a `server-final-message`.
pub(crate) fn parse_server_final(msg: &str) -> Result<ServerFinal<'_>> {
    check_chars(msg)?;
    let mut attrs = msg.split(',');
    let first = attrs.next().unwrap_or_default();
    let result = if let Some(e) = first.strip_prefix("e=") {
        ServerFinal::Error(e)
    } else {
        ServerFinal::Verifier(decode_base64(attr(first, b'v', "expected verifier")?, "v")?)
    };
    check_extensions(attrs)?;
    Ok(result)
}

/// Escapes a username or authzid as a `saslname` (`,` → `=2C`, `=` → `=3D`).
pub(crate) fn encode_saslname(name: &str) -> Cow<'_, str> {
    if !name.contains([',', '=']) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Decodes a non-empty `saslname`, rejecting any `=` escape other than `=2C` and `=3D`.
pub(crate) fn decode_saslname(name: &str) -> Result<Cow<'_, str>> {
    if name.is_empty() {
        return Err(ParseError::Syntax("empty name"));
    }
    if !name.contains('=') {
        return Ok(Cow::Borrowed(name));
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        out.push(match rest.get(i + 1..i + 3) {
            Some("2C") => ',',
            Some("3D") => '=',
            _ => return Err(ParseError::Syntax("invalid escape in name")),
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// Standard base64 with padding, as SCRAM uses.
pub(crate) fn encode_base64(data: &[u8]) -> String {
    BASE64.encode(data)
}

fn decode_base64(value: &str, attr: &'static str) -> Result<Vec<u8>> {
    BASE64.decode(value).map_err(|_| ParseError::Base64(attr))
}

/// NUL is not allowed anywhere in SCRAM messages.
fn check_chars(msg: &str) -> Result<()> {
    if msg.contains('\0') {
        return Err(ParseError::Syntax("NUL character"));
    }
    Ok(())
}

/// Value of `part` if it is the attribute `name=value`.
fn attr<'a>(part: &'a str, name: u8, what: &'static str) -> Result<&'a str> {
    match part.as_bytes() {
        [n, b'=', ..] if *n == name => Ok(&part[2..]),
        _ => Err(ParseError::Syntax(what)),
    }
}

/// `gs2-cbind-flag = ("p=" cb-name) / "n" / "y"`.
fn parse_cb_flag(flag: &str) -> Result<CbFlag<'_>> {
    match flag {
        "n" => Ok(CbFlag::NotSupported),
        "y" => Ok(CbFlag::SupportedButUnused),
        _ => {
            let name = attr(flag, b'p', "invalid channel binding flag")?;
            let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
            if name.is_empty() || !name.bytes().all(valid) {
                return Err(ParseError::Syntax("invalid channel binding name"));
            }
            Ok(CbFlag::Required(name))
        }
    }
}

/// `nonce = "r=" 1*printable` (printable ASCII other than `,`).
fn parse_nonce(part: Option<&str>) -> Result<&str> {
    let nonce = attr(part.unwrap_or_default(), b'r', "expected nonce")?;
    if nonce.is_empty() || !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ParseError::Syntax("invalid nonce"));
    }
    Ok(nonce)
}

/// `posit-number = %x31-39 *DIGIT`, within `u32`.
fn parse_iterations(value: &str) -> Result<u32> {
    let valid = value.bytes().all(|b| b.is_ascii_digit()) && !value.starts_with('0');
    value
        .parse()
        .ok()
        .filter(|_| valid)
        .ok_or(ParseError::Syntax("invalid iteration count"))
}

/// Optional trailing extensions: `attr-val = ALPHA "=" 1*value-char`. Their content is
/// ignored; a mandatory `m=` is only defined before the username and rejected there.
fn check_extensions<'a>(attrs: impl Iterator<Item = &'a str>) -> Result<()> {
    for part in attrs {
        match part.as_bytes() {
            [a, b'=', _, ..] if a.is_ascii_alphabetic() => {}
            _ => return Err(ParseError::Syntax("invalid extension")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_with_plain_header() {
        let m = parse_client_first("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        assert_eq!(m.cb_flag, CbFlag::NotSupported);
        assert_eq!(m.authzid, None);
        assert_eq!(m.gs2_header, "n,,");
        assert_eq!(m.bare, "n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(m.username, "user");
        assert_eq!(m.nonce, "fyko+d2lbbFgONRv9qkxdawL");
    }

    #[test]
    fn client_first_with_channel_binding_authzid_and_escapes() {
        let m = parse_client_first("p=tls-exporter,a=ad=3Dmin=2Cx,n=us=2Cer,r=abc,x=ext").unwrap();
        assert_eq!(m.cb_flag, CbFlag::Required("tls-exporter"));
        assert_eq!(m.authzid.as_deref(), Some("ad=min,x"));
        assert_eq!(m.gs2_header, "p=tls-exporter,a=ad=3Dmin=2Cx,");
        assert_eq!(m.bare, "n=us=2Cer,r=abc,x=ext");
        assert_eq!(m.username, "us,er");
        let m = parse_client_first("y,,n=u,r=a").unwrap();
        assert_eq!(m.cb_flag, CbFlag::SupportedButUnused);
        assert_eq!(m.gs2_header, "y,,");
    }

    #[test]
    fn client_first_rejections() {
        use ParseError::*;
        for (msg, err) in [
            ("", Syntax("missing gs2 header")),
            ("n,n=user,r=abc", Syntax("expected authzid")),
            ("x,,n=user,r=abc", Syntax("invalid channel binding flag")),
            ("p=,,n=user,r=abc", Syntax("invalid channel binding name")),
            (
                "p=tls exporter,,n=user,r=abc",
                Syntax("invalid channel binding name"),
            ),
            ("n,a=,n=user,r=abc", Syntax("empty name")),
            ("n,,m=ext,n=user,r=abc", MandatoryExtension),
            ("n,,r=abc,n=user", Syntax("expected username")),
            ("n,,n=,r=abc", Syntax("empty name")),
            ("n,,n=us=2Der,r=abc", Syntax("invalid escape in name")),
            ("n,,n=user=,r=abc", Syntax("invalid escape in name")),
            ("n,a=x=2,n=user,r=abc", Syntax("invalid escape in name")),
            ("n,,n=user", Syntax("expected nonce")),
            ("n,,n=user,r=", Syntax("invalid nonce")),
            ("n,,n=user,r=ab\u{e9}", Syntax("invalid nonce")),
            ("n,,n=user,r=abc,", Syntax("invalid extension")),
            ("n,,n=user,r=abc,1=x", Syntax("invalid extension")),
            ("n,,n=us\0er,r=abc", Syntax("NUL character")),
        ] {
            assert_eq!(parse_client_first(msg), Err(err), "{msg:?}");
        }
    }

    #[test]
    fn server_first_parsing() {
        let m = parse_server_first("r=abcdef,s=QSXCR+Q6sek8bf92,i=4096").unwrap();
        assert_eq!(m.nonce, "abcdef");
        assert_eq!(m.salt.len(), 12);
        assert_eq!(m.iterations, 4096);
        assert!(parse_server_first("r=a,s=QSXCR+Q6sek8bf92,i=4096,x=y").is_ok());
        use ParseError::*;
        for (msg, err) in [
            ("m=x,r=a,s=QQ==,i=1", MandatoryExtension),
            ("r=a,s=Q,i=1", Base64("s")),
            ("r=a,s=QQ==,i=0", Syntax("invalid iteration count")),
            ("r=a,s=QQ==,i=01", Syntax("invalid iteration count")),
            ("r=a,s=QQ==,i=+1", Syntax("invalid iteration count")),
            (
                "r=a,s=QQ==,i=99999999999",
                Syntax("invalid iteration count"),
            ),
            ("r=a,i=1,s=QQ==", Syntax("expected salt")),
            ("r=a,s=QQ==", Syntax("expected iteration count")),
        ] {
            assert_eq!(parse_server_first(msg), Err(err), "{msg:?}");
        }
    }

    #[test]
    fn client_final_parsing() {
        let m = parse_client_final("c=biws,r=abc,x=1,p=AAEC").unwrap();
        assert_eq!(m.channel_binding, b"n,,");
        assert_eq!(m.nonce, "abc");
        assert_eq!(m.without_proof, "c=biws,r=abc,x=1");
        assert_eq!(m.proof, [0, 1, 2]);
        use ParseError::*;
        for (msg, err) in [
            ("c=biws,r=abc", Syntax("expected proof last")),
            ("c=biws,p=AAEC,r=abc", Syntax("expected proof last")),
            ("r=abc,c=biws,p=AAEC", Syntax("expected channel binding")),
            ("c=biws,r=abc,p=AA!C", Base64("p")),
            ("c=bi,r=abc,p=AAEC", Base64("c")),
            ("c=biws,p=AAEC", Syntax("expected nonce")),
            ("p=AAEC", Syntax("missing proof")),
        ] {
            assert_eq!(parse_client_final(msg), Err(err), "{msg:?}");
        }
    }

    #[test]
    fn server_final_parsing() {
        assert_eq!(
            parse_server_final("v=AAEC"),
            Ok(ServerFinal::Verifier(vec![0, 1, 2]))
        );
        assert_eq!(
            parse_server_final("e=invalid-proof"),
            Ok(ServerFinal::Error("invalid-proof"))
        );
        assert_eq!(parse_server_final("v=A"), Err(ParseError::Base64("v")));
        assert_eq!(
            parse_server_final("x=A"),
            Err(ParseError::Syntax("expected verifier"))
        );
    }

    #[test]
    fn saslname_round_trip() {
        for name in ["user", "a,b=c", "==,,", "é=,"] {
            assert_eq!(decode_saslname(&encode_saslname(name)).unwrap(), name);
        }
        assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
        assert!(matches!(encode_saslname("plain"), Cow::Borrowed(_)));
    }
}
