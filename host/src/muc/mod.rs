//! Multi-user chat (XEP-0045): each tenant's MUC service, where a room is a meeting.
//!
//! - [`types`]: roles and affiliations, shared by the room logic and the room policy.
//! - [`policy`]: the tenant's room-policy decisions (a Wasm plugin, or the defaults).

pub mod policy;
pub mod types;
