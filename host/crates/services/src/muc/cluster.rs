//! MUC in a cluster: a room lives on the node the core's placement names for its bare
//! JID (rendezvous hashing over the live nodes); other nodes forward the stanzas for it
//! there, and the room's stanzas reach occupants on any node through the router.
//!
//! - [`Forwarded`] remembers, on the occupant's node, which of its users joined which
//!   room hosted elsewhere (from the presences it forwarded), so that when the hosting
//!   node dies the occupants get the 332 the dead node cannot send and rejoin.
//! - [`MucServices::rebalance`] runs when the live nodes change: rooms this node no longer
//!   hosts are emptied with 332 (their occupants rejoin on the new host) and forgotten;
//!   persistent ones are loaded from storage by the new host on first use.

use std::sync::Arc;

use dashmap::DashMap;
use heliograph_core::Core;

use super::ns::{MUC_USER, status};
use super::service::{MucService, MucServices};
use crate::stanza;
use crate::xml::{Element, ns};

/// One user session's presence in a room hosted on another node.
#[derive(Debug, Clone, PartialEq)]
struct Joined {
    nick: String,
    node: String,
}

/// Rooms hosted elsewhere that users of this node joined, by (user full JID, room JID).
#[derive(Default)]
pub struct Forwarded {
    joined: DashMap<(String, String), Joined>,
}

impl Forwarded {
    /// Notes a presence forwarded to `room` on `node`: available joins (or changes
    /// nick), unavailable leaves.
    pub(super) fn note(&self, stanza: &Element, room: &str, node: &str) {
        if stanza.name() != "presence" {
            return;
        }
        let (Some(from), Some(to)) = (stanza.attr("from"), stanza.attr("to")) else {
            return;
        };
        let Some((_, nick)) = to.split_once('/') else {
            return;
        };
        let key = (from.to_string(), room.to_string());
        match stanza::stanza_type(stanza) {
            "" => {
                self.joined.insert(
                    key,
                    Joined {
                        nick: nick.to_string(),
                        node: node.to_string(),
                    },
                );
            }
            "unavailable" | "error" => {
                self.joined.remove(&key);
            }
            _ => {}
        }
    }

    /// Takes the entries whose room moved: those whose host is not among `live` (returned,
    /// the occupant needs a 332) and those whose room now hashes elsewhere while the old
    /// host lives (dropped: the old host sends the 332 itself).
    fn take_moved(
        &self,
        live: &[String],
        owner: impl Fn(&str) -> Option<String>,
        this: &str,
    ) -> Vec<(String, String, String)> {
        let mut orphaned = Vec::new();
        self.joined.retain(|(user, room), j| {
            if !live.contains(&j.node) {
                orphaned.push((user.clone(), room.clone(), j.nick.clone()));
                return false;
            }
            owner(room).unwrap_or_else(|| this.to_string()) == j.node
        });
        orphaned
    }

    /// Number of entries (tests, metrics).
    pub fn len(&self) -> usize {
        self.joined.len()
    }

    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
    }
}

/// The bare room JID a stanza is addressed to, when it names a room.
pub(super) fn room_of(stanza: &Element) -> Option<String> {
    let to = jid::Jid::new(stanza.attr("to")?).ok()?;
    let node = to.node()?;
    Some(format!("{}@{}", node.as_str(), to.domain().as_str()))
}

/// The presence a user gets from a room whose host died: its own departure with 332
/// (removed because of a system shutdown), as the host would have sent it.
fn shutdown_presence(user: &str, room: &str, nick: &str) -> Element {
    let x = Element::new("x", MUC_USER)
        .with_child(
            Element::new("item", MUC_USER)
                .with_attr("affiliation", "none")
                .with_attr("role", "none"),
        )
        .with_child(Element::new("status", MUC_USER).with_attr("code", status::SELF.to_string()))
        .with_child(
            Element::new("status", MUC_USER)
                .with_attr("code", status::REMOVED_SHUTDOWN.to_string()),
        );
    Element::new("presence", ns::CLIENT)
        .with_attr("from", format!("{room}/{nick}"))
        .with_attr("to", user)
        .with_attr("type", "unavailable")
        .with_attr("id", super::new_id())
        .with_child(x)
}

impl MucServices {
    /// The live nodes changed: occupants here of rooms whose host died get 332; rooms
    /// this node hosts but no longer should are emptied with 332 and forgotten (the
    /// persistent ones stay stored for their new host). No-op outside a cluster.
    pub async fn rebalance(&self, core: &Arc<Core>) {
        let Some(placement) = core.placement.get() else {
            return;
        };
        let live = placement.live_nodes();
        let orphaned =
            self.forwarded
                .take_moved(&live, |room| placement.owner(room), placement.this_node());
        for (user, room, nick) in orphaned {
            let Some(domain) = room.split_once('@').map(|(_, d)| d.to_string()) else {
                continue;
            };
            let Some(service) = self.service(core, &domain) else {
                continue;
            };
            tracing::info!(room, user, "muc: the room's node died; occupant told (332)");
            service
                .send(core, vec![shutdown_presence(&user, &room, &nick)])
                .await;
        }
        let services: Vec<Arc<MucService>> = self.services.iter().map(|s| s.clone()).collect();
        for service in services {
            service.release_moved(core).await;
        }
    }
}

impl MucService {
    /// Empties (332) and forgets the rooms in memory that another node hosts now.
    async fn release_moved(&self, core: &Arc<Core>) {
        let Some(placement) = core.placement.get() else {
            return;
        };
        let names: Vec<String> = self.rooms.iter().map(|r| r.key().clone()).collect();
        for name in names {
            let Some(node) = placement.owner(&self.room_jid(&name)) else {
                continue;
            };
            if let Some(mut room) = self.lock_room(core, &name).await {
                tracing::info!(room = %room.jid, to = node, "muc: room moves to another node");
                let out = room.shut_down();
                self.finish(core, room, out).await;
            }
            self.rooms.remove(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(from: &str, to: &str, kind: Option<&str>) -> Element {
        Element::new("presence", ns::CLIENT)
            .with_attr("from", from)
            .with_attr("to", to)
            .with_opt_attr("type", kind)
    }

    #[test]
    fn occupants_of_a_dead_host_are_found_and_moved_rooms_forgotten() {
        let f = Forwarded::default();
        let live = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        f.note(&presence("a@x/1", "r1@c.x/alice", None), "r1@c.x", "n3");
        f.note(&presence("a@x/1", "r2@c.x/al", None), "r2@c.x", "n2");
        f.note(&presence("b@x/1", "r1@c.x/bob", None), "r1@c.x", "n3");
        f.note(
            &presence("b@x/1", "r1@c.x/bob", Some("unavailable")),
            "r1@c.x",
            "n3",
        );
        assert_eq!(f.len(), 2);
        // n3 died; r2 still hashes to n2.
        let out = f.take_moved(&live(&["n1", "n2"]), |_| Some("n2".into()), "n1");
        assert_eq!(
            out,
            vec![(
                "a@x/1".to_string(),
                "r1@c.x".to_string(),
                "alice".to_string()
            )]
        );
        assert_eq!(f.len(), 1);
        // r2 moves to this node (n1) while n2 lives: dropped without a 332 from here.
        let out = f.take_moved(&live(&["n1", "n2"]), |_| None, "n1");
        assert!(out.is_empty());
        assert!(f.is_empty());
    }
}
