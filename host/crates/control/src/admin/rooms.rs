//! Meeting management (issue 6 point 4): a tenant's MUC rooms — list, show with
//! occupants, read a logged room's public log, create, destroy (occupants get the
//! `<destroy/>` presence) and kick an occupant (307 to everyone). Tenant-scoped: a tenant
//! token reaches its own rooms only. Each call is a [`RoomQuery`] run by [`local`] on the
//! node hosting the room (in a cluster, possibly another one: see [`room_nodes`]).

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use std::sync::Arc;

use super::context::Ctx;
use super::response::{ApiError, ApiResult, json, no_content};
use super::room_nodes::{self, RoomQuery};
use crate::server::Server;
use crate::stanza::Condition;
use heliograph_services::muc::{MucError, MucService};

/// Body of `POST /api/v1/tenants/{tenant}/rooms`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRoom {
    /// The room's JID (`standup@conference.example.com`).
    jid: String,
    /// `muc#roomconfig` fields, by full var or by suffix (`membersonly`), with string,
    /// boolean or number values.
    #[serde(default)]
    config: serde_json::Map<String, serde_json::Value>,
    /// Bare JIDs of the room's owners.
    #[serde(default)]
    owners: Vec<String>,
}

/// Body of `POST /api/v1/tenants/{tenant}/rooms/{room}/kick`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Kick {
    nick: String,
    #[serde(default)]
    reason: Option<String>,
}

fn tenant_param(ctx: &Ctx) -> Result<String, ApiError> {
    let name = ctx.param("tenant")?.to_string();
    ctx.principal.check_tenant(&name)?;
    if ctx.server().core.tenants.by_name(&name).is_none() {
        return Err(ApiError::NoSuchTenant(name));
    }
    Ok(name)
}

/// A decoded query parameter (`+` is a space), `None` if absent or empty.
fn query(ctx: &Ctx, name: &str) -> Result<Option<String>, ApiError> {
    match ctx.query_param(name) {
        Some(v) if !v.is_empty() => super::routes::percent_decode(&v.replace('+', " ")).map(Some),
        _ => Ok(None),
    }
}

fn api_error(e: MucError) -> ApiError {
    match e {
        MucError::NoSuchService(_) | MucError::NoSuchRoom(_) => ApiError::NoSuchRoom(e.to_string()),
        MucError::RoomExists(_) => ApiError::Conflict(e.to_string()),
        MucError::InvalidRoom(_) | MucError::InvalidConfig(_) => ApiError::Invalid(e.to_string()),
        MucError::LimitReached(t) => ApiError::LimitReached(t),
        MucError::Refused(r) if r.condition == Condition::ItemNotFound => {
            ApiError::NoSuchRoom(r.text.unwrap_or_else(|| "no such occupant".into()))
        }
        MucError::Refused(r) => ApiError::Conflict(r.to_string()),
        MucError::Storage(e) => ApiError::internal("room storage", e),
    }
}

/// `GET /api/v1/tenants/{tenant}/rooms` → `{"rooms":[RoomSummary...]}`; in a cluster,
/// the rooms of every live node, each with its `node`, and `unreachable` (the nodes that
/// did not answer) when there are any.
pub async fn list(ctx: Ctx) -> ApiResult {
    let tenant = tenant_param(&ctx)?;
    let server = ctx.api.server.clone();
    let here = match local(
        &server,
        RoomQuery::List {
            tenant: tenant.clone(),
        },
    )
    .await?
    {
        serde_json::Value::Array(rooms) => rooms,
        _ => Vec::new(),
    };
    let (rooms, unreachable) = room_nodes::list_everywhere(&server, &tenant, here).await;
    let mut body = json!({ "rooms": rooms });
    if !unreachable.is_empty() {
        body["unreachable"] = json!(unreachable);
    }
    Ok(json(StatusCode::OK, &body))
}

