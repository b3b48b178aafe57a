//! The OpenAPI 3 document of the admin API, generated from the route table so that it can
//! never miss an endpoint. Served without authentication at [`PATH`].

use hyper::StatusCode;
use serde_json::{Map, Value, json};

use super::context::Ctx;
use super::response::{ApiResult, json};
use super::routes::{ROUTES, Route};

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";

/// `GET /api/v1/openapi.json`
pub async fn serve(_ctx: Ctx) -> ApiResult {
    Ok(json(StatusCode::OK, &document()))
}

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(ops) = entry {
            ops.insert(route.method.as_str().to_ascii_lowercase(), operation(route));
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Heliograph admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Operator token: everything. Tenant token: its own tenant, domains and users."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": { "error": { "type": "string" }, "message": { "type": "string" } }
                }
            }
        },
        "security": [ { "bearer": [] } ],
        "paths": Value::Object(paths),
    })
}

fn operation(route: &Route) -> Value {
    let params: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    let mut op = json!({
        "summary": route.summary,
        "operationId": operation_id(route),
        "parameters": params,
        "responses": {
            route.success.as_u16().to_string(): { "description": route.success.canonical_reason().unwrap_or("success") },
            "default": {
                "description": "error",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
            }
        }
    });
    if let (Some(body), Some(media)) = (route.body.description(), route.body.content_type()) {
        let schema = if media == "application/json" {
            json!({ "type": "object" })
        } else {
            json!({ "type": "string", "format": "binary" })
        };
        op["requestBody"] = json!({
            "required": true,
            "description": body,
            "content": { media: { "schema": schema } }
        });
    }
    if route.path == PATH {
        op["security"] = json!([]);
    }
    op
}

fn operation_id(route: &Route) -> String {
    let mut id = route.method.as_str().to_ascii_lowercase();
    for seg in route.path.split('/').skip(3) {
        id.push('_');
        id.push_str(seg.trim_start_matches('{').trim_end_matches('}'));
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of the table is in the document, with its method and path parameters.
    #[test]
    fn every_route_is_documented() {
        let doc = document();
        for route in ROUTES {
            let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{} {} missing", route.method, route.path);
            assert_eq!(op["summary"], route.summary);
            let n_params = route.path.matches('{').count();
            assert_eq!(
                op["parameters"].as_array().unwrap().len(),
                n_params,
                "{}",
                route.path
            );
            assert_eq!(
                op["requestBody"].is_object(),
                route.body.description().is_some(),
                "{}",
                route.path
            );
        }
        let ids: std::collections::HashSet<String> = ROUTES.iter().map(operation_id).collect();
        assert_eq!(ids.len(), ROUTES.len(), "operation ids must be unique");
    }
}
