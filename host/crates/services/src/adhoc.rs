//! XEP-0050 Ad-Hoc Commands with the server's own commands for a tenant's
//! administrators (`admins = [...]` in the tenant's settings), named as XEP-0133 names
//! them:
//!
//! | node | what |
//! | --- | --- |
//! | `…admin#get-online-users-list` | the tenant's online users (completes at once) |
//! | `…admin#announce` | a headline message to every available session of the tenant |
//! | `…admin#end-user-session` | ends every session of the given accounts |
//!
//! The command list (disco#items of the commands node) is empty for anyone else, and
//! executing a command without being an admin is `forbidden`. The two commands with a
//! form keep a session id between the form and its submission (bounded, per requester).

use std::sync::Arc;

use dashmap::DashMap;
use heliograph_core::Core;

use crate::hooks::{Address, DiscoQuery, Feature, IqRequest, IqType, Registrar};
use crate::router::local_account;
use crate::session::StreamErrorCondition;
use crate::stanza::{self, Condition};
use crate::tenants::Tenant;
use crate::xml::{Element, ns};

/// The ad-hoc commands namespace (also the disco node listing them).
pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
/// Lists the tenant's online users.
pub const ONLINE_USERS: &str = "http://jabber.org/protocol/admin#get-online-users-list";
/// Sends an announcement to every online user of the tenant.
pub const ANNOUNCE: &str = "http://jabber.org/protocol/admin#announce";
/// Ends all sessions of some accounts.
pub const END_SESSIONS: &str = "http://jabber.org/protocol/admin#end-user-session";
/// The form type of XEP-0133's forms.
const ADMIN_FORM: &str = "http://jabber.org/protocol/admin";

/// Command sessions kept at most (a requester that never submits cannot grow this).
const MAX_PENDING: usize = 1024;

const COMMAND_LIST: [(&str, &str); 3] = [
    (ONLINE_USERS, "Get list of online users"),
    (ANNOUNCE, "Send announcement to all online users"),
    (END_SESSIONS, "End user sessions"),
];

/// The `adhoc` feature, with the command sessions waiting for a form.
#[derive(Default)]
pub struct AdHoc {
    /// Session id → (node, requester's full JID).
    pending: DashMap<String, (String, String)>,
}

impl Feature for AdHoc {
    fn name(&self) -> &'static str {
        "adhoc"
    }

    fn register(self: Arc<Self>, r: &mut Registrar<'_>) {
        let me = self.clone();
        r.iq(IqType::Set, COMMANDS, &[Address::Host], move |req| {
            let me = me.clone();
            crate::boxed(async move { me.handle(&req) })
        });
        r.disco_node(Address::Host, COMMANDS, |req, query| {
            let mut q = Element::new(
                "query",
                match query {
                    DiscoQuery::Info => ns::DISCO_INFO,
                    DiscoQuery::Items => ns::DISCO_ITEMS,
                },
            );
            if query == DiscoQuery::Items && is_admin(req) {
                for (node, name) in COMMAND_LIST {
                    q.push_child(
                        Element::new("item", ns::DISCO_ITEMS)
                            .with_attr("jid", req.domain.clone())
                            .with_attr("node", node)
                            .with_attr("name", name),
                    );
                }
            }
            Some(q)
        });
        for (node, name) in COMMAND_LIST {
            r.disco_node(Address::Host, node, move |req, query| {
                (query == DiscoQuery::Info && is_admin(req)).then(|| {
                    Element::new("query", ns::DISCO_INFO)
                        .with_child(
                            Element::new("identity", ns::DISCO_INFO)
                                .with_attr("category", "automation")
                                .with_attr("type", "command-node")
                                .with_attr("name", name),
                        )
                        .with_child(
                            Element::new("feature", ns::DISCO_INFO).with_attr("var", COMMANDS),
                        )
                        .with_child(
                            Element::new("feature", ns::DISCO_INFO)
                                .with_attr("var", ns::DATA_FORMS),
                        )
                })
            });
        }
        r.disco_feature(Address::Host, COMMANDS);
    }
}

