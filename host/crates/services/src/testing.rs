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
    let hooks = services
        .features()
        .into_iter()
        .fold(HooksBuilder::new(), |b, f| b.feature(f))
        .build();
    let spec = TenantSpec::with_domains(vec!["localhost".into()]);
    let tenants =
        Registry::with_tenants(vec![Tenant::new("default".into(), spec, true, None, None)])
            .expect("one tenant");
    Arc::new(Core::new(Config::default(), storage, tenants, hooks))
}
