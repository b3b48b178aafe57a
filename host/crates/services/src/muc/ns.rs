//! XEP-0045 namespaces and the status codes the service sends.

pub const MUC: &str = "http://jabber.org/protocol/muc";
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const MUC_ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";
/// XEP-0410 MUC self-ping optimization.
pub const SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";
/// XEP-0249 direct invitations.
pub const CONFERENCE: &str = "jabber:x:conference";

/// Status codes (XEP-0045 §15.6).
pub mod status {
    /// Any occupant may see real JIDs (non-anonymous room).
    pub const NON_ANONYMOUS: u16 = 100;
    /// Non-privacy-related configuration change.
    pub const CONFIG_CHANGED: u16 = 104;
    /// The presence is the recipient's own.
    pub const SELF: u16 = 110;
    /// Public logging is on (self-presence on join, configuration change).
    pub const LOGGING_ENABLED: u16 = 170;
    /// Public logging was turned off.
    pub const LOGGING_DISABLED: u16 = 171;
    /// The room became non-anonymous.
    pub const NOW_NON_ANONYMOUS: u16 = 172;
    /// The room became semi-anonymous.
    pub const NOW_SEMI_ANONYMOUS: u16 = 173;
    /// A new room was created.
    pub const CREATED: u16 = 201;
    /// The service assigned or modified the occupant's nickname.
    pub const NICK_REWRITTEN: u16 = 210;
    /// Banned.
    pub const BANNED: u16 = 301;
    /// New nickname.
    pub const NICK_CHANGED: u16 = 303;
    /// Kicked.
    pub const KICKED: u16 = 307;
    /// Removed: affiliation change in a members-only room.
    pub const REMOVED_AFFILIATION: u16 = 321;
    /// Removed: the room became members-only.
    pub const REMOVED_MEMBERS_ONLY: u16 = 322;
    /// Removed: the service is shutting down (or the tenant's service went away).
    pub const REMOVED_SHUTDOWN: u16 = 332;
    /// Removed: an error bounced from the occupant (ghost removal).
    pub const REMOVED_ERROR: u16 = 333;
}
