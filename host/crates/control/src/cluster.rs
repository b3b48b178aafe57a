//! The control layer in a cluster: a tenant change made through this node's admin API is
//! announced to every node, and every announced change is applied here by reading the
//! tenants again from the shared database (so a tenant added on one node serves logins on
//! all of them within the notice's trip, well under a second); MUC rooms move when the
//! live nodes change; a plugin changed on one node is loaded from the store on the others.

use std::collections::HashSet;
use std::sync::Arc;

use heliograph_cluster::Cluster;
use heliograph_cluster::wire::Notice;
use tokio::sync::broadcast::error::RecvError;

use crate::server::Server;
use crate::storage;
use crate::tenant_ops::{self, TenantError};

/// Tells every node that the tenants changed (no-op for a server running alone).
pub fn tenants_changed(server: &Server) {
    if let Some(cluster) = server.cluster.get() {
        cluster.notify(Notice::Tenants);
    }
}

/// Tells every node that a plugin slot changed in the store (no-op alone).
pub fn plugin_changed(server: &Server, tenant: &str, slot: &str) {
    if let Some(cluster) = server.cluster.get() {
        cluster.notify(Notice::Plugin {
            tenant: tenant.to_string(),
            slot: slot.to_string(),
        });
    }
}

/// Applies the notices of every node until the cluster stops.
pub async fn follow(server: Arc<Server>, cluster: Arc<Cluster>) {
    crate::admin::room_nodes::answer_queries(&server, &cluster, crate::admin::rooms::local);
    tokio::spawn(follow_membership(server.clone(), cluster.clone()));
    let mut notices = cluster.notices();
    loop {
        match notices.recv().await {
            Ok(Notice::Tenants) => {
                if let Err(e) = reload_tenants(&server).await {
                    tracing::error!(error = %e, "cluster: applying a tenant change failed");
                }
            }
            // Lagging behind only means several changes: one reload of the tenants and of
            // every plugin slot covers them all.
            Err(RecvError::Lagged(_)) => {
                if let Err(e) = reload_tenants(&server).await {
                    tracing::error!(error = %e, "cluster: applying a tenant change failed");
                }
                if let Some(host) = server.core.plugin_host() {
                    for (tenant, slot, e) in host.sync_all().await {
                        tracing::error!(tenant, plugin = slot, error = %e,
                            "cluster: following a plugin change failed");
                    }
                }
            }
            Ok(Notice::Plugin { tenant, slot }) => sync_plugin(&server, &tenant, &slot).await,
            // Handled by the cluster layer itself (the core's offline-stored hooks).
            Ok(Notice::OfflineStored { .. }) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// Makes a plugin slot what the store holds (compiled off the runtime if new here).
async fn sync_plugin(server: &Arc<Server>, tenant: &str, slot: &str) {
    let Some(host) = server.core.plugin_host() else {
        return;
    };
    match host.sync_slot(tenant, slot).await {
        Ok(done) => tracing::debug!(tenant, plugin = slot, ?done, "cluster: plugin synced"),
        Err(e) => tracing::error!(tenant, plugin = slot, error = %e,
            "cluster: following a plugin change failed"),
    }
}

/// Moves MUC rooms each time the live nodes change (a node joined, left or died): rooms
/// follow their placement, occupants of rooms whose node died are told (332).
async fn follow_membership(server: Arc<Server>, cluster: Arc<Cluster>) {
    let mut members = cluster.membership();
    while members.changed().await.is_ok() {
        server.services.muc.rebalance(&server.core).await;
    }
}

/// Makes the tenant registry what the configuration in force and the database say:
/// tenants added, changed, disabled or removed on another node take effect here, and the
/// sessions of domains no longer served end.
pub async fn reload_tenants(server: &Arc<Server>) -> Result<(), TenantError> {
    let config = server.config();
    let records = {
        let store = server.core.storage.tenants.clone();
        storage::blocking(move || store.tenant_records()).await?
    };
    let tenants = tenant_ops::all_tenants(&config, records)?;
    let served = |list: &[Arc<crate::tenants::Tenant>]| -> HashSet<String> {
        list.iter()
            .filter(|t| t.enabled())
            .flat_map(|t| t.spec.domains.clone())
            .collect()
    };
    let before = server.core.tenants.snapshot();
    let served_before = served(&before.list());
    for old in before.list() {
        let keep = tenants
            .iter()
            .find(|t| t.name == old.name && t.enabled())
            .map(|t| t.spec.muc_domains())
            .unwrap_or_default();
        server
            .services
            .muc
            .retire(&server.core, &old.name, &keep)
            .await;
    }
    server.core.tenants.replace_all(tenants)?;
    let served_after = served(&server.core.tenants.snapshot().list());
    let gone: Vec<String> = served_before.difference(&served_after).cloned().collect();
    if !gone.is_empty() {
        server.core.router.close_domains(
            &gone,
            heliograph_xmpp::StreamErrorCondition::HostGone,
            Some("domain no longer served"),
        );
    }
    heliograph_services::components::reconcile(&server.core, &server.services.components);
    server.services.external_services.reconcile(&server.core);
    tracing::info!("cluster: tenants read again after a change on a node");
    Ok(())
}
