//! The route table of the admin API and the dispatcher that walks it.
//!
//! Every endpoint is one [`Route`] in [`ROUTES`]: method, path pattern (`{name}` segments
//! capture a path parameter), summary, request body description and handler. Dispatch is
//! driven by the table alone, so the OpenAPI document can be generated from it too.
//!
//! Order of checks for a request: route (404 unknown path, 405 known path with another
//! method), then authentication (401), then for routes with a body its size (413) and
//! content type (415); the handler does the rest. The route table is public knowledge (it is
//! what the OpenAPI document describes), so matching before authenticating leaks nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Method, StatusCode};

use super::context::{Ctx, Params};
use super::response::{ApiError, ApiResponse, ApiResult};
use super::{
    AdminApi, MAX_BODY, auth, cluster, drain, me, openapi, plugins, rooms, s2s, sessions, tenants,
    tokens, users,
};

/// Future returned by a handler.
pub type HandlerFuture = Pin<Box<dyn Future<Output = ApiResult> + Send>>;

/// A handler: takes the request context, answers.
pub type Handler = fn(Ctx) -> HandlerFuture;

/// One endpoint.
pub struct Route {
    pub method: Method,
    /// Path pattern; `{name}` segments are parameters.
    pub path: &'static str,
    /// One-line description (OpenAPI `summary`).
    pub summary: &'static str,
    /// The request body the route takes, with its shape for documentation.
    pub body: Body,
    /// Status of a successful response.
    pub success: StatusCode,
    pub handler: Handler,
}

/// The request body of a route: its kind decides the accepted content type and size
/// limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    /// `application/json`, at most [`MAX_BODY`] bytes; the text describes its shape.
    Json(&'static str),
    /// `application/wasm`, at most `plugins.max_upload_mib`; the text describes it.
    Wasm(&'static str),
}

impl Body {
    /// The description, if the route takes a body.
    pub fn description(self) -> Option<&'static str> {
        match self {
            Body::None => None,
            Body::Json(d) | Body::Wasm(d) => Some(d),
        }
    }

    /// The media type of the body, if any.
    pub fn content_type(self) -> Option<&'static str> {
        match self {
            Body::None => None,
            Body::Json(_) => Some("application/json"),
            Body::Wasm(_) => Some("application/wasm"),
        }
    }
}

