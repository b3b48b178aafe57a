//! XEP-0363 HTTP File Upload: each tenant's upload service at `<subdomain>.<domain>`
//! (`upload.acme.test`) hands out slots, a PUT URL and a GET URL, both signed with an
//! expiring HMAC under the tenant's signing key (`heliograph_auth::tokens::upload`);
//! the public HTTP listener checks them and streams the file to the [`FileStore`]
//! (`heliograph-transports`, `http/upload.rs`).
//!
//! A slot request is refused with `not-acceptable` and `<file-too-large/>` over the
//! tenant's `max_file_size`, with `resource-constraint` when the user's or the tenant's
//! quota would be exceeded, and with `bad-request` for a file name that is not one safe
//! path segment. Files are deleted after the tenant's `retention_days` ([`expire_all`],
//! run hourly), with their owner's account ([`delete_account_files`]) and with their
//! tenant.
//!
//! [`FileStore`]: crate::storage::files::FileStore

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use heliograph_auth::tokens::upload::{Access, UploadGrant};
use heliograph_core::{Core, Uploads};
use sha2::{Digest, Sha256};

use crate::hooks::{Address, Feature, Registrar};
use crate::pipeline::{self, Origin};
use crate::router::{HostedDomain, HostedResolver, HostedTarget};
use crate::stanza::{self, Condition};
use crate::storage::files::FileKey;
use crate::storage::{self, Account};
use crate::tenants::Tenant;
use crate::xml::{Element, ns};

/// The upload namespace.
pub const UPLOAD: &str = "urn:xmpp:http:upload:0";
/// The URL path every upload lives under.
pub const PATH_PREFIX: &str = "/upload/";

/// The `upload` feature: the per-tenant services, found by domain.
pub struct Upload;

impl Feature for Upload {
    fn name(&self) -> &'static str {
        "upload"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        r.hosted(Arc::new(Resolver));
        r.disco_items(Address::Host, |core, domain| {
            let Some(tenant) = core.tenant_of(domain) else {
                return Vec::new();
            };
            if !tenant.spec.upload.enabled || core.uploads.get().is_none() {
                return Vec::new();
            }
            vec![
                Element::new("item", ns::DISCO_ITEMS)
                    .with_attr("jid", format!("{}.{domain}", tenant.spec.upload.subdomain))
                    .with_attr("name", "HTTP File Upload"),
            ]
        });
    }
}

/// Resolves `upload.<tenant domain>` for tenants with uploads on (and a server that
/// serves them over HTTP).
struct Resolver;

impl HostedResolver for Resolver {
    fn resolve(&self, core: &Core, domain: &str) -> Option<Arc<dyn HostedDomain>> {
        let (sub, parent) = domain.split_once('.')?;
        let tenant = core.tenant_of(parent)?;
        let settings = &tenant.spec.upload;
        if !settings.enabled || settings.subdomain != sub || core.uploads.get().is_none() {
            return None;
        }
        Some(Arc::new(Service {
            tenant: tenant.name.clone(),
            domain: domain.to_string(),
        }))
    }
}

/// One tenant's upload service at one domain.
struct Service {
    tenant: String,
    domain: String,
}

impl HostedDomain for Service {
    fn tenant(&self) -> &str {
        &self.tenant
    }

    fn kind(&self) -> &'static str {
        "upload"
    }

    fn deliver(&self, core: Arc<Core>, stanza: Element) -> BoxFuture<'static, ()> {
        let service = Arc::new(Service {
            tenant: self.tenant.clone(),
            domain: self.domain.clone(),
        });
        Box::pin(async move {
            let Some(reply) = service.answer(&core, &stanza).await else {
                return;
            };
            let origin = Origin::Hosted(HostedTarget {
                domain: service.domain.clone(),
                hosted: service.clone(),
            });
            pipeline::route(&core, &origin, reply).await;
        })
    }
}

