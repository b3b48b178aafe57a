//! Admin API placeholder (replaced by the real implementation on merge).
use std::sync::Arc;
pub async fn serve(_l: tokio::net::TcpListener, _s: Arc<crate::server::Server>, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
    shutdown.await
}