/// `GET /api/v1/tenants/{tenant}/rooms/{room}` → the room with its occupants (asked of
/// the node hosting it, in a cluster).
pub async fn show(ctx: Ctx) -> ApiResult {
    let tenant = tenant_param(&ctx)?;
    let server = ctx.api.server.clone();
    let room = room_param(&ctx, &server, &tenant)?;
    let host = room_nodes::host_of(&server, &room);
    let query = RoomQuery::Show { tenant, room };
    let mut room = on_host(&server, query).await?;
    // In a cluster, which node hosts it.
    let this = server
        .core
        .placement
        .get()
        .map(|p| p.this_node().to_string());
    if let (Some(node), Some(fields)) = (host.or(this), room.as_object_mut()) {
        fields.insert("node".into(), json!(node));
    }
    Ok(json(StatusCode::OK, &room))
}

/// The room JID of the path, once its service is known to belong to `tenant`.
fn room_param(ctx: &Ctx, server: &Server, tenant: &str) -> Result<String, ApiError> {
    let (service, name) = server
        .services
        .muc
        .locate(&server.core, tenant, ctx.param("room")?)
        .map_err(api_error)?;
    Ok(service.room_jid(&name))
}

/// Runs a query about one room on the node hosting it.
async fn on_host(server: &Arc<Server>, query: RoomQuery) -> Result<serde_json::Value, ApiError> {
    let room = match &query {
        RoomQuery::Show { room, .. }
        | RoomQuery::Log { room, .. }
        | RoomQuery::Create { room, .. }
        | RoomQuery::Destroy { room, .. }
        | RoomQuery::Kick { room, .. } => room.clone(),
        RoomQuery::List { .. } => return local(server, query).await,
    };
    match room_nodes::host_of(server, &room) {
        Some(node) => room_nodes::ask(server, &node, &query).await,
        None => local(server, query).await,
    }
}

fn to_json(v: &impl serde::Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal("room", e))
}

/// The MUC service of `tenant` holding `room`, and the room's local name.
fn locate(
    server: &Server,
    tenant: &str,
    room: &str,
) -> Result<(Arc<MucService>, String), ApiError> {
    server
        .services
        .muc
        .locate(&server.core, tenant, room)
        .map_err(api_error)
}

/// A room query answered from this node's own rooms: the endpoints' own work, and what
/// this node answers other nodes (see [`room_nodes`]).
pub fn local(server: &Arc<Server>, query: RoomQuery) -> room_nodes::RoomFuture<'_> {
    Box::pin(async move {
        match query {
            RoomQuery::List { tenant } => {
                let rooms = server.services.muc.list_rooms(&server.core, &tenant).await;
                to_json(&rooms)
            }
            RoomQuery::Show { tenant, room } => {
                let (service, name) = locate(server, &tenant, &room)?;
                let room = service
                    .room_details(&server.core, &name)
                    .await
                    .map_err(api_error)?;
                to_json(&room)
            }
            RoomQuery::Log {
                tenant,
                room,
                after,
                limit,
            } => {
                let (service, name) = locate(server, &tenant, &room)?;
                let log = service
                    .room_log(&server.core, &name, after, limit)
                    .await
                    .map_err(api_error)?;
                to_json(&log)
            }
            RoomQuery::Create {
                tenant,
                room,
                config,
                owners,
            } => {
                let (service, name) = locate(server, &tenant, &room)?;
                let room = service
                    .create_room(&server.core, &name, &config, &owners)
                    .await
                    .map_err(api_error)?;
                to_json(&room)
            }
            RoomQuery::Destroy {
                tenant,
                room,
                alternate,
                reason,
            } => {
                let (service, name) = locate(server, &tenant, &room)?;
                service
                    .destroy_room(&server.core, &name, alternate.as_deref(), reason.as_deref())
                    .await
                    .map_err(api_error)?;
                Ok(serde_json::Value::Null)
            }
            RoomQuery::Kick {
                tenant,
                room,
                nick,
                reason,
            } => {
                let (service, name) = locate(server, &tenant, &room)?;
                service
                    .kick(&server.core, &name, &nick, reason.as_deref())
                    .await
                    .map_err(api_error)?;
                Ok(serde_json::Value::Null)
            }
        }
    })
}

