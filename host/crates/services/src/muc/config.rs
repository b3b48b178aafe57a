//! A room's configuration (XEP-0045 §10.2, `muc#roomconfig`): the settings, their form
//! for owners, and the (var, value) pairs the room policy and storage use.

use super::dataform::{self, Field, Submitted};
use crate::xml::Element;

pub const ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";

pub const ROOMNAME: &str = "muc#roomconfig_roomname";
pub const ROOMDESC: &str = "muc#roomconfig_roomdesc";
pub const PERSISTENT: &str = "muc#roomconfig_persistentroom";
pub const PUBLIC: &str = "muc#roomconfig_publicroom";
pub const MEMBERS_ONLY: &str = "muc#roomconfig_membersonly";
pub const MODERATED: &str = "muc#roomconfig_moderatedroom";
pub const PASSWORD_PROTECTED: &str = "muc#roomconfig_passwordprotectedroom";
pub const SECRET: &str = "muc#roomconfig_roomsecret";
pub const MAX_USERS: &str = "muc#roomconfig_maxusers";
pub const WHOIS: &str = "muc#roomconfig_whois";
pub const CHANGE_SUBJECT: &str = "muc#roomconfig_changesubject";
pub const ALLOW_INVITES: &str = "muc#roomconfig_allowinvites";
pub const ALLOW_PM: &str = "muc#roomconfig_allowpm";
/// The owner and admin lists (jid-multi), edited through the form as well as
/// `muc#admin` (XEP-0045 §10.2, §10.5).
pub const ROOMOWNERS: &str = "muc#roomconfig_roomowners";
pub const ROOMADMINS: &str = "muc#roomconfig_roomadmins";
/// Public logging of the discussion: messages and subject changes go to the room's log
/// (read through the admin API); occupants see status 170.
pub const ENABLE_LOGGING: &str = "muc#roomconfig_enablelogging";

/// Who may see occupants' real JIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whois {
    /// Moderators only (semi-anonymous room).
    Moderators,
    /// Everyone (non-anonymous room).
    Anyone,
}

/// Who may send private messages to occupants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowPm {
    Anyone,
    Participants,
    Moderators,
    Nobody,
}

/// A room's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomConfig {
    pub name: String,
    pub description: String,
    pub persistent: bool,
    /// Listed in the service's disco#items (false: hidden).
    pub public: bool,
    pub members_only: bool,
    pub moderated: bool,
    /// The password, when the room is password-protected.
    pub password: Option<String>,
    /// Maximum occupants (0: unlimited).
    pub max_users: u32,
    pub whois: Whois,
    /// Participants (not only moderators) may change the subject.
    pub change_subject: bool,
    /// Occupants (not only admins) may invite in members-only rooms.
    pub allow_invites: bool,
    pub allow_pm: AllowPm,
    /// Messages and subject changes are kept in the room's public log.
    pub logging: bool,
}

/// A submitted value that is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid value {value:?} for {var}")]
pub struct InvalidField {
    pub var: String,
    pub value: String,
}