/// Every endpoint of the admin API.
pub static ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: "/api/v1/users/{domain}",
        summary: "List the accounts of a domain",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(users::list(c)),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/users/{domain}",
        summary: "Create an account",
        body: Body::Json(r#"{"username": string, "password": string}"#),
        success: StatusCode::CREATED,
        handler: |c| Box::pin(users::create(c)),
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/users/{domain}/{username}",
        summary: "Delete an account with all its data and end its sessions",
        body: Body::None,
        success: StatusCode::NO_CONTENT,
        handler: |c| Box::pin(users::delete(c)),
    },
    Route {
        method: Method::PUT,
        path: "/api/v1/users/{domain}/{username}/password",
        summary: "Change an account's password and end its sessions",
        body: Body::Json(r#"{"password": string}"#),
        success: StatusCode::NO_CONTENT,
        handler: |c| Box::pin(users::set_password(c)),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/users/{domain}/{username}/tokens",
        summary: "Mint server-issued tokens for an account (tenant must have `tokens`)",
        body: Body::Json(r#"{"kind"?: "access"|"refresh"|"both"}"#),
        success: StatusCode::CREATED,
        handler: |c| Box::pin(tokens::mint(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/users/{domain}/{username}/tokens",
        summary: "List an account's live refresh tokens",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(tokens::list(c)),
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/users/{domain}/{username}/tokens",
        summary: "Revoke every access and refresh token of an account, effective at once",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(tokens::revoke_all(c)),
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/users/{domain}/{username}/tokens/{id}",
        summary: "Revoke one refresh token of an account",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(tokens::revoke_one(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/sessions",
        summary: "List all online sessions",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(sessions::list_all(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/sessions/{domain}",
        summary: "List the online sessions of a domain",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(sessions::list_domain(c)),
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/sessions/{domain}/{username}/{resource}",
        summary: "End one online session (stream error policy-violation; the account stays)",
        body: Body::None,
        success: StatusCode::NO_CONTENT,
        handler: |c| Box::pin(sessions::end(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/s2s",
        summary: "List the federation (s2s) streams: direction, authenticated domain pairs, TLS, stanza counts",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(s2s::list(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/me",
        summary: "Who the token is: {\"principal\": \"operator\"} or {\"principal\": \"tenant\", \"tenant\": name}",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(me::show(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/tenants",
        summary: "List tenants (operator)",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(tenants::list(c)),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/tenants",
        summary: "Create a tenant; its users can log in at once (operator)",
        body: Body::Json(
            r#"{"name": string, "domains": [string], "enabled"?: bool, "auth"?: {"method": "internal"|"plugin", "plugin"?: string}, "limits"?: {"max_sessions", "max_accounts", "stanza_rate", "stanza_burst", "max_stanza_size", "max_roster_items", "max_roster_name_length", "max_roster_group_length", "max_roster_groups"}, "tls"?: {"cert": path, "key": path}, "federate_with"?: [string], "muc"?: {"enabled", "subdomain", "max_occupants", "history_length", "room_creation": "anyone"|"admins", "admins": [bare JID], "max_rooms", "max_rooms_per_user", "max_nick_length", "max_affiliations", "max_log_messages"}, "room_policy"?: {"plugin": string, "fail_open"?: bool}, "components"?: [{"domains": [string], "name"?: string, "secret"?: string, "plugin"?: string, "on_conflict"?: "refuse"|"replace", "hidden"?: bool}], "jwt"?: {"keys"?: [{"kid"?, "alg", "secret"|"secret_file"|"public_key"|"public_key_file"}], "jwks_files"?: [path], "username_claim"?, "audience"?: [string], "issuer"?: [string], "leeway_secs"?, "require_exp"?}, "tokens"?: {"access_ttl_secs"?, "refresh_ttl_secs"?}, "external_services"?: {"turn_secret"?: string, "credential_ttl"?: seconds, "services"?: [{"type": "stun"|"turn"|"stuns"|"turns", "host": string, "port": int, "transport"?: "udp"|"tcp", "restricted"?: bool, "name"?: string}]}, "calls"?: {"require_relationship"?: bool}, "s2s"?: {"enabled"?: bool, "auth"?: ["external"|"dialback"], "require_valid_certs"?: bool, "allow"?: [string], "deny"?: [string]}}"#,
        ),
        success: StatusCode::CREATED,
        handler: |c| Box::pin(tenants::create(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/tenants/{tenant}",
        summary: "Show a tenant",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(tenants::show(c)),
    },
    Route {
        method: Method::PATCH,
        path: "/api/v1/tenants/{tenant}",
        summary: "Change a tenant's settings (tenant tokens: auth, federation, jwt without key files, tokens, room policy, components and MUC settings but muc.max_rooms, muc.max_affiliations and muc.max_log_messages)",
        body: Body::Json(
            r#"{"domains"?: [string], "auth"?: {...}, "limits"?: {...}, "tls"?: {...}|null, "federate_with"?: [string], "muc"?: {only the keys to change}, "room_policy"?: {"plugin": string, "fail_open"?: bool}|null, "components"?: [{"domains": [string], "name"?: string, "secret"?: string, "plugin"?: string, "on_conflict"?: "refuse"|"replace", "hidden"?: bool}], "jwt"?: {...}|null, "tokens"?: {...}|null, "external_services"?: {the whole section; "turn_secret_set": true without "turn_secret" keeps the secret}, "calls"?: {"require_relationship": bool}}"#,
        ),
        success: StatusCode::OK,
        handler: |c| Box::pin(tenants::patch(c)),
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/tenants/{tenant}",
        summary: "Remove a tenant; ?purge=true also deletes its accounts and data (operator)",
        body: Body::None,
        success: StatusCode::NO_CONTENT,
        handler: |c| Box::pin(tenants::remove(c)),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/tenants/{tenant}/enable",
        summary: "Enable a tenant (operator)",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(tenants::enable(c)),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/tenants/{tenant}/disable",
        summary: "Disable a tenant: its sessions end with host-gone (operator)",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(tenants::disable(c)),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/tenants/{tenant}/token",
        summary: "Issue (or replace) the tenant's admin token, shown once (operator)",
        body: Body::None,
        success: StatusCode::CREATED,
        handler: |c| Box::pin(tenants::token(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/tenants/{tenant}/rooms",
        summary: "List the tenant's MUC rooms (meetings); in a cluster every live node's, each with its node",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(rooms::list(c)),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/tenants/{tenant}/rooms",
        summary: "Create a configured, persistent MUC room",
        body: Body::Json(
            r#"{"jid": "room@conference.domain", "config"?: {"roomname"|"muc#roomconfig_roomname"|...: string|bool|number}, "owners"?: [bare JID]}"#,
        ),
        success: StatusCode::CREATED,
        handler: |c| Box::pin(rooms::create(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/tenants/{tenant}/rooms/{room}",
        summary: "Show a MUC room with its occupants (nick, jid, role, affiliation), asked of the node hosting it in a cluster",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(rooms::show(c)),
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/tenants/{tenant}/rooms/{room}",
        summary: "Destroy a MUC room; ?reason=…&alternate=room@service reach the occupants",
        body: Body::None,
        success: StatusCode::NO_CONTENT,
        handler: |c| Box::pin(rooms::destroy(c)),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/tenants/{tenant}/rooms/{room}/kick",
        summary: "Kick an occupant from a MUC room (status 307 to everyone)",
        body: Body::Json(r#"{"nick": string, "reason"?: string}"#),
        success: StatusCode::NO_CONTENT,
        handler: |c| Box::pin(rooms::kick(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/tenants/{tenant}/rooms/{room}/log",
        summary: "A logged room's public log, oldest first: ?after=NUMBER&limit=N (default 100, at most 1000)",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(rooms::log(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/plugins",
        summary: "Every installed plugin with its figures, and the compiled-code cache counters (operator)",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(plugins::list_all(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/tenants/{tenant}/plugins",
        summary: "A tenant's plugins: versions kept, the active one, and per-plugin figures",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(plugins::list(c)),
    },
    Route {
        method: Method::PUT,
        path: "/api/v1/tenants/{tenant}/plugins/{slot}",
        summary: "Install a plugin version and switch to it (config JSON in the Heliograph-Plugin-Config header; without it the active config is kept)",
        body: Body::Wasm("the component (.wasm), at most plugins.max_upload_mib"),
        success: StatusCode::OK,
        handler: |c| Box::pin(plugins::install(c)),
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/tenants/{tenant}/plugins/{slot}",
        summary: "Remove a plugin: every kept version and its key-value data",
        body: Body::None,
        success: StatusCode::NO_CONTENT,
        handler: |c| Box::pin(plugins::remove(c)),
    },
    Route {
        method: Method::PUT,
        path: "/api/v1/tenants/{tenant}/plugins/{slot}/config",
        summary: "Install the active component again with a new configuration (a new version)",
        body: Body::Json("the plugin's configuration: a JSON object"),
        success: StatusCode::OK,
        handler: |c| Box::pin(plugins::configure(c)),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/tenants/{tenant}/plugins/{slot}/rollback",
        summary: "Switch back to the last good version (served without failures), or to ?version=N",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(plugins::rollback(c)),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/reload",
        summary: "Re-read the config file and apply the differences (operator)",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(tenants::reload(c)),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/drain",
        summary: "Drain this node: not ready, refuse new sessions, send sessions elsewhere, then exit (operator)",
        body: Body::None,
        success: StatusCode::ACCEPTED,
        handler: |c| Box::pin(drain::start(c)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/cluster",
        summary: "The cluster's nodes as this node sees them: sessions, sync state, NATS connection (operator)",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(cluster::status(c)),
    },
    Route {
        method: Method::GET,
        path: openapi::PATH,
        summary: "This API's OpenAPI document (no token needed)",
        body: Body::None,
        success: StatusCode::OK,
        handler: |c| Box::pin(openapi::serve(c)),
    },
];

/// Answers one request; never fails (errors become JSON error responses).
pub async fn dispatch(api: Arc<AdminApi>, req: hyper::Request<Incoming>) -> ApiResponse {
    match dispatch_inner(api, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn dispatch_inner(api: Arc<AdminApi>, req: hyper::Request<Incoming>) -> ApiResult {
    let (parts, body) = req.into_parts();
    let (route, params) = find_route(&parts.method, parts.uri.path())?;
    let principal = if route.path == openapi::PATH {
        auth::Principal::Anonymous
    } else {
        auth::authenticate(&parts.headers, &api.server)?
    };
    let body = match route.body {
        Body::Json(_) => read_body(&parts.headers, body, "application/json", MAX_BODY).await?,
        Body::Wasm(_) => {
            let limit = (api.server.config().plugins.max_upload_mib as usize) << 20;
            read_body(&parts.headers, body, "application/wasm", limit).await?
        }
        Body::None => Bytes::new(),
    };
    tracing::debug!(method = %parts.method, route = route.path, "admin API request");
    (route.handler)(Ctx {
        api,
        principal,
        params,
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    })
    .await
}

/// The route for a method and path, with its parameters.
fn find_route(method: &Method, path: &str) -> Result<(&'static Route, Params), ApiError> {
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(params) = match_path(route.path, path)? {
            if route.method == *method {
                return Ok((route, params));
            }
            allowed.push(route.method.clone());
        }
    }
    if allowed.is_empty() {
        Err(ApiError::NoRoute(path.to_string()))
    } else {
        Err(ApiError::MethodNotAllowed(allowed))
    }
}

/// Matches a path against a pattern; parameters are percent-decoded. A single trailing
/// slash is ignored; empty parameters do not match.
fn match_path(pattern: &'static str, path: &str) -> Result<Option<Params>, ApiError> {
    let path = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    };
    let mut pat = pattern.split('/');
    let mut got = path.split('/');
    let mut params = Params::default();
    loop {
        match (pat.next(), got.next()) {
            (None, None) => return Ok(Some(params)),
            (Some(p), Some(g)) => {
                if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    if g.is_empty() {
                        return Ok(None);
                    }
                    params.push(name, percent_decode(g)?);
                } else if p != g {
                    return Ok(None);
                }
            }
            _ => return Ok(None),
        }
    }
}

/// Decodes `%XX` escapes of a path segment into UTF-8.
pub(super) fn percent_decode(segment: &str) -> Result<String, ApiError> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            match byte {
                Some(b) => out.push(b),
                None => return Err(ApiError::BadPath("malformed percent escape".into())),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::BadPath("path segment is not UTF-8".into()))
}

/// Reads a request body of type `media` and at most `limit` bytes.
async fn read_body(
    headers: &HeaderMap,
    body: Incoming,
    media: &'static str,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    if !has_media_type(headers, media) {
        return Err(ApiError::UnsupportedMediaType(media));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::PayloadTooLarge(limit))
        }
        Err(e) => Err(ApiError::BadJson(format!("cannot read body: {e}"))),
    }
}

/// Whether the content type is `media` (parameters such as charset allowed).
fn has_media_type(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(media)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_patterns_and_decodes_params() {
        let (route, params) =
            find_route(&Method::DELETE, "/api/v1/users/example.com/al%C3%AFce").unwrap();
        assert_eq!(route.path, "/api/v1/users/{domain}/{username}");
        assert_eq!(params.get("domain"), Some("example.com"));
        assert_eq!(params.get("username"), Some("alïce"));
        let (route, _) = find_route(&Method::GET, "/api/v1/sessions/").unwrap();
        assert_eq!(route.path, "/api/v1/sessions");
    }

    #[test]
    fn unknown_path_and_wrong_method() {
        assert!(matches!(
            find_route(&Method::GET, "/api/v1/nope"),
            Err(ApiError::NoRoute(_))
        ));
        assert!(matches!(
            find_route(&Method::GET, "/api/v1/users//x"),
            Err(ApiError::NoRoute(_))
        ));
        match find_route(&Method::PATCH, "/api/v1/users/example.com") {
            Err(ApiError::MethodNotAllowed(m)) => assert_eq!(m, vec![Method::GET, Method::POST]),
            _ => panic!("expected 405"),
        }
    }

    #[test]
    fn bad_escape_is_rejected() {
        assert!(matches!(
            find_route(&Method::GET, "/api/v1/users/%zz"),
            Err(ApiError::BadPath(_))
        ));
        assert!(matches!(
            find_route(&Method::GET, "/api/v1/users/%ff"),
            Err(ApiError::BadPath(_))
        ));
    }

    #[test]
    fn table_has_unique_method_path_pairs() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {}",
                    a.method,
                    a.path
                );
            }
        }
    }
}