/// Lines a log page holds by default and at most.
const LOG_PAGE: usize = 100;
const MAX_LOG_PAGE: usize = 1000;

/// `GET /api/v1/tenants/{tenant}/rooms/{room}/log?after=N&limit=N` → a page of the log.
pub async fn log(ctx: Ctx) -> ApiResult {
    let tenant = tenant_param(&ctx)?;
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        query(&ctx, name)?
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| ApiError::Invalid(format!("{name} must be a number, not {v:?}")))
            })
            .transpose()
    };
    let after = number("after")?.unwrap_or(0);
    let limit = number("limit")?.map_or(LOG_PAGE, |l| l as usize);
    if !(1..=MAX_LOG_PAGE).contains(&limit) {
        return Err(ApiError::Invalid(format!(
            "limit must be between 1 and {MAX_LOG_PAGE}"
        )));
    }
    let server = ctx.api.server.clone();
    let room = room_param(&ctx, &server, &tenant)?;
    let log = on_host(
        &server,
        RoomQuery::Log {
            tenant,
            room,
            after,
            limit,
        },
    )
    .await?;
    Ok(json(StatusCode::OK, &log))
}

/// `POST /api/v1/tenants/{tenant}/rooms` → 201 with the room.
pub async fn create(ctx: Ctx) -> ApiResult {
    let tenant = tenant_param(&ctx)?;
    let body: NewRoom = ctx.json()?;
    let server = ctx.api.server.clone();
    let (service, name) = server
        .services
        .muc
        .locate(&server.core, &tenant, &body.jid)
        .map_err(api_error)?;
    let mut config = Vec::new();
    for (key, value) in body.config {
        let var = if key.starts_with("muc#") {
            key
        } else {
            format!("muc#roomconfig_{key}")
        };
        let value = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(b) => if b { "1" } else { "0" }.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(ApiError::BadJson(format!(
                    "config {var}: {other} is not a string, boolean or number"
                )));
            }
        };
        config.push((var, value));
    }
    let query = RoomQuery::Create {
        tenant,
        room: service.room_jid(&name),
        config,
        owners: body.owners,
    };
    let room = on_host(&server, query).await?;
    Ok(json(StatusCode::CREATED, &room))
}

/// `DELETE /api/v1/tenants/{tenant}/rooms/{room}?reason=…&alternate=…` → 204.
pub async fn destroy(ctx: Ctx) -> ApiResult {
    let tenant = tenant_param(&ctx)?;
    let server = ctx.api.server.clone();
    let room = room_param(&ctx, &server, &tenant)?;
    let alternate = query(&ctx, "alternate")?;
    if let Some(a) = &alternate
        && jid::BareJid::new(a).is_err()
    {
        return Err(ApiError::Invalid(format!("alternate {a:?} is not a JID")));
    }
    let reason = query(&ctx, "reason")?;
    let query = RoomQuery::Destroy {
        tenant,
        room,
        alternate,
        reason,
    };
    on_host(&server, query).await?;
    Ok(no_content())
}

/// `POST /api/v1/tenants/{tenant}/rooms/{room}/kick` `{"nick","reason"?}` → 204.
pub async fn kick(ctx: Ctx) -> ApiResult {
    let tenant = tenant_param(&ctx)?;
    let body: Kick = ctx.json()?;
    let server = ctx.api.server.clone();
    let room = room_param(&ctx, &server, &tenant)?;
    let query = RoomQuery::Kick {
        tenant,
        room,
        nick: body.nick,
        reason: body.reason,
    };
    on_host(&server, query).await?;
    Ok(no_content())
}
