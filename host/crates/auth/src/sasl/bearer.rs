//! Message syntax of the token mechanisms: OAUTHBEARER (RFC 7628) and X-OAUTH (the
//! Google/MongooseIM style: the token alone, or a PLAIN-like `authzid NUL authcid NUL
//! token`). Parsing only; verifying the token needs the tenant and is done by the session.

use super::SaslFailure;
use super::plain::MAX_FIELD_LEN;

/// Longest accepted token in bytes (JWTs with many claims or RSA-4096 signatures fit).
pub const MAX_TOKEN_LEN: usize = 8192;

/// `%x01`, the OAUTHBEARER key/value separator; alone it is the client's answer to an
/// error challenge (RFC 7628 §3.2.3).
pub const KVSEP: u8 = 0x01;

/// What a token mechanism's client message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerMessage {
    /// The authorization identity requested (`a=` of the GS2 header, or PLAIN's authzid).
    pub authzid: Option<String>,
    /// The user the client says it is (X-OAUTH's authcid), if it says.
    pub username: Option<String>,
    pub token: String,
}

fn malformed() -> SaslFailure {
    SaslFailure::MalformedRequest
}

/// Decodes a GS2 `saslname` (`=2C` → `,`, `=3D` → `=`; any other `=` is invalid).
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Parses an OAUTHBEARER initial client response:
/// `gs2-header %x01 *(key=value %x01) %x01`, requiring `auth=Bearer <token>`.
pub fn parse_oauthbearer(input: &[u8]) -> Result<BearerMessage, SaslFailure> {
    if input.len() > MAX_TOKEN_LEN + 1024 {
        return Err(malformed());
    }
    let text = std::str::from_utf8(input).map_err(|_| malformed())?;
    let (flag, rest) = text.split_once(',').ok_or_else(malformed)?;
    // No channel binding in OAUTHBEARER: only `n` and `y` are valid flags.
    if flag != "n" && flag != "y" {
        return Err(malformed());
    }
    let (authzid, rest) = rest.split_once(',').ok_or_else(malformed)?;
    let authzid = match authzid {
        "" => None,
        a => {
            let name = a.strip_prefix("a=").ok_or_else(malformed)?;
            let name = decode_saslname(name).ok_or_else(malformed)?;
            if name.is_empty() || name.len() > MAX_FIELD_LEN {
                return Err(malformed());
            }
            Some(name)
        }
    };
    let kv = rest
        .strip_prefix('\u{1}')
        .and_then(|r| r.strip_suffix("\u{1}\u{1}"))
        .ok_or_else(malformed)?;
    let mut token = None;
    for pair in kv.split('\u{1}') {
        let (key, value) = pair.split_once('=').ok_or_else(malformed)?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(malformed());
        }
        if key == "auth" {
            if token.is_some() {
                return Err(malformed());
            }
            let (scheme, t) = value.split_once(' ').ok_or_else(malformed)?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(malformed());
            }
            let t = t.trim_matches(' ');
            if t.is_empty() || t.len() > MAX_TOKEN_LEN {
                return Err(malformed());
            }
            token = Some(t.to_string());
        }
    }
    Ok(BearerMessage {
        authzid,
        username: None,
        token: token.ok_or_else(malformed)?,
    })
}

/// Parses an X-OAUTH message: the token alone, or `[authzid] NUL authcid NUL token`.
pub fn parse_xoauth(input: &[u8]) -> Result<BearerMessage, SaslFailure> {
    let text = std::str::from_utf8(input).map_err(|_| malformed())?;
    let (authzid, username, token) = if text.contains('\0') {
        let mut f = text.split('\0');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some(z), Some(u), Some(t), None) => (
                Some(z).filter(|z| !z.is_empty()),
                Some(u).filter(|u| !u.is_empty()),
                t,
            ),
            _ => return Err(malformed()),
        }
    } else {
        (None, None, text)
    };
    let token = token.trim();
    if token.is_empty()
        || token.len() > MAX_TOKEN_LEN
        || authzid.is_some_and(|z| z.len() > MAX_FIELD_LEN)
        || username.is_some_and(|u| u.len() > MAX_FIELD_LEN)
    {
        return Err(malformed());
    }
    Ok(BearerMessage {
        authzid: authzid.map(str::to_string),
        username: username.map(str::to_string),
        token: token.to_string(),
    })
}

/// The error challenge of a failed OAUTHBEARER exchange (RFC 7628 §3.2.2): a JSON status
/// only, no scope or discovery URL, and nothing about why.
pub fn oauthbearer_error_challenge() -> Vec<u8> {
    br#"{"status":"invalid_token"}"#.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauthbearer_rfc7628_example() {
        // RFC 7628 §4.1 (with host and port pairs).
        let msg = b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01";
        let m = parse_oauthbearer(msg).unwrap();
        assert_eq!(m.authzid.as_deref(), Some("user@example.com"));
        assert_eq!(m.token, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==");
        let m = parse_oauthbearer(b"n,,\x01auth=bearer abc.def.ghi\x01\x01").unwrap();
        assert_eq!(m.authzid, None);
        assert_eq!(m.token, "abc.def.ghi");
        let m = parse_oauthbearer(b"y,a=a=2Cb=3D,\x01auth=Bearer t\x01\x01").unwrap();
        assert_eq!(m.authzid.as_deref(), Some("a,b="));
    }

    #[test]
    fn oauthbearer_rejects_malformed() {
        for bad in [
            &b""[..],
            b"\x01",
            b"n,,auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"p=tls-exporter,,\x01auth=Bearer t\x01\x01",
            b"n,u=x,\x01auth=Bearer t\x01\x01",
            b"n,a=bad=zz,\x01auth=Bearer t\x01\x01",
            b"n,,\x01host=x\x01\x01",
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01auth=Bearer a\x01auth=Bearer b\x01\x01",
            b"n,,\x01noequals\x01\x01",
            b"n,,\x01auth=Bearer \xff\x01\x01",
        ] {
            assert_eq!(
                parse_oauthbearer(bad),
                Err(SaslFailure::MalformedRequest),
                "{bad:?}"
            );
        }
        let huge = format!(
            "n,,\x01auth=Bearer {}\x01\x01",
            "a".repeat(MAX_TOKEN_LEN + 1)
        );
        assert!(parse_oauthbearer(huge.as_bytes()).is_err());
    }

    #[test]
    fn xoauth_forms() {
        let m = parse_xoauth(b"tok.en").unwrap();
        assert_eq!(
            (m.authzid, m.username, m.token.as_str()),
            (None, None, "tok.en")
        );
        let m = parse_xoauth(b"\0alice\0tok").unwrap();
        assert_eq!(m.username.as_deref(), Some("alice"));
        assert_eq!(m.token, "tok");
        let m = parse_xoauth(b"alice@x\0alice\0tok").unwrap();
        assert_eq!(m.authzid.as_deref(), Some("alice@x"));
        for bad in [&b""[..], b"\0alice\0", b"a\0b", b"a\0b\0c\0d", b"\xff"] {
            assert!(parse_xoauth(bad).is_err(), "{bad:?}");
        }
    }
}
