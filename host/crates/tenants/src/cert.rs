//! Certificates: loading a PEM chain and key into a rustls configuration (a tenant's own
//! certificate, or the server's fallback), the self-signed fallback generated on first
//! start, and writing private files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// TLS setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no usable {what} in PEM file")]
    Pem { path: PathBuf, what: &'static str },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// One certificate with the rustls configuration serving it.
#[derive(Debug)]
pub struct TenantCert {
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate (RFC 5929 `tls-server-end-point` for SHA-256 and
    /// SHA-1 signed certificates).
    pub end_point_hash: Vec<u8>,
    /// Where it was loaded from.
    pub cert_path: PathBuf,
    /// The leaf certificate (DER), for tests and the admin API.
    pub leaf: Vec<u8>,
    /// The chain and its signing key, for other TLS roles: s2s serves it asking for the
    /// peer's certificate, and presents it as a client certificate (XEP-0178).
    pub certified: Arc<rustls::sign::CertifiedKey>,
}

/// Loads a PEM certificate chain and key.
pub fn load_cert(cert_path: &Path, key_path: &Path) -> Result<TenantCert, TlsError> {
    let certs = read_certs(cert_path)?;
    let key = read_key(key_path)?;
    let end_point_hash = Sha256::digest(certs[0].as_ref()).to_vec();
    let leaf = certs[0].as_ref().to_vec();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = Arc::new(rustls::sign::CertifiedKey::from_der(
        certs.clone(),
        key.clone_key(),
        &provider,
    )?);
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TenantCert {
        config: Arc::new(config),
        end_point_hash,
        cert_path: cert_path.to_path_buf(),
        leaf,
        certified,
    })
}

/// The self-signed certificate in `dir` for `hosts`, generated on first use.
pub fn ensure_self_signed(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join("selfsigned.crt");
    let key_path = dir.join("selfsigned.key");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let mut names: Vec<String> = Vec::new();
    for h in hosts {
        names.push(h.clone());
        names.push(format!("*.{h}"));
    }
    if names.is_empty() {
        names.push("localhost".into());
    }
    let generated = rcgen::generate_simple_self_signed(names)?;
    write_private(&key_path, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, generated.cert.pem()).map_err(|source| TlsError::Write {
        path: cert_path.clone(),
        source,
    })?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed certificate");
    Ok((cert_path, key_path))
}

/// Writes a file readable only by its owner.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| TlsError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    f.write_all(data).map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&data)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|_| TlsError::Pem {
        path: path.to_path_buf(),
        what: "private key",
    })
}
