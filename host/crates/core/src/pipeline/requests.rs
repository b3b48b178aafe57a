//! iq requests the server sends itself, on behalf of an account or a domain (a XEP-0357
//! push to an app server; later caps queries and s2s pings), and the answers to them.
//!
//! [`send`] delivers the request and waits for the `result` or `error` with its id from
//! the addressee; the iq pipeline hands such answers to [`PendingRequests::complete`]
//! before anything else, whichever local address they are for.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::oneshot;

use crate::context::Core;
use crate::router::Route;
use crate::stanza::{self, Condition};
use crate::xml::{Element, ns};

/// Why a request got no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The addressee answered with an error.
    #[error("the addressee answered with an error: {0}")]
    Refused(String),
    /// No answer in time.
    #[error("no answer in time")]
    Timeout,
    /// The addressee is not reachable from the sender (not a hosted domain or a session
    /// reachable from it).
    #[error("{0} is not reachable")]
    Unreachable(String),
}

struct Waiter {
    /// Who must answer (the request's `to`).
    peer: String,
    tx: oneshot::Sender<Element>,
}

/// Requests waiting for their answer, by id.
#[derive(Default)]
pub struct PendingRequests {
    waiting: DashMap<String, Waiter>,
}

impl PendingRequests {
    /// Takes an answer (an iq `result` or `error`) if a request waits for it; returns
    /// whether it did. An answer from anyone but the request's addressee is not taken.
    pub fn complete(&self, iq: &Element) -> bool {
        let (Some(id), Some(from)) = (iq.attr("id"), iq.attr("from")) else {
            return false;
        };
        let Some((_, w)) = self.waiting.remove_if(id, |_, w| w.peer == from) else {
            return false;
        };
        let _ = w.tx.send(iq.clone());
        true
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// Sends `iq` (with `from` and `to` set; an id is made) and waits up to `timeout` for
/// the answer. Reaches hosted domains (components, services), local sessions by full
/// JID that the sender's domain may reach, and entities on servers it federates with.
pub async fn send(
    core: &Arc<Core>,
    mut iq: Element,
    timeout: Duration,
) -> Result<Element, RequestError> {
    let to = iq.attr("to").unwrap_or_default().to_string();
    let from_domain = iq
        .attr("from")
        .and_then(|f| jid::Jid::new(f).ok())
        .map(|j| j.domain().to_string())
        .unwrap_or_default();
    let id = format!("hg-{:016x}", rand::random::<u64>());
    iq.set_attr("id", id.clone());
    let (tx, rx) = oneshot::channel();
    core.requests.waiting.insert(
        id.clone(),
        Waiter {
            peer: to.clone(),
            tx,
        },
    );
    let delivered = match crate::router::classify(core, &from_domain, Some(&to)) {
        Route::Hosted(h) => {
            h.hosted.deliver(core.clone(), iq).await;
            true
        }
        Route::Full(account, resource) => core
            .router
            .resource(&account, &resource)
            .is_some_and(|s| s.send(iq)),
        // An entity on another server (a caps query to a remote contact's resource), if
        // the sender's tenant federates with it.
        Route::RemoteServer(domain) => {
            crate::federation::forward(core, &from_domain, &domain, iq).is_ok()
        }
        _ => false,
    };
    if !delivered {
        core.requests.waiting.remove(&id);
        return Err(RequestError::Unreachable(to));
    }
    let answer = tokio::time::timeout(timeout, rx).await;
    core.requests.waiting.remove(&id);
    match answer {
        Ok(Ok(answer)) if stanza::stanza_type(&answer) == "result" => Ok(answer),
        Ok(Ok(error)) => Err(RequestError::Refused(condition(&error))),
        _ => Err(RequestError::Timeout),
    }
}

/// The defined condition of an error answer.
fn condition(error: &Element) -> String {
    error
        .child("error", ns::CLIENT)
        .and_then(|e| e.children().find(|c| c.ns() == ns::STANZAS_ERRORS))
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| Condition::UndefinedCondition.name().to_string())
}
