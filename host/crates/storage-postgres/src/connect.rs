//! The connection pool: the URL parsed by tokio-postgres (URL or key-value form), a
//! deadpool pool of `pool_size` connections with wait, create and recycle timeouts, and
//! TLS through rustls whenever the URL's `sslmode` is not `disable` (`prefer`, the
//! default, falls back to plain text when the server offers no TLS; `require` does not).

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;

use crate::{PgError, PgSettings};

/// Builds the pool (no connection is made until the first call).
pub fn pool(settings: &PgSettings) -> Result<Pool, PgError> {
    let mut config: tokio_postgres::Config = settings
        .url
        .parse()
        .map_err(|e: tokio_postgres::Error| PgError::Url(e.to_string()))?;
    config.connect_timeout(settings.connect_timeout);
    if config.get_application_name().is_none() {
        config.application_name("heliograph");
    }
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if config.get_ssl_mode() == SslMode::Disable {
        Manager::from_config(config, tokio_postgres::NoTls, manager_config)
    } else {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(settings)?);
        Manager::from_config(config, tls, manager_config)
    };
    Pool::builder(manager)
        .max_size(settings.pool_size.max(1))
        .wait_timeout(Some(settings.query_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| PgError::Connect(e.to_string()))
}

/// rustls with the `ca_file`'s certificates, else the system's roots.
fn tls_config(settings: &PgSettings) -> Result<rustls::ClientConfig, PgError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| PgError::Tls(format!("reading {}: {e}", path.display())))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| PgError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
