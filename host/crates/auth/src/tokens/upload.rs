//! Signed, expiring HTTP file upload URLs (XEP-0363): the upload service signs what a
//! slot allows (which file, how large, of what type, until when, for PUT or GET) with
//! HMAC-SHA-256 under the tenant's signing key, and the HTTP listener checks the
//! signature before it reads a byte of the body. Nothing else is stored for a slot, and
//! no path can be guessed: each carries a random id and the signature.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// What a signed URL lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Upload the file, exactly `size` bytes of `content_type`.
    Put,
    /// Download it.
    Get,
}

impl Access {
    fn label(self) -> &'static str {
        match self {
            Access::Put => "put",
            Access::Get => "get",
        }
    }
}

/// The facts a URL signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadGrant<'a> {
    pub access: Access,
    pub tenant: &'a str,
    pub owner: &'a str,
    pub id: &'a str,
    pub name: &'a str,
    /// Bytes (PUT), 0 for GET.
    pub size: u64,
    /// Content type (PUT), empty for GET.
    pub content_type: &'a str,
    /// Unix seconds after which the URL is refused.
    pub expires: u64,
}

/// Why a signed URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error("the signature does not match")]
    BadSignature,
    #[error("the URL expired")]
    Expired,
}

impl UploadGrant<'_> {
    fn mac(&self, key: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        // Each field length-prefixed, so no two grants share a message.
        for part in [
            self.access.label(),
            self.tenant,
            self.owner,
            self.id,
            self.name,
            &self.size.to_string(),
            self.content_type,
            &self.expires.to_string(),
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// The hex signature of the grant under `key`.
    pub fn sign(&self, key: &[u8]) -> String {
        let tag = self.mac(key).finalize().into_bytes();
        tag.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks `signature` (hex) and the expiry against `now` (Unix seconds). A bad
    /// signature is reported before expiry, so expiry can only be learnt by a holder.
    pub fn verify(&self, key: &[u8], signature: &str, now: u64) -> Result<(), GrantError> {
        let expected = self.sign(key);
        if expected.as_bytes().ct_eq(signature.as_bytes()).unwrap_u8() != 1 {
            return Err(GrantError::BadSignature);
        }
        if now > self.expires {
            return Err(GrantError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(size: u64) -> UploadGrant<'static> {
        UploadGrant {
            access: Access::Put,
            tenant: "acme",
            owner: "alice@acme.test",
            id: "0123",
            name: "a.png",
            size,
            content_type: "image/png",
            expires: 1000,
        }
    }

    #[test]
    fn any_changed_field_breaks_the_signature_and_expiry_is_checked() {
        let sig = grant(10).sign(b"key");
        assert_eq!(grant(10).verify(b"key", &sig, 999), Ok(()));
        assert_eq!(
            grant(10).verify(b"key", &sig, 1001),
            Err(GrantError::Expired)
        );
        assert_eq!(
            grant(11).verify(b"key", &sig, 999),
            Err(GrantError::BadSignature)
        );
        assert_eq!(
            grant(10).verify(b"other", &sig, 999),
            Err(GrantError::BadSignature)
        );
        let get = UploadGrant {
            access: Access::Get,
            ..grant(10)
        };
        assert_eq!(get.verify(b"key", &sig, 999), Err(GrantError::BadSignature));
    }
}
