//! Pushes when a tenant's external services change (XEP-0215 §3.4): each session that
//! asked for the services gets an `<iq type='set'>` with the services that were added
//! (`action='add'`), changed (`'modify'`, with fresh credentials: a new secret or TTL
//! changes every restricted one) or removed (`'delete'`).

use std::sync::atomic::{AtomicU64, Ordering};

use heliograph_core::Core;

use super::{ExternalServices, service_element};
use crate::tenants::external_services::{ExternalService, ExternalServices as Settings};
use crate::xml::{Element, ns};

/// Ids of the pushes sent.
static NEXT_PUSH: AtomicU64 = AtomicU64::new(1);

/// One changed service and what happened to it.
struct Change<'a> {
    action: &'static str,
    service: &'a ExternalService,
}

/// What differs between what subscribers were told and the settings now.
fn changes<'a>(told: &'a Settings, now: &'a Settings) -> Vec<Change<'a>> {
    let credentials_changed =
        told.turn_secret != now.turn_secret || told.credential_ttl != now.credential_ttl;
    let mut out = Vec::new();
    for old in &told.services {
        if !now.services.iter().any(|s| s.key() == old.key()) {
            out.push(Change {
                action: "delete",
                service: old,
            });
        }
    }
    for new in &now.services {
        match told.services.iter().find(|s| s.key() == new.key()) {
            None => out.push(Change {
                action: "add",
                service: new,
            }),
            Some(old) if old != new || (credentials_changed && new.is_restricted()) => {
                out.push(Change {
                    action: "modify",
                    service: new,
                })
            }
            Some(_) => {}
        }
    }
    out
}

impl ExternalServices {
    /// Compares every tenant's services with what its sessions were told and pushes the
    /// differences; call after tenants change (API update, reload). Returns the pushes
    /// sent.
    pub fn reconcile(&self, core: &Core) -> usize {
        let snapshot = core.tenants.snapshot();
        let mut sent = 0;
        let names: Vec<String> = self.told.iter().map(|e| e.key().clone()).collect();
        for name in names {
            let tenant = snapshot.by_name(&name).filter(|t| t.enabled()).cloned();
            let now = tenant
                .as_ref()
                .map(|t| t.spec.external_services.clone())
                .unwrap_or_default();
            let Some(told) = self.told.get(&name).map(|t| t.clone()) else {
                continue;
            };
            if told == now {
                continue;
            }
            self.told.insert(name.clone(), now.clone());
            let Some(tenant) = tenant else { continue };
            let list = changes(&told, &now);
            if list.is_empty() {
                continue;
            }
            let accounts: Vec<_> = self
                .subscribers
                .iter()
                .filter(|e| tenant.spec.domains.contains(&e.key().domain))
                .map(|e| (e.key().clone(), e.value().clone()))
                .collect();
            for (account, ids) in accounts {
                let user = account.to_string();
                let mut services = Element::new("services", ns::EXTDISCO);
                for c in &list {
                    let settings = if c.action == "delete" { &told } else { &now };
                    services.push_child(service_element(
                        settings,
                        c.service,
                        &user,
                        Some(c.action),
                    ));
                }
                for s in core.router.resources(&account) {
                    if !ids.contains(&s.id) || !s.is_alive() {
                        continue;
                    }
                    let iq = Element::new("iq", ns::CLIENT)
                        .with_attr("type", "set")
                        .with_attr("from", account.domain.clone())
                        .with_attr("to", s.full_jid.clone())
                        .with_attr(
                            "id",
                            format!("extdisco-{}", NEXT_PUSH.fetch_add(1, Ordering::Relaxed)),
                        )
                        .with_child(services.clone());
                    if s.send(iq) {
                        sent += 1;
                    }
                }
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> Settings {
        let s: Settings = serde_json::from_str(toml_text).unwrap();
        s.normalized().unwrap()
    }

    #[test]
    fn added_removed_and_modified_services() {
        let told = settings(
            r#"{"turn_secret":"a","services":[
                {"type":"turn","host":"t.test","port":3478},
                {"type":"stun","host":"s.test","port":3478}]}"#,
        );
        let now = settings(
            r#"{"turn_secret":"a","services":[
                {"type":"turn","host":"t.test","port":3478,"name":"Relay"},
                {"type":"stun","host":"s2.test","port":3478}]}"#,
        );
        let got: Vec<(&str, &str)> = changes(&told, &now)
            .iter()
            .map(|c| (c.action, c.service.host.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("delete", "s.test"),
                ("modify", "t.test"),
                ("add", "s2.test")
            ]
        );
        assert!(changes(&now, &now).is_empty());
        // A new secret changes the restricted services' credentials only.
        let mut rotated = now.clone();
        rotated.turn_secret = Some("b".into());
        let got: Vec<_> = changes(&now, &rotated)
            .iter()
            .map(|c| (c.action, c.service.host.as_str()))
            .collect();
        assert_eq!(got, vec![("modify", "t.test")]);
    }
}