impl RoomConfig {
    /// The configuration of a new room on a service whose default maximum is
    /// `max_users`.
    pub fn new(max_users: u32) -> RoomConfig {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: None,
            max_users,
            whois: Whois::Moderators,
            change_subject: false,
            allow_invites: false,
            allow_pm: AllowPm::Anyone,
            logging: false,
        }
    }

    /// The settings as (var, value) pairs; the password is included only with
    /// `with_secret`.
    pub fn to_pairs(&self, with_secret: bool) -> Vec<(String, String)> {
        let b = |v: bool| if v { "1" } else { "0" }.to_string();
        let mut out = vec![
            (ROOMNAME.into(), self.name.clone()),
            (ROOMDESC.into(), self.description.clone()),
            (PERSISTENT.into(), b(self.persistent)),
            (PUBLIC.into(), b(self.public)),
            (MEMBERS_ONLY.into(), b(self.members_only)),
            (MODERATED.into(), b(self.moderated)),
            (PASSWORD_PROTECTED.into(), b(self.password.is_some())),
            (MAX_USERS.into(), self.max_users.to_string()),
            (WHOIS.into(), whois_str(self.whois).into()),
            (CHANGE_SUBJECT.into(), b(self.change_subject)),
            (ALLOW_INVITES.into(), b(self.allow_invites)),
            (ALLOW_PM.into(), allow_pm_str(self.allow_pm).into()),
            (ENABLE_LOGGING.into(), b(self.logging)),
        ];
        if with_secret && let Some(p) = &self.password {
            out.push((SECRET.into(), p.clone()));
        }
        out
    }

    /// This configuration with the given fields changed (unknown fields are ignored, as
    /// XEP-0004 allows). A password-protected room needs a non-empty secret.
    pub fn with_fields<'a>(
        &self,
        fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<RoomConfig, InvalidField> {
        let mut c = self.clone();
        let mut protected = self.password.is_some();
        let mut secret = self.password.clone();
        for (var, value) in fields {
            let bad = || InvalidField {
                var: var.to_string(),
                value: value.to_string(),
            };
            let flag = || parse_bool(value).ok_or_else(bad);
            match var {
                ROOMNAME => c.name = value.to_string(),
                ROOMDESC => c.description = value.to_string(),
                PERSISTENT => c.persistent = flag()?,
                PUBLIC => c.public = flag()?,
                MEMBERS_ONLY => c.members_only = flag()?,
                MODERATED => c.moderated = flag()?,
                PASSWORD_PROTECTED => protected = flag()?,
                SECRET => secret = Some(value.to_string()).filter(|s| !s.is_empty()),
                MAX_USERS => {
                    c.max_users = match value {
                        "" | "none" => 0,
                        n => n.parse().map_err(|_| bad())?,
                    }
                }
                WHOIS => {
                    c.whois = match value {
                        "moderators" => Whois::Moderators,
                        "anyone" => Whois::Anyone,
                        _ => return Err(bad()),
                    }
                }
                CHANGE_SUBJECT => c.change_subject = flag()?,
                ALLOW_INVITES => c.allow_invites = flag()?,
                ALLOW_PM => {
                    c.allow_pm = match value {
                        "anyone" => AllowPm::Anyone,
                        "participants" => AllowPm::Participants,
                        "moderators" => AllowPm::Moderators,
                        "none" => AllowPm::Nobody,
                        _ => return Err(bad()),
                    }
                }
                ENABLE_LOGGING => c.logging = flag()?,
                _ => {}
            }
        }
        c.password = if protected {
            Some(secret.ok_or_else(|| InvalidField {
                var: SECRET.into(),
                value: String::new(),
            })?)
        } else {
            None
        };
        Ok(c)
    }

    /// Applies a submitted `muc#roomconfig` form (first value of each field).
    pub fn with_form(&self, form: &Submitted) -> Result<RoomConfig, InvalidField> {
        self.with_fields(form.fields.iter().map(|(var, values)| {
            (
                var.as_str(),
                values.first().map(String::as_str).unwrap_or(""),
            )
        }))
    }

    /// The owner's configuration form filled with the current values, `extra` fields
    /// (the affiliation lists) at the end.
    pub fn form(&self, room: &str, extra: Vec<Field<'_>>) -> Element {
        let b = |v: bool| if v { "1" } else { "0" }.to_string();
        let title = format!("Configuration of {room}");
        let mut fields = vec![
            Field::new(ROOMNAME, "text-single", self.name.clone()).labelled("Room name"),
            Field::new(ROOMDESC, "text-single", self.description.clone()).labelled("Description"),
            Field::new(PERSISTENT, "boolean", b(self.persistent))
                .labelled("Keep the room when the last occupant leaves"),
            Field::new(PUBLIC, "boolean", b(self.public)).labelled("List the room publicly"),
            Field::new(MEMBERS_ONLY, "boolean", b(self.members_only))
                .labelled("Only members may enter"),
            Field::new(MODERATED, "boolean", b(self.moderated))
                .labelled("Only participants with voice may speak"),
            Field::new(PASSWORD_PROTECTED, "boolean", b(self.password.is_some()))
                .labelled("A password is required to enter"),
            Field::new(
                SECRET,
                "text-private",
                self.password.clone().unwrap_or_default(),
            )
            .labelled("Password"),
            Field::new(MAX_USERS, "text-single", self.max_users.to_string())
                .labelled("Maximum occupants (0: no limit)"),
            Field::new(WHOIS, "list-single", whois_str(self.whois))
                .labelled("Who may discover real JIDs")
                .with_options(&[("Moderators", "moderators"), ("Anyone", "anyone")]),
            Field::new(CHANGE_SUBJECT, "boolean", b(self.change_subject))
                .labelled("Participants may change the subject"),
            Field::new(ALLOW_INVITES, "boolean", b(self.allow_invites))
                .labelled("Occupants may invite others"),
            Field::new(ALLOW_PM, "list-single", allow_pm_str(self.allow_pm))
                .labelled("Who may send private messages")
                .with_options(&[
                    ("Anyone", "anyone"),
                    ("Participants", "participants"),
                    ("Moderators", "moderators"),
                    ("Nobody", "none"),
                ]),
            Field::new(ENABLE_LOGGING, "boolean", b(self.logging))
                .labelled("Keep a public log of the discussion"),
        ];
        fields.extend(extra);
        dataform::form("form", ROOMCONFIG, Some(&title), &fields)
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

fn whois_str(w: Whois) -> &'static str {
    match w {
        Whois::Moderators => "moderators",
        Whois::Anyone => "anyone",
    }
}

