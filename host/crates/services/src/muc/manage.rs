//! The MUC operations of the admin API (meeting management): list a tenant's rooms,
//! show one with its occupants, read a logged room's public log, create a configured
//! room, destroy a room (occupants get the `<destroy/>` presence) and kick an occupant
//! (307 to everyone); and the views of rooms those operations return.

use std::sync::Arc;

use serde::Serialize;

use super::moderation::{Actor, AdminChange};
use super::room::{Outbox, Room, RoomError};
use super::service::{MucService, MucServices};
use super::types::{Affiliation, Role};
use heliograph_core::Core;

/// Why an admin operation on rooms failed.
#[derive(Debug, thiserror::Error)]
pub enum MucError {
    #[error("{0} is not a MUC service of this tenant")]
    NoSuchService(String),
    #[error("no room {0}")]
    NoSuchRoom(String),
    #[error("room {0} already exists")]
    RoomExists(String),
    #[error("{0:?} is not a valid room JID")]
    InvalidRoom(String),
    #[error("invalid room configuration: {0}")]
    InvalidConfig(String),
    #[error("{0}")]
    LimitReached(String),
    #[error("refused: {0}")]
    Refused(RoomError),
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
}

/// A room as listed by the admin API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RoomSummary {
    pub jid: String,
    pub name: String,
    pub occupants: usize,
    pub persistent: bool,
    pub public: bool,
    pub members_only: bool,
    pub moderated: bool,
    pub password_protected: bool,
    /// Created and waiting for its owner's configuration.
    pub locked: bool,
    /// Messages and subject changes go to the room's public log.
    pub logging: bool,
}

/// A page of a room's public log.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RoomLog {
    pub room: String,
    /// Whether the room is logging now (lines from earlier may exist either way).
    pub logging: bool,
    pub entries: Vec<LogLineView>,
    /// The number to pass as `after` for the next page, when this one was full.
    pub next: Option<u64>,
}

/// A line of a room's log with its number.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogLineView {
    pub number: u64,
    #[serde(flatten)]
    pub entry: crate::storage::RoomLogEntry,
}

/// An occupant as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OccupantView {
    pub nick: String,
    /// The user's bare JID.
    pub jid: String,
    /// Full JIDs of the user's sessions in the room.
    pub sessions: Vec<String>,
    pub role: String,
    pub affiliation: String,
}

/// A room with its occupants, affiliations, subject and configuration. In JSON the
/// summary's fields come first, but for its occupant count: `occupants` is the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomDetails {
    pub summary: RoomSummary,
    pub subject: Option<String>,
    pub occupants: Vec<OccupantView>,
    /// Affiliations other than `none`: bare JID → affiliation.
    pub affiliations: std::collections::BTreeMap<String, String>,
    /// `muc#roomconfig` field values (the password is not shown).
    pub config: std::collections::BTreeMap<String, String>,
}

impl Serialize for RoomDetails {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        let summary = serde_json::to_value(&self.summary).map_err(S::Error::custom)?;
        let mut map = s.serialize_map(None)?;
        if let serde_json::Value::Object(fields) = summary {
            for (key, value) in fields.iter().filter(|(k, _)| *k != "occupants") {
                map.serialize_entry(key, value)?;
            }
        }
        map.serialize_entry("subject", &self.subject)?;
        map.serialize_entry("occupants", &self.occupants)?;
        map.serialize_entry("affiliations", &self.affiliations)?;
        map.serialize_entry("config", &self.config)?;
        map.end()
    }
}

impl MucServices {
    /// Every room of a tenant, sorted by JID.
    pub async fn list_rooms(&self, core: &Core, tenant: &str) -> Vec<RoomSummary> {
        let mut out = Vec::new();
        for s in self.tenant_services(core, tenant) {
            out.extend(s.list_rooms().await);
        }
        out
    }

