//! Certificates on s2s streams. Both directions accept whatever certificate the peer
//! presents during the handshake (incoming streams ask for a client certificate without
//! requiring one), because dialback can still authenticate a peer whose certificate does
//! not verify; whether it verifies for the peer's domain (XEP-0178: against the
//! configured authorities, for that name) is checked separately, where SASL EXTERNAL and
//! the tenant's `require_valid_certs` decide. Each side presents the certificate of its
//! local domain (the tenant's own, or the fallback), as server and as client.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Why the certificate authorities could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read the s2s CA file {path}: {message}")]
    Read { path: String, message: String },
    #[error("the s2s CA file {0} holds no usable certificate")]
    Empty(String),
    #[error("s2s certificate verifier: {0}")]
    Verifier(String),
}

/// Verifies peers' certificates for their domains.
#[derive(Clone, Default)]
pub struct PeerCerts {
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

impl PeerCerts {
    /// Authorities from a PEM file, or the system's when there is none (if the system
    /// has none either, no certificate verifies).
    pub fn load(ca_file: Option<&Path>) -> Result<PeerCerts, CertError> {
        let mut roots = RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let shown = path.display().to_string();
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .map_err(|e| CertError::Read {
                        path: shown.clone(),
                        message: e.to_string(),
                    })?
                    .filter_map(Result::ok)
                    .collect();
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(CertError::Empty(shown));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    tracing::warn!(errors = ?found.errors, "no system certificate authorities: no s2s peer certificate will verify");
                    return Ok(PeerCerts::default());
                }
                tracing::debug!(
                    added,
                    "s2s peer certificates checked against the system's authorities"
                );
            }
        }
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| CertError::Verifier(e.to_string()))?;
        Ok(PeerCerts {
            verifier: Some(verifier),
        })
    }

    /// True if `chain` (leaf first) is valid and names `domain` (XEP-0178 §4): a SAN
    /// dNSName (wildcards included), or else an `id-on-xmppAddr` otherName.
    pub fn verifies(&self, chain: &[CertificateDer<'static>], domain: &str) -> bool {
        let (Some(v), Some((leaf, rest))) = (&self.verifier, chain.split_first()) else {
            return false;
        };
        let Ok(name) = ServerName::try_from(domain.to_string()) else {
            return false;
        };
        match v.verify_server_cert(leaf, rest, &name, &[], UnixTime::now()) {
            Ok(_) => true,
            // The chain verified; only the dNSName did not match.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => super::xmpp_addr::xmpp_addrs(leaf)
                .iter()
                .any(|a| a.eq_ignore_ascii_case(domain)),
            Err(_) => false,
        }
    }
}

/// The client TLS configuration of outgoing streams (see the module docs), presenting
/// `ours` as the client certificate when given.
pub fn client_config(
    ours: Option<Arc<CertifiedKey>>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)));
    Ok(match ours {
        Some(key) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key))),
        None => builder.with_no_client_auth(),
    })
}

/// The server TLS configuration of incoming streams: serves `ours` and asks the peer for
/// its certificate (optional; see the module docs).
pub fn server_config(ours: Arc<CertifiedKey>) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(Arc::new(AnyCertificate(provider)))
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(ours))),
    )
}

impl ClientCertVerifier for AnyCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Accepts the peer's certificate whatever it is; signatures are still checked, so
/// the peer holds the key of the certificate it showed.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