/// True when the requester is one of the tenant's admins.
fn is_admin(req: &IqRequest) -> bool {
    req.origin
        .session()
        .is_some_and(|s| req.tenant.spec.is_admin(&s.account.to_string()))
}

impl AdHoc {
    fn handle(&self, req: &IqRequest) -> Option<Element> {
        let command = req.payload().filter(|p| p.is("command", COMMANDS))?;
        let Some(node) = command.attr("node") else {
            return stanza::error_reply(&req.iq, Condition::BadRequest, Some("no node"));
        };
        if !COMMAND_LIST.iter().any(|(n, _)| *n == node) {
            return stanza::error_reply(&req.iq, Condition::ItemNotFound, None);
        }
        if !is_admin(req) {
            return stanza::error_reply(
                &req.iq,
                Condition::Forbidden,
                Some("only the tenant's administrators may run this command"),
            );
        }
        let requester = req.iq.attr("from").unwrap_or_default().to_string();
        let action = command.attr("action").unwrap_or("execute");
        let form = command
            .child("x", ns::DATA_FORMS)
            .filter(|x| x.attr("type") == Some("submit"));
        match command.attr("sessionid") {
            Some(sid) => {
                let known = self
                    .pending
                    .get(sid)
                    .is_some_and(|p| p.0 == node && p.1 == requester);
                if !known {
                    let mut reply = stanza::error_reply(
                        &req.iq,
                        Condition::BadRequest,
                        Some("unknown session"),
                    )?;
                    if let Some(err) = reply.child_mut("error", ns::CLIENT) {
                        err.push_child(Element::new("bad-sessionid", COMMANDS));
                    }
                    return Some(reply);
                }
                self.pending.remove(sid);
                if action == "cancel" {
                    return Some(result(req, node, sid, "canceled", None));
                }
                self.complete(req, node, sid, form)
            }
            None if action == "cancel" => {
                stanza::error_reply(&req.iq, Condition::BadRequest, Some("nothing to cancel"))
            }
            None => {
                let sid = new_session_id();
                if node == ONLINE_USERS || form.is_some() {
                    return self.complete(req, node, &sid, form);
                }
                if self.pending.len() >= MAX_PENDING {
                    return stanza::error_reply(&req.iq, Condition::ResourceConstraint, None);
                }
                self.pending
                    .insert(sid.clone(), (node.to_string(), requester));
                Some(result(req, node, &sid, "executing", Some(form_for(node))))
            }
        }
    }

    /// Runs a command with its submitted form.
    fn complete(
        &self,
        req: &IqRequest,
        node: &str,
        sid: &str,
        form: Option<&Element>,
    ) -> Option<Element> {
        let core = &req.core;
        let tenant = &req.tenant;
        let note = match node {
            ONLINE_USERS => {
                let users = online_users(core, tenant);
                let mut field = Element::new("field", ns::DATA_FORMS)
                    .with_attr("var", "onlineuserjids")
                    .with_attr("type", "jid-multi")
                    .with_attr("label", "The list of all online users");
                for u in users {
                    field.push_child(Element::new("value", ns::DATA_FORMS).with_text(u));
                }
                let x = Element::new("x", ns::DATA_FORMS)
                    .with_attr("type", "result")
                    .with_child(hidden_form_type())
                    .with_child(field);
                return Some(result(req, node, sid, "completed", Some(x)));
            }
            ANNOUNCE => {
                let text = form.map(|f| field_values(f, "announcement").join("\n"));
                let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
                    return stanza::error_reply(
                        &req.iq,
                        Condition::BadRequest,
                        Some("no announcement"),
                    );
                };
                let sent = announce(core, tenant, &req.domain, &text);
                format!("Announcement sent to {sent} sessions")
            }
            END_SESSIONS => {
                let jids = form
                    .map(|f| field_values(f, "accountjids"))
                    .unwrap_or_default();
                let sender = req.origin.session()?;
                let mut ended = 0;
                for jid in &jids {
                    let Some(account) = local_account(core, &sender.account, jid)
                        .filter(|a| tenant.spec.domains.contains(&a.domain))
                    else {
                        let text = format!("{jid} is not an account of this tenant");
                        return stanza::error_reply(&req.iq, Condition::NotAcceptable, Some(&text));
                    };
                    for s in core.router.resources(&account) {
                        s.close(
                            StreamErrorCondition::PolicyViolation,
                            Some("session ended by an administrator"),
                        );
                        ended += 1;
                    }
                }
                format!("{ended} sessions ended")
            }
            _ => return stanza::error_reply(&req.iq, Condition::ItemNotFound, None),
        };
        let note = Element::new("note", COMMANDS)
            .with_attr("type", "info")
            .with_text(note);
        let mut reply = result(req, node, sid, "completed", None);
        if let Some(c) = reply.child_mut("command", COMMANDS) {
            c.push_child(note);
        }
        Some(reply)
    }
}

