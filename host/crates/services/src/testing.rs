//! Test support: a core with every feature registered and one tenant (`default`,
//! domain `localhost`), as the built-in configuration has.

use std::sync::Arc;

use heliograph_core::Core;
use heliograph_core::hooks::HooksBuilder;

use crate::config::Config;
use crate::storage::Storage;
use crate::tenants::{Registry, Tenant, TenantSpec};

/// A core over `storage` with the features of `services`.
pub fn core_with(services: &crate::Services, storage: Storage) -> Arc<Core> {
    core_with_spec(
        services,
        storage,
        TenantSpec::with_domains(vec!["localhost".into()]),
    )
}

/// Like [`core_with`], the tenant `default` having `spec`.
pub fn core_with_spec(services: &crate::Services, storage: Storage, spec: TenantSpec) -> Arc<Core> {
    let hooks = services
        .features()
        .into_iter()
        .fold(HooksBuilder::new(), |b, f| b.feature(f))
        .build();
    let tenants =
        Registry::with_tenants(vec![Tenant::new("default".into(), spec, true, None, None)])
            .expect("one tenant");
    Arc::new(Core::new(Config::default(), storage, tenants, hooks))
}
