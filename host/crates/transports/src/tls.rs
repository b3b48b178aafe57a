//! TLS for client connections (rustls with the ring provider): the fallback certificate
//! (configured, or self-signed and generated on first start), per-tenant certificates
//! chosen by SNI or by the stream's `to` domain, and the channel-binding data SCRAM-PLUS
//! needs from an established connection.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use heliograph_auth::sasl::ChannelBindings;
use heliograph_config::Config;
use heliograph_tenants::Registry;
pub use heliograph_tenants::cert::{
    TenantCert, TlsError, ensure_self_signed, load_cert, write_private,
};

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
        _ => ensure_self_signed(&config.general.data_dir, &config.general.hosts)?,
    };
    load_cert(&cert_path, &key_path)
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
