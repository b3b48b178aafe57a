//! Peer certificates on s2s streams. Outgoing TLS accepts whatever certificate the peer
//! presents, because dialback can still authenticate a peer whose certificate does not
//! verify; whether it verifies for the peer's domain (XEP-0178: against the configured
//! authorities, for that name) is checked separately, where the tenant's
//! `require_valid_certs` decides.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
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
    /// Authorities from a PEM file; none: no certificate verifies.
    pub fn load(ca_file: Option<&Path>) -> Result<PeerCerts, CertError> {
        let Some(path) = ca_file else {
            return Ok(PeerCerts::default());
        };
        let shown = path.display().to_string();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| CertError::Read {
                path: shown.clone(),
                message: e.to_string(),
            })?
            .filter_map(Result::ok)
            .collect();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(CertError::Empty(shown));
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

    /// True if `chain` (leaf first) is valid for `domain`.
    pub fn verifies(&self, chain: &[CertificateDer<'static>], domain: &str) -> bool {
        let (Some(v), Some((leaf, rest))) = (&self.verifier, chain.split_first()) else {
            return false;
        };
        let Ok(name) = ServerName::try_from(domain.to_string()) else {
            return false;
        };
        v.verify_server_cert(leaf, rest, &name, &[], UnixTime::now())
            .is_ok()
    }
}

/// The client TLS configuration of outgoing streams (see the module docs).
pub fn client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    )
}

/// Accepts the server's certificate whatever it is; signatures are still checked, so
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
