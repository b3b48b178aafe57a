//! The crate graph is the architecture: `docs/ARCHITECTURE.md`'s layer table must be
//! exactly what `cargo metadata` says each crate depends on, every dependency must come
//! from a lower layer, and no feature may import a transport.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// One row of the documented table: layer number and what the crate builds on.
struct Layer {
    number: u32,
    builds_on: BTreeSet<String>,
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The table between the `layers:begin` and `layers:end` markers.
fn documented() -> BTreeMap<String, Layer> {
    let doc = std::fs::read_to_string(repo_root().join("docs/ARCHITECTURE.md")).unwrap();
    let start = doc.find("<!-- layers:begin -->").expect("begin marker");
    let end = doc.find("<!-- layers:end -->").expect("end marker");
    let mut out = BTreeMap::new();
    for row in doc[start..end].lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(number) = cells[0].parse::<u32>() else {
            continue; // the header and the rule
        };
        let name = cells[1].trim_matches('`').to_string();
        let builds_on = cells[3]
            .split(',')
            .map(|c| c.trim().trim_matches('`').to_string())
            .filter(|c| c.starts_with("heliograph"))
            .collect();
        out.insert(name, Layer { number, builds_on });
    }
    out
}

/// Each heliograph crate of the workspace (the load generator aside) with the
/// heliograph crates it depends on (normal dependencies).
fn actual() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut graph = BTreeMap::new();
    for pkg in meta["packages"].as_array().unwrap() {
        let name = pkg["name"].as_str().unwrap();
        if !name.starts_with("heliograph") || name == "heliograph-load" {
            continue;
        }
        let deps = pkg["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .filter(|d| d.starts_with("heliograph"))
            .map(str::to_string)
            .collect();
        graph.insert(name.to_string(), deps);
    }
    graph
}

#[test]
fn the_crate_graph_is_the_documented_layering() {
    let doc = documented();
    let graph = actual();
    let crates: BTreeSet<&String> = graph.keys().collect();
    let listed: BTreeSet<&String> = doc.keys().collect();
    assert_eq!(
        crates, listed,
        "every crate is in the table, and only those"
    );
    for (name, deps) in &graph {
        let layer = &doc[name];
        if name == "heliograph" {
            // The binary builds on everything; "every crate above" in the table.
            assert!(
                deps.iter().all(|d| doc[d].number < layer.number),
                "{deps:?}"
            );
            continue;
        }
        assert_eq!(
            deps, &layer.builds_on,
            "{name}: docs/ARCHITECTURE.md says it builds on {:?}, Cargo.toml on {deps:?}",
            layer.builds_on
        );
        for d in deps {
            assert!(
                doc[d].number < layer.number,
                "{name} (layer {}) imports {d} (layer {}): imports go down only",
                layer.number,
                doc[d].number
            );
        }
    }
    assert!(
        !graph["heliograph-services"].contains("heliograph-transports"),
        "no feature imports a transport"
    );
}