fn allow_pm_str(a: AllowPm) -> &'static str {
    match a {
        AllowPm::Anyone => "anyone",
        AllowPm::Participants => "participants",
        AllowPm::Moderators => "moderators",
        AllowPm::Nobody => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_and_password_rules() {
        let c = RoomConfig::new(50)
            .with_fields([
                (ROOMNAME, "Standup"),
                (PERSISTENT, "true"),
                (PASSWORD_PROTECTED, "1"),
                (SECRET, "s3cret"),
                (WHOIS, "anyone"),
                (MAX_USERS, "none"),
                ("muc#roomconfig_unknown", "x"),
            ])
            .unwrap();
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(c.max_users, 0);
        let pairs = c.to_pairs(true);
        let back = RoomConfig::new(1)
            .with_fields(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())))
            .unwrap();
        assert_eq!(back, c);
        assert!(!c.to_pairs(false).iter().any(|(v, _)| v == SECRET));
        // Protected without a secret, and nonsense values, are refused.
        assert!(
            RoomConfig::new(1)
                .with_fields([(PASSWORD_PROTECTED, "1")])
                .is_err()
        );
        assert!(
            RoomConfig::new(1)
                .with_fields([(MODERATED, "maybe")])
                .is_err()
        );
        assert!(RoomConfig::new(1).with_fields([(MAX_USERS, "-3")]).is_err());
        // Logging is a flag like the others (whether the tenant allows it is the room's
        // business) and round-trips through the pairs.
        let logged = RoomConfig::new(1)
            .with_fields([(ENABLE_LOGGING, "1")])
            .unwrap();
        assert!(logged.logging);
        assert!(
            logged
                .to_pairs(false)
                .contains(&(ENABLE_LOGGING.into(), "1".into()))
        );
        assert_eq!(
            RoomConfig::new(1).with_fields([(ENABLE_LOGGING, "often")]),
            Err(InvalidField {
                var: ENABLE_LOGGING.into(),
                value: "often".into()
            })
        );
        let open = c.with_fields([(PASSWORD_PROTECTED, "0")]).unwrap();
        assert_eq!(open.password, None);
    }

    #[test]
    fn form_submission_applies_fields() {
        let form = RoomConfig::new(10).form("r@conference.a.test", Vec::new());
        let mut submitted = Submitted::parse(&form);
        assert_eq!(submitted.form_type(), Some(ROOMCONFIG));
        for (var, values) in &mut submitted.fields {
            if var == MEMBERS_ONLY {
                *values = vec!["1".into()];
            }
        }
        let c = RoomConfig::new(10).with_form(&submitted).unwrap();
        assert!(c.members_only);
        assert_eq!(c.max_users, 10);
    }
}
