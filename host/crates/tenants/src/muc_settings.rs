//! A tenant's MUC settings (`[tenants.NAME.muc]`, `"muc"` in the admin API): whether the
//! tenant has a MUC service, its subdomain, room defaults and limits.

use serde::{Deserialize, Serialize};

/// Who may create rooms on the tenant's MUC service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RoomCreation {
    /// Any user of the tenant (or of a federated tenant).
    #[default]
    Anyone,
    /// Only the service admins listed in `admins`.
    Admins,
}

/// MUC settings of one tenant; every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MucSettings {
    /// Serve `<subdomain>.<domain>` for every domain of the tenant.
    pub enabled: bool,
    /// The service's subdomain label (`conference` → `conference.example.com`).
    pub subdomain: String,
    /// Default `muc#roomconfig_maxusers` of new rooms (0: unlimited).
    pub max_occupants: u32,
    /// Messages of discussion history a room keeps and sends on join (at most 1000).
    pub history_length: u32,
    /// Who may create rooms.
    pub room_creation: RoomCreation,
    /// Service admins (bare JIDs): may create rooms when creation is restricted, and are
    /// owners of every room.
    pub admins: Vec<String>,
    /// Rooms the tenant may have at once across its MUC services (0: unlimited).
    pub max_rooms: u32,
    /// Rooms one user may own at once (0: unlimited), so that one user cannot take the
    /// whole of `max_rooms`; service admins are not counted against it.
    pub max_rooms_per_user: u32,
    /// Longest room nickname, in characters.
    pub max_nick_length: u32,
    /// Entries a room's affiliation list (owners, admins, members, outcasts together)
    /// may hold, so one room cannot grow storage without bound (0: unlimited).
    pub max_affiliations: u32,
    /// Lines a logged room keeps in its public log (`muc#roomconfig_enablelogging`); the
    /// oldest go first. 0: owners cannot turn logging on.
    pub max_log_messages: u32,
}

/// Default `max_affiliations`.
pub const DEFAULT_MAX_AFFILIATIONS: u32 = 10_000;

/// Default `max_log_messages`.
pub const DEFAULT_MAX_LOG_MESSAGES: u32 = 10_000;

/// Upper bound of `history_length`.
pub const MAX_HISTORY_LENGTH: u32 = 1000;

impl Default for MucSettings {
    fn default() -> Self {
        MucSettings {
            enabled: true,
            subdomain: "conference".into(),
            max_occupants: 200,
            history_length: 20,
            room_creation: RoomCreation::Anyone,
            admins: Vec::new(),
            max_rooms: 1000,
            max_rooms_per_user: 100,
            max_nick_length: 64,
            max_affiliations: DEFAULT_MAX_AFFILIATIONS,
            max_log_messages: DEFAULT_MAX_LOG_MESSAGES,
        }
    }
}

impl MucSettings {
    /// Checks and normalizes the settings (admins become normalized bare JIDs).
    pub fn normalized(mut self) -> Result<MucSettings, String> {
        let sub = self.subdomain.trim().to_ascii_lowercase();
        let label_ok = !sub.is_empty()
            && sub.len() <= 63
            && !sub.starts_with('-')
            && !sub.ends_with('-')
            && sub
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !label_ok {
            return Err(format!(
                "muc.subdomain {:?} must be one DNS label (a-z, 0-9, '-')",
                self.subdomain
            ));
        }
        self.subdomain = sub;
        if self.history_length > MAX_HISTORY_LENGTH {
            return Err(format!(
                "muc.history_length must be at most {MAX_HISTORY_LENGTH}"
            ));
        }
        if !(1..=1023).contains(&self.max_nick_length) {
            return Err("muc.max_nick_length must be between 1 and 1023".into());
        }
        for a in &mut self.admins {
            let j = jid::BareJid::new(a.trim())
                .ok()
                .filter(|j| j.node().is_some())
                .ok_or_else(|| format!("muc.admins: {a:?} is not a bare JID"))?;
            *a = j.to_string();
        }
        Ok(self)
    }

    /// True if `bare` is a service admin.
    pub fn is_admin(&self, bare: &str) -> bool {
        self.admins.iter().any(|a| a == bare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let d = MucSettings::default().normalized().unwrap();
        assert_eq!(d.subdomain, "conference");
        let s: MucSettings =
            serde_json::from_str(r#"{"subdomain":"Rooms","admins":["Boss@A.test"]}"#).unwrap();
        let s = s.normalized().unwrap();
        assert_eq!(s.subdomain, "rooms");
        assert_eq!(s.admins, vec!["boss@a.test"]);
        assert!(s.is_admin("boss@a.test"));
        for bad in [
            r#"{"subdomain":"a.b"}"#,
            r#"{"subdomain":""}"#,
            r#"{"history_length":5000}"#,
            r#"{"max_nick_length":0}"#,
            r#"{"admins":["a.test"]}"#,
        ] {
            let s: MucSettings = serde_json::from_str(bad).unwrap();
            assert!(s.normalized().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<MucSettings>(r#"{"bogus":1}"#).is_err());
        assert_eq!(d.max_affiliations, 10_000);
        assert_eq!(d.max_log_messages, 10_000);
        let c: MucSettings = serde_json::from_str(r#"{"room_creation":"admins"}"#).unwrap();
        assert_eq!(c.room_creation, RoomCreation::Admins);
    }
}