/// The owner folder of an account: a hash, so URLs do not show who uploaded.
pub fn owner_id(account: &Account) -> String {
    let digest = Sha256::digest(account.to_string().as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Percent-encodes a path segment or query value (RFC 3986 unreserved kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Service {
    async fn answer(&self, core: &Arc<Core>, stanza: &Element) -> Option<Element> {
        if stanza.name() != "iq" {
            return None;
        }
        let Some(tenant) = core.tenants.by_name(&self.tenant) else {
            return stanza::error_reply(stanza, Condition::ServiceUnavailable, None);
        };
        let payload = stanza.first_child();
        match (stanza::stanza_type(stanza), payload) {
            ("get", Some(p)) if p.is("query", ns::DISCO_INFO) && p.attr("node").is_none() => {
                Some(stanza::iq_result_with(stanza, disco_info(&tenant)))
            }
            ("get", Some(p)) if p.is("query", ns::DISCO_ITEMS) => Some(stanza::iq_result_with(
                stanza,
                Element::new("query", ns::DISCO_ITEMS),
            )),
            ("get", Some(p)) if p.is("request", UPLOAD) => {
                Some(self.slot(core, &tenant, stanza, p).await)
            }
            ("result" | "error", _) => None,
            _ => stanza::error_reply(stanza, Condition::ServiceUnavailable, None),
        }
    }

    /// Answers a slot request (XEP-0363 §4).
    async fn slot(
        &self,
        core: &Arc<Core>,
        tenant: &Tenant,
        iq: &Element,
        req: &Element,
    ) -> Element {
        let refuse = |cond, text: &str| {
            stanza::error_reply(iq, cond, Some(text)).expect("a get is never an error")
        };
        let Some(uploads) = core.uploads.get() else {
            return refuse(Condition::ServiceUnavailable, "uploads are not served");
        };
        let from = iq.attr("from").unwrap_or_default();
        let bare = heliograph_xmpp::jid::bare(from);
        let Some((local, domain)) = bare.split_once('@') else {
            return refuse(Condition::Forbidden, "only users may upload");
        };
        if !tenant.spec.domains.iter().any(|d| d == domain) {
            return refuse(
                Condition::Forbidden,
                "only the tenant's users may upload here",
            );
        }
        let account = Account::new(local, domain);
        let settings = &tenant.spec.upload;
        let name = req.attr("filename").unwrap_or_default();
        let Some(size) = req.attr("size").and_then(|s| s.parse::<u64>().ok()) else {
            return refuse(Condition::BadRequest, "no valid size");
        };
        let content_type = req
            .attr("content-type")
            .filter(|t| !t.is_empty())
            .unwrap_or("application/octet-stream");
        if content_type.len() > 255 || content_type.chars().any(|c| c.is_control()) {
            return refuse(Condition::BadRequest, "invalid content type");
        }
        if size > settings.max_file_size {
            let mut reply = refuse(
                Condition::NotAcceptable,
                &format!("the file is larger than {} bytes", settings.max_file_size),
            );
            if let Some(err) = reply.child_mut("error", ns::CLIENT) {
                err.push_child(
                    Element::new("file-too-large", UPLOAD).with_child(
                        Element::new("max-file-size", UPLOAD)
                            .with_text(settings.max_file_size.to_string()),
                    ),
                );
            }
            return reply;
        }
        let owner = owner_id(&account);
        let id = format!("{:032x}", rand::random::<u128>());
        let key = match FileKey::new(&tenant.name, &owner, &id, name) {
            Ok(k) => k,
            Err(e) => return refuse(Condition::BadRequest, &e.to_string()),
        };
        if let Err(text) = check_quotas(uploads, tenant, &owner, size).await {
            return refuse(Condition::ResourceConstraint, &text);
        }
        let store = core.storage.tokens.clone();
        let tenant_name = tenant.name.clone();
        let signing = storage::blocking(move || store.signing_key(&tenant_name)).await;
        let key_bytes = match signing {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(tenant = %tenant.name, error = %e, "reading the signing key");
                return refuse(Condition::InternalServerError, "try again later");
            }
        };
        let now = now_secs();
        let put = UploadGrant {
            access: Access::Put,
            tenant: &key.tenant,
            owner: &key.owner,
            id: &key.id,
            name: &key.name,
            size,
            content_type,
            expires: now + settings.slot_ttl,
        };
        let get = UploadGrant {
            access: Access::Get,
            size: 0,
            content_type: "",
            expires: now + settings.download_ttl(),
            ..put.clone()
        };
        let path = format!(
            "{}{}{}/{}/{}/{}",
            uploads.public_url,
            PATH_PREFIX,
            encode(&key.tenant),
            key.owner,
            key.id,
            encode(&key.name)
        );
        let put_url = format!(
            "{path}?len={size}&type={}&exp={}&sig={}",
            encode(content_type),
            put.expires,
            put.sign(&key_bytes)
        );
        let get_url = format!("{path}?exp={}&sig={}", get.expires, get.sign(&key_bytes));
        let slot = Element::new("slot", UPLOAD)
            .with_child(
                Element::new("put", UPLOAD)
                    .with_attr("url", put_url)
                    .with_child(
                        Element::new("header", UPLOAD)
                            .with_attr("name", "Content-Type")
                            .with_text(content_type),
                    ),
            )
            .with_child(Element::new("get", UPLOAD).with_attr("url", get_url));
        stanza::iq_result_with(iq, slot)
    }
}

/// Refuses a slot that would take the user or the tenant over quota (stored files and
/// PUTs in progress).
async fn check_quotas(
    uploads: &Uploads,
    tenant: &Tenant,
    owner: &str,
    size: u64,
) -> Result<(), String> {
    let settings = &tenant.spec.upload;
    let failed = |e: std::io::Error| {
        tracing::warn!(tenant = %tenant.name, error = %e, "measuring upload usage");
        "cannot measure the space used".to_string()
    };
    if settings.user_quota > 0 {
        let used = uploads
            .files
            .usage(&tenant.name, Some(owner))
            .await
            .map_err(failed)?
            + uploads.reservations.pending(&tenant.name, Some(owner));
        if used.saturating_add(size) > settings.user_quota {
            return Err(format!(
                "your uploads would take {} of your {} bytes",
                used + size,
                settings.user_quota
            ));
        }
    }
    if settings.tenant_quota > 0 {
        let used = uploads
            .files
            .usage(&tenant.name, None)
            .await
            .map_err(failed)?
            + uploads.reservations.pending(&tenant.name, None);
        if used.saturating_add(size) > settings.tenant_quota {
            return Err("the domain's upload space is full".into());
        }
    }
    Ok(())
}

fn disco_info(tenant: &Tenant) -> Element {
    let max = tenant.spec.upload.max_file_size.to_string();
    let form = Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "result")
        .with_child(
            Element::new("field", ns::DATA_FORMS)
                .with_attr("var", "FORM_TYPE")
                .with_attr("type", "hidden")
                .with_child(Element::new("value", ns::DATA_FORMS).with_text(UPLOAD)),
        )
        .with_child(
            Element::new("field", ns::DATA_FORMS)
                .with_attr("var", "max-file-size")
                .with_child(Element::new("value", ns::DATA_FORMS).with_text(max)),
        );
    Element::new("query", ns::DISCO_INFO)
        .with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "store")
                .with_attr("type", "file")
                .with_attr("name", "HTTP File Upload"),
        )
        .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", UPLOAD))
        .with_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", ns::DISCO_INFO))
        .with_child(form)
}