    /// The service of `tenant` hosting the room JID `room`, and the room's localpart.
    pub fn locate(
        &self,
        core: &Core,
        tenant: &str,
        room: &str,
    ) -> Result<(Arc<MucService>, String), MucError> {
        let jid = jid::BareJid::new(room).map_err(|_| MucError::InvalidRoom(room.into()))?;
        let node = jid
            .node()
            .ok_or_else(|| MucError::InvalidRoom(room.into()))?
            .to_string();
        let domain = jid.domain().to_string();
        match self.service(core, &domain) {
            Some(s) if s.tenant == tenant => Ok((s, node)),
            _ => Err(MucError::NoSuchService(domain)),
        }
    }
}

impl MucService {
    /// Summaries of every room, sorted by JID.
    pub async fn list_rooms(&self) -> Vec<RoomSummary> {
        let cells: Vec<_> = self.rooms.iter().map(|r| r.value().clone()).collect();
        let mut out = Vec::new();
        for cell in cells {
            let room = cell.lock().await;
            if !room.destroyed {
                out.push(summary(&room));
            }
        }
        out.sort_by(|a, b| a.jid.cmp(&b.jid));
        out
    }

    /// (JID, name) of the rooms listed in disco#items: public and configured.
    pub async fn public_rooms(&self) -> Vec<(String, String)> {
        let cells: Vec<_> = self.rooms.iter().map(|r| r.value().clone()).collect();
        let mut out = Vec::new();
        for cell in cells {
            let room = cell.lock().await;
            if !room.destroyed && !room.locked && room.config.public {
                out.push((room.jid.clone(), super::disco::display_name(&room)));
            }
        }
        out.sort();
        out
    }

    /// A room with its occupants.
    pub async fn room_details(&self, core: &Core, name: &str) -> Result<RoomDetails, MucError> {
        let room = self
            .lock_room(core, name)
            .await
            .ok_or_else(|| MucError::NoSuchRoom(self.room_jid(name)))?;
        Ok(details(&room))
    }

