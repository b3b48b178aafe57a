//! Where stanzas from a hosted entity (a MUC service, a component) may go: the shortcut
//! that takes the sender's tenant from the entity gives the same routes as looking it up
//! through the entity's domain.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use heliograph_core::Core;

use crate::router::{HostedDomain, Route, Sender, classify, classify_as};
use crate::storage::{Account, Storage};
use crate::tenants::{Tenant, TenantSpec};
use crate::xml::Element;

struct Entity(&'static str);

impl HostedDomain for Entity {
    fn tenant(&self) -> &str {
        self.0
    }
    fn kind(&self) -> &'static str {
        "test"
    }
    fn deliver(&self, _: Arc<Core>, _: Element) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

fn tenant(name: &str, domain: &str, federate_with: &[&str], enabled: bool) -> Tenant {
    let mut spec = TenantSpec::with_domains(vec![domain.into()]);
    spec.federate_with = federate_with.iter().map(|s| s.to_string()).collect();
    spec.enabled = enabled;
    Tenant::new(name.into(), spec, false, None, None)
}

#[test]
fn a_hosted_sender_reaches_what_its_domain_reaches() {
    let dir = tempfile::tempdir().unwrap();
    let core = crate::testing::core_with(
        &crate::Services::default(),
        Storage::open_sled(dir.path()).unwrap(),
    );
    for t in [
        tenant("a", "a.test", &["b"], true),
        tenant("b", "b.test", &["a"], true),
        tenant("c", "c.test", &[], true),
        tenant("off", "off.test", &[], false),
    ] {
        core.tenants.upsert(t).unwrap();
    }
    for (domain, owner) in [
        ("svc.a.test", "a"),
        ("svc.c.test", "c"),
        ("svc.off.test", "off"),
    ] {
        core.hosted
            .register(domain, Arc::new(Entity(owner)))
            .unwrap();
    }
    let senders = [
        ("svc.a.test", "a"),
        ("svc.c.test", "c"),
        ("svc.off.test", "off"),
    ];
    let targets = [
        "u@a.test/r",
        "u@b.test",
        "u@c.test",
        "u@off.test",
        "c.test",
        "svc.a.test",
        "room@svc.c.test",
        "u@elsewhere.example",
        "U@A.TEST/R",
    ];
    for (domain, tenant) in senders {
        for to in targets {
            let by_domain = classify(&core, domain, Some(to));
            let by_tenant = classify_as(&core, Sender::Hosted { domain, tenant }, Some(to));
            assert_eq!(by_tenant, by_domain, "from {domain} to {to}");
        }
    }
    // What the table holds: federated tenants meet, the others look remote.
    let from_a = Sender::Hosted {
        domain: "svc.a.test",
        tenant: "a",
    };
    assert_eq!(
        classify_as(&core, from_a, Some("u@b.test")),
        Route::Bare(Account::new("u", "b.test"))
    );
    assert_eq!(
        classify_as(&core, from_a, Some("u@c.test")),
        Route::RemoteServer("c.test".into())
    );
    assert!(matches!(
        classify_as(&core, from_a, Some("room@svc.a.test")),
        Route::Hosted(_)
    ));
    assert_eq!(
        classify_as(&core, from_a, Some("room@svc.c.test")),
        Route::RemoteServer("svc.c.test".into())
    );
}
