//! The OpenAPI 3 document of the admin API, generated from the route table so that it can
//! never miss an endpoint. Served without authentication at [`PATH`]. The README's table
//! of endpoints is generated from the same table ([`markdown_table`]); a test fails when
//! the README's copy is stale, and `HELIOGRAPH_UPDATE_README=1 cargo test -p heliograph-control
//! --lib readme_admin_table` rewrites it.

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

/// The comment lines around the generated table in README.md.
pub const README_BEGIN: &str = "<!-- admin-api-table: generated from host/crates/control/src/admin/routes.rs; do not edit by hand -->";
pub const README_END: &str = "<!-- /admin-api-table -->";

/// The admin API as a Markdown table, one row per route of [`ROUTES`], in their order.
pub fn markdown_table() -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out =
        String::from("| method and path | body | success | does |\n| --- | --- | --- | --- |\n");
    for route in ROUTES {
        let body = match route.body.content_type() {
            None => "",
            Some("application/json") => "JSON",
            Some(other) => other,
        };
        out.push_str(&format!(
            "| `{} {}` | {} | {} | {} |\n",
            route.method,
            route.path,
            body,
            route.success.as_u16(),
            cell(route.summary),
        ));
    }
    out
}

/// `readme` with the text between [`README_BEGIN`] and [`README_END`] replaced by
/// `table`; `None` when the markers are missing.
pub fn with_table(readme: &str, table: &str) -> Option<String> {
    let start = readme.find(README_BEGIN)? + README_BEGIN.len();
    let end = start + readme[start..].find(README_END)?;
    Some(format!("{}\n{}{}", &readme[..start], table, &readme[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// README.md's admin API table is the one [`markdown_table`] renders from the route
    /// table. `HELIOGRAPH_UPDATE_README=1` rewrites it instead of failing.
    #[test]
    fn readme_admin_table_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let want = with_table(&readme, &markdown_table())
            .expect("README.md lacks the admin-api-table marker comments");
        if want == readme {
            return;
        }
        if std::env::var_os("HELIOGRAPH_UPDATE_README").is_some() {
            std::fs::write(path, want).unwrap();
            return;
        }
        panic!(
            "README.md's admin API table is not the one generated from the route table; \
             run `HELIOGRAPH_UPDATE_README=1 cargo test -p heliograph-control --lib readme_admin_table` \
             to rewrite it"
        );
    }

    #[test]
    fn markdown_table_has_every_route_and_stays_one_table() {
        let table = markdown_table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), ROUTES.len() + 2);
        // No blank line or unescaped cell separator breaks the table.
        for (line, route) in lines[2..].iter().zip(ROUTES) {
            assert!(line.starts_with(&format!("| `{} {}` |", route.method, route.path)));
            assert_eq!(line.replace("\\|", "").matches('|').count(), 5, "{line}");
        }
        assert!(table.contains("/api/v1/tenants/{tenant}/rooms/{room}/kick"));
        let readme = "a\n".to_string() + README_BEGIN + "\nold\n" + README_END + "\nb\n";
        assert_eq!(
            with_table(&readme, "T\n").unwrap(),
            format!("a\n{README_BEGIN}\nT\n{README_END}\nb\n")
        );
        assert_eq!(with_table("no markers", "T"), None);
    }

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