    /// Up to `limit` lines of a room's public log numbered after `after`, oldest first.
    pub async fn room_log(
        &self,
        core: &Core,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<RoomLog, MucError> {
        let (room, logging) = {
            let room = self
                .lock_room(core, name)
                .await
                .ok_or_else(|| MucError::NoSuchRoom(self.room_jid(name)))?;
            (room.jid.clone(), room.is_logged())
        };
        let store = core.storage.muc.clone();
        let (domain, n) = (self.tenant_domain.clone(), name.to_string());
        let lines =
            crate::storage::blocking(move || store.room_log(&domain, &n, after, limit)).await?;
        let next = (lines.len() == limit)
            .then(|| lines.last().map(|(number, _)| *number))
            .flatten();
        Ok(RoomLog {
            room,
            logging,
            entries: lines
                .into_iter()
                .map(|(number, entry)| LogLineView { number, entry })
                .collect(),
            next,
        })
    }

    /// Creates a configured (unlocked) room from the admin API, with `owners` as owners
    /// and `config` as `muc#roomconfig` field values. Counts against the tenant's room
    /// limit; the room policy is not asked (the tenant's administrator decides).
    pub async fn create_room(
        &self,
        core: &Arc<Core>,
        name: &str,
        config: &[(String, String)],
        owners: &[String],
    ) -> Result<RoomDetails, MucError> {
        let settings = self
            .settings(core)
            .ok_or_else(|| MucError::NoSuchService(self.domain.clone()))?;
        let name = jid::BareJid::new(&self.room_jid(name))
            .ok()
            .and_then(|j| j.node().map(|n| n.to_string()))
            .ok_or_else(|| MucError::InvalidRoom(name.to_string()))?;
        self.check_room_limit(core, &settings)
            .map_err(MucError::LimitReached)?;
        let mut room = self.new_room(&name, &settings);
        let configured = room
            .config
            .with_fields(config.iter().map(|(a, b)| (a.as_str(), b.as_str())))
            .map_err(|e| MucError::InvalidConfig(e.to_string()))?;
        room.check_config(&configured)
            .map_err(|e| MucError::InvalidConfig(e.text.unwrap_or_default()))?;
        room.config = configured;
        for o in owners {
            let bare = jid::BareJid::new(o)
                .map_err(|_| MucError::InvalidConfig(format!("{o:?} is not a JID")))?;
            room.store_affiliation(&bare.to_string(), Affiliation::Owner);
        }
        if !config.iter().any(|(v, _)| v == super::config::PERSISTENT) {
            // A room nobody has entered yet would vanish at once if temporary.
            room.config.persistent = true;
        }
        if !room.config.persistent {
            return Err(MucError::InvalidConfig(
                "a room created without occupants must be persistent".into(),
            ));
        }
        room.dirty = true;
        let guard = self
            .insert_room(&name, room)
            .ok_or_else(|| MucError::RoomExists(self.room_jid(&name)))?;
        let details = details(&guard);
        self.finish(core, guard, Outbox::new()).await;
        tracing::info!(room = %details.summary.jid, "room created through the admin API");
        Ok(details)
    }

    /// Destroys a room from the admin API; occupants get the `<destroy/>` presence.
    pub async fn destroy_room(
        &self,
        core: &Arc<Core>,
        name: &str,
        alternate: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), MucError> {
        let mut room = self
            .lock_room(core, name)
            .await
            .ok_or_else(|| MucError::NoSuchRoom(self.room_jid(name)))?;
        let out = room.destroy(alternate, reason);
        tracing::info!(room = %room.jid, "room destroyed through the admin API");
        self.finish(core, room, out).await;
        Ok(())
    }

    /// Kicks an occupant from the admin API (307 to everyone).
    pub async fn kick(
        &self,
        core: &Arc<Core>,
        name: &str,
        nick: &str,
        reason: Option<&str>,
    ) -> Result<(), MucError> {
        let mut room = self
            .lock_room(core, name)
            .await
            .ok_or_else(|| MucError::NoSuchRoom(self.room_jid(name)))?;
        let change = AdminChange::Role {
            nick: nick.to_string(),
            role: Role::None,
            reason: reason.map(str::to_string),
        };
        let out = room
            .admin_set(&Actor::system(), &[change])
            .map_err(MucError::Refused)?;
        self.finish(core, room, out).await;
        Ok(())
    }
}

fn summary(room: &Room) -> RoomSummary {
    RoomSummary {
        jid: room.jid.clone(),
        name: super::disco::display_name(room),
        occupants: room.occupant_count(),
        persistent: room.config.persistent,
        public: room.config.public,
        members_only: room.config.members_only,
        moderated: room.config.moderated,
        password_protected: room.config.password.is_some(),
        locked: room.locked,
        logging: room.is_logged(),
    }
}

fn details(room: &Room) -> RoomDetails {
    RoomDetails {
        summary: summary(room),
        subject: room.subject.as_ref().map(|s| s.text.clone()),
        occupants: room
            .occupants()
            .iter()
            .map(|o| OccupantView {
                nick: o.nick.clone(),
                jid: o.bare.clone(),
                sessions: o.sessions.clone(),
                role: o.role.as_str().to_string(),
                affiliation: o.affiliation.as_str().to_string(),
            })
            .collect(),
        affiliations: room
            .affiliations()
            .map(|(j, a)| (j.to_string(), a.as_str().to_string()))
            .collect(),
        config: room.config.to_pairs(false).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_details_have_one_occupants_key_the_list() {
        let details = RoomDetails {
            summary: RoomSummary {
                jid: "r@conference.a.test".into(),
                name: "R".into(),
                occupants: 1,
                persistent: true,
                public: true,
                members_only: false,
                moderated: false,
                password_protected: false,
                locked: false,
                logging: false,
            },
            subject: Some("hello".into()),
            occupants: vec![OccupantView {
                nick: "Alice".into(),
                jid: "alice@a.test".into(),
                sessions: vec!["alice@a.test/pc".into()],
                role: "moderator".into(),
                affiliation: "owner".into(),
            }],
            affiliations: Default::default(),
            config: Default::default(),
        };
        let text = serde_json::to_string(&details).unwrap();
        assert_eq!(text.matches("\"occupants\"").count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["occupants"][0]["nick"], "Alice");
        assert_eq!(v["jid"], "r@conference.a.test");
        assert_eq!(v["subject"], "hello");
        assert_eq!(v["persistent"], true);
    }
}