/// Bare JIDs of the tenant's accounts with at least one session, sorted.
fn online_users(core: &Core, tenant: &Tenant) -> Vec<String> {
    let mut users: Vec<String> = tenant
        .spec
        .domains
        .iter()
        .flat_map(|d| core.router.sessions(Some(d)))
        .map(|s| heliograph_xmpp::jid::bare(&s.jid).to_string())
        .collect();
    users.sort();
    users.dedup();
    users
}

/// Sends a headline from `domain` to every available session of the tenant; returns how
/// many sessions it went to.
fn announce(core: &Core, tenant: &Tenant, domain: &str, text: &str) -> usize {
    let mut sent = 0;
    for s in core.router.all_entries() {
        if !tenant.spec.domains.contains(&s.account.domain) || !s.is_available() {
            continue;
        }
        let msg = Element::new("message", ns::CLIENT)
            .with_attr("from", domain)
            .with_attr("to", s.full_jid.clone())
            .with_attr("type", "headline")
            .with_child(Element::new("body", ns::CLIENT).with_text(text));
        if s.send(msg) {
            sent += 1;
        }
    }
    sent
}

fn hidden_form_type() -> Element {
    Element::new("field", ns::DATA_FORMS)
        .with_attr("var", "FORM_TYPE")
        .with_attr("type", "hidden")
        .with_child(Element::new("value", ns::DATA_FORMS).with_text(ADMIN_FORM))
}

/// The form a command asks for.
fn form_for(node: &str) -> Element {
    let field = match node {
        ANNOUNCE => Element::new("field", ns::DATA_FORMS)
            .with_attr("var", "announcement")
            .with_attr("type", "text-multi")
            .with_attr("label", "Announcement")
            .with_child(Element::new("required", ns::DATA_FORMS)),
        _ => Element::new("field", ns::DATA_FORMS)
            .with_attr("var", "accountjids")
            .with_attr("type", "jid-multi")
            .with_attr("label", "The Jabber ID(s) for which to end sessions")
            .with_child(Element::new("required", ns::DATA_FORMS)),
    };
    Element::new("x", ns::DATA_FORMS)
        .with_attr("type", "form")
        .with_child(hidden_form_type())
        .with_child(field)
}

/// The values of field `var` of a submitted form.
fn field_values(form: &Element, var: &str) -> Vec<String> {
    form.children()
        .filter(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some(var))
        .flat_map(|f| f.children().filter(|v| v.is("value", ns::DATA_FORMS)))
        .map(|v| v.text())
        .collect()
}

/// The `<command/>` answer, with a payload (a form) when there is one.
fn result(
    req: &IqRequest,
    node: &str,
    sid: &str,
    status: &str,
    payload: Option<Element>,
) -> Element {
    let mut c = Element::new("command", COMMANDS)
        .with_attr("node", node)
        .with_attr("sessionid", sid)
        .with_attr("status", status);
    if status == "executing" {
        c.push_child(
            Element::new("actions", COMMANDS)
                .with_attr("execute", "complete")
                .with_child(Element::new("complete", COMMANDS)),
        );
    }
    if let Some(p) = payload {
        c.push_child(p);
    }
    stanza::iq_result_with(&req.iq, c)
}

fn new_session_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
