//! The XMPP addresses a certificate names in its subjectAltName as `id-on-xmppAddr`
//! otherName entries (RFC 6120 §13.7.1.4, XEP-0178 §4): read straight from the DER of
//! the leaf, since the certificate verifier only matches dNSName entries. Only the
//! structure down to those entries is walked; anything malformed yields no address.

/// `id-on-xmppAddr` (1.3.6.1.5.5.7.8.5), as the content octets of its OID.
const XMPP_ADDR_OID: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x05];
/// `id-ce-subjectAltName` (2.5.29.17).
const SUBJECT_ALT_NAME_OID: &[u8] = &[0x55, 0x1d, 0x11];

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const UTF8_STRING: u8 = 0x0c;
/// `[0]` constructed: otherName in GeneralName, and its explicitly tagged value.
const CONTEXT_0: u8 = 0xa0;
/// `[3]` constructed: the extensions of a TBSCertificate.
const CONTEXT_3: u8 = 0xa3;

/// One DER element: its tag and content, and what follows it.
fn element(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The elements of a constructed content, in order.
fn elements(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, content, rest) = element(data)?;
        data = rest;
        Some((tag, content))
    })
}

/// The `id-on-xmppAddr` values of a DER certificate.
pub fn xmpp_addrs(cert_der: &[u8]) -> Vec<String> {
    san_content(cert_der)
        .map(|names| {
            elements(names)
                .filter(|(tag, _)| *tag == CONTEXT_0)
                .filter_map(|(_, other_name)| {
                    let mut parts = elements(other_name);
                    let (OID, oid) = parts.next()? else {
                        return None;
                    };
                    let (CONTEXT_0, value) = parts.next()? else {
                        return None;
                    };
                    if oid != XMPP_ADDR_OID {
                        return None;
                    }
                    let (UTF8_STRING, text, _) = element(value)? else {
                        return None;
                    };
                    String::from_utf8(text.to_vec()).ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The GeneralNames content of the certificate's subjectAltName extension.
fn san_content(cert_der: &[u8]) -> Option<&[u8]> {
    let (SEQUENCE, cert, _) = element(cert_der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let (_, extensions) = elements(tbs).find(|(tag, _)| *tag == CONTEXT_3)?;
    let (SEQUENCE, extensions, _) = element(extensions)? else {
        return None;
    };
    elements(extensions).find_map(|(tag, ext)| {
        if tag != SEQUENCE {
            return None;
        }
        let mut parts = elements(ext);
        let (OID, oid) = parts.next()? else {
            return None;
        };
        if oid != SUBJECT_ALT_NAME_OID {
            return None;
        }
        // critical BOOLEAN DEFAULT FALSE may come before the value.
        let (_, value) = parts.find(|(tag, _)| *tag == OCTET_STRING)?;
        let (SEQUENCE, names, _) = element(value)? else {
            return None;
        };
        Some(names)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, OtherNameValue, SanType};

    fn cert(names: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = names;
        params
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn xmpp_addrs_are_read_from_other_names_and_nothing_else() {
        let xmpp = |s: &str| {
            SanType::OtherName((
                vec![1, 3, 6, 1, 5, 5, 7, 8, 5],
                OtherNameValue::Utf8String(s.into()),
            ))
        };
        let der = cert(vec![
            SanType::DnsName("dns.example".try_into().unwrap()),
            xmpp("a.example"),
            SanType::OtherName((
                vec![1, 2, 3, 4],
                OtherNameValue::Utf8String("not.xmpp".into()),
            )),
            xmpp("b.example"),
        ]);
        assert_eq!(xmpp_addrs(&der), vec!["a.example", "b.example"]);
        let plain = cert(vec![SanType::DnsName("dns.example".try_into().unwrap())]);
        assert!(xmpp_addrs(&plain).is_empty());
    }

    #[test]
    fn garbage_and_truncation_yield_nothing() {
        assert!(xmpp_addrs(b"").is_empty());
        assert!(xmpp_addrs(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_empty());
        let der = cert(vec![SanType::OtherName((
            vec![1, 3, 6, 1, 5, 5, 7, 8, 5],
            OtherNameValue::Utf8String("a.example".into()),
        ))]);
        assert_eq!(xmpp_addrs(&der), vec!["a.example"]);
        for cut in 0..der.len() {
            assert!(xmpp_addrs(&der[..cut]).is_empty(), "cut at {cut}");
        }
    }
}
