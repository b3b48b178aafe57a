//! TLS for client connections (rustls with the ring provider): the fallback certificate
//! (configured, or self-signed and generated on first start), per-tenant certificates
//! chosen by SNI or by the stream's `to` domain, and the channel-binding data SCRAM-PLUS
//! needs from an established connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::Config;
use crate::sasl::ChannelBindings;
use crate::tenants::Registry;

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
}

/// Loads a PEM certificate chain and key.
pub fn load_cert(cert_path: &Path, key_path: &Path) -> Result<TenantCert, TlsError> {
    let certs = read_certs(cert_path)?;
    let key = read_key(key_path)?;
    let end_point_hash = Sha256::digest(certs[0].as_ref()).to_vec();
    let leaf = certs[0].as_ref().to_vec();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TenantCert {
        config: Arc::new(config),
        end_point_hash,
        cert_path: cert_path.to_path_buf(),
        leaf,
    })
}

/// Chooses certificates for connections: a tenant's own certificate when the client's
/// SNI (or, without SNI, the stream's `to` domain) belongs to a tenant that has one, the
/// fallback certificate otherwise.
pub struct TlsStore {
    fallback: ArcSwap<TenantCert>,
    tenants: Arc<Registry>,
}

impl TlsStore {
    /// Loads the fallback certificate (generating a self-signed one on first start).
    pub fn load(config: &Config, tenants: Arc<Registry>) -> Result<TlsStore, TlsError> {
        let fallback = load_fallback(config)?;
        Ok(TlsStore {
            fallback: ArcSwap::from_pointee(fallback),
            tenants,
        })
    }

    /// Re-reads the fallback certificate from disk (reload).
    pub fn reload(&self, config: &Config) -> Result<(), TlsError> {
        self.fallback.store(Arc::new(load_fallback(config)?));
        Ok(())
    }

    /// The certificate for a server name.
    pub fn choose(&self, name: Option<&str>) -> Arc<TenantCert> {
        if let Some(name) = name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(cert) = self.tenants.by_domain(&name).and_then(|t| t.cert.clone()) {
                return cert;
            }
        }
        self.fallback.load_full()
    }

    /// Runs the server side of a TLS handshake. `stream_domain` is the `to` of the stream
    /// header already received (STARTTLS), used when the client sends no SNI.
    pub async fn accept(
        &self,
        stream: TcpStream,
        stream_domain: Option<&str>,
    ) -> std::io::Result<(TlsStream<TcpStream>, ChannelBindings)> {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
        let sni = start.client_hello().server_name().map(str::to_string);
        let cert = self.choose(sni.as_deref().or(stream_domain));
        let tls = start.into_stream(cert.config.clone()).await?;
        let cb = channel_bindings(tls.get_ref().1, &cert);
        Ok((tls, cb))
    }
}

fn load_fallback(config: &Config) -> Result<TenantCert, TlsError> {
    let (cert_path, key_path) = match (&config.tls.cert, &config.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => ensure_self_signed(config)?,
    };
    load_cert(&cert_path, &key_path)
}

fn ensure_self_signed(config: &Config) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = &config.general.data_dir;
    let cert_path = dir.join("selfsigned.crt");
    let key_path = dir.join("selfsigned.key");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let mut names: Vec<String> = Vec::new();
    for h in &config.general.hosts {
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

/// Channel-binding data of an established server connection: `tls-exporter` (TLS 1.3
/// only, RFC 9266) and `tls-server-end-point` of the certificate that was served.
pub fn channel_bindings(conn: &rustls::ServerConnection, cert: &TenantCert) -> ChannelBindings {
    let mut cb = ChannelBindings {
        tls_server_end_point: Some(cert.end_point_hash.clone()),
        ..Default::default()
    };
    if conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
        let mut out = vec![0u8; 32];
        if conn
            .export_keying_material(&mut out, b"EXPORTER-Channel-Binding", None)
            .is_ok()
        {
            cb.tls_exporter = Some(out);
        }
    }
    cb
}