/// Deletes every file an account uploaded (the account is being deleted).
pub async fn delete_account_files(core: &Core, account: &Account) {
    let (Some(uploads), Some(tenant)) = (core.uploads.get(), core.tenant_of(&account.domain))
    else {
        return;
    };
    if let Err(e) = uploads
        .files
        .delete_owner(&tenant.name, &owner_id(account))
        .await
    {
        tracing::warn!(%account, error = %e, "deleting the account's uploads");
    }
}

/// Deletes files older than each tenant's retention; returns how many went.
pub async fn expire_all(core: &Core) -> usize {
    let Some(uploads) = core.uploads.get() else {
        return 0;
    };
    let mut removed = 0;
    for tenant in core.tenants.snapshot().list() {
        let days = tenant.spec.upload.retention_days;
        if days == 0 {
            continue;
        }
        let age = Duration::from_secs(u64::from(days) * 86_400);
        match uploads.files.expire(&tenant.name, age).await {
            Ok(n) => removed += n,
            Err(e) => tracing::warn!(tenant = %tenant.name, error = %e, "expiring uploads"),
        }
    }
    removed
}

/// Runs [`expire_all`] every hour, for ever.
pub async fn expiry_loop(core: Arc<Core>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let n = expire_all(&core).await;
        if n > 0 {
            tracing::info!(files = n, "expired uploads deleted");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn encoding_keeps_unreserved_only() {
        assert_eq!(super::encode("a b/../c.png"), "a%20b%2F..%2Fc.png");
        assert_eq!(super::encode("image/png"), "image%2Fpng");
    }
}
