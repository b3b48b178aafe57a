//! The guide (README.md) cannot drift from the code: every Rust block is part of one of
//! `examples/guide_*.rs` (which `cargo test` compiles and whose tests it runs), every
//! Python block part of one of `python/examples/*/` and every JavaScript block part of one
//! of `js/examples/*/` (whose tests tests/run.sh runs), the
//! manifest block names this SDK's version, edition and minimum Rust, and the WIT version
//! it names is released in `wit/releases`.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fenced code blocks of a Markdown text: (info string, text).
fn blocks(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some((info.trim().to_string(), String::new())),
            (Some(_), Some("")) => out.push(current.take().unwrap()),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "an unclosed code block");
    out
}

/// The text of every file ending in `ext` under `dir`, recursively.
fn sources(dir: &Path, ext: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path, ext));
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
        }
    }
    out
}

fn guide() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

#[test]
fn every_code_block_is_compiled_and_tested_code() {
    let rust = sources(&root().join("examples"), "rs");
    let python = sources(&root().join("python/examples"), "py");
    let js = sources(&root().join("js/examples"), "js");
    assert!(!rust.is_empty() && !python.is_empty() && !js.is_empty());
    let mut checked = 0;
    for (info, text) in blocks(&guide()) {
        let candidates = match info.as_str() {
            "rust" => &rust,
            "python" => &python,
            "js" => &js,
            _ => continue,
        };
        assert!(
            candidates.iter().any(|(_, code)| code.contains(&text)),
            "this {info} block of sdk/README.md is in none of the tested examples \
             (sdk/examples/guide_*.rs, sdk/python/examples/, sdk/js/examples/): change both together\n{text}"
        );
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} blocks checked");
}

#[test]
fn the_manifest_block_names_this_sdk() {
    let manifest = blocks(&guide())
        .into_iter()
        .find(|(info, text)| info == "toml" && text.contains("heliograph-plugin-sdk"))
        .expect("the guide's Cargo.toml block")
        .1;
    let version = env!("CARGO_PKG_VERSION");
    let rust_version = format!("rust-version = \"{}\"", env!("CARGO_PKG_RUST_VERSION"));
    assert!(
        manifest.contains(&format!("heliograph-plugin-sdk = \"{version}\"")),
        "{manifest}"
    );
    assert!(manifest.contains(&rust_version), "{manifest}");
    let own = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let edition = own
        .lines()
        .find_map(|l| l.strip_prefix("edition = "))
        .expect("the workspace's edition");
    assert!(
        manifest.contains(&format!("edition = {edition}")),
        "{manifest}"
    );
    // The scaffold's Rust manifest says the same (host/src/cli/templates).
    let template =
        std::fs::read_to_string(root().join("../host/src/cli/templates/rust/Cargo.toml.tmpl"))
            .unwrap();
    assert!(template.contains(&format!("edition = {edition}")));
    assert!(template.contains(&rust_version));
}

#[test]
fn the_wit_version_is_released_and_named_by_the_guide() {
    let wit = heliograph_plugin_sdk::WIT_VERSION;
    assert!(guide().contains(&format!("heliograph:plugin@{wit}")));
    let releases = root().join("wit/releases");
    let current = std::fs::read_to_string(root().join("wit/heliograph-plugin.wit")).unwrap();
    let released = std::fs::read_to_string(releases.join(format!("heliograph-plugin@{wit}.wit")))
        .unwrap_or_else(|e| {
            panic!("wit/releases/heliograph-plugin@{wit}.wit: {e} (release the new version)")
        });
    assert_eq!(
        released, current,
        "wit/heliograph-plugin.wit changed without a new version: a released file never changes"
    );
    for (path, text) in sources(&releases, "wit") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let version = name
            .strip_prefix("heliograph-plugin@")
            .and_then(|n| n.strip_suffix(".wit"))
            .unwrap_or_else(|| panic!("{name}: expected heliograph-plugin@VERSION.wit"));
        assert!(
            text.contains(&format!("\npackage heliograph:plugin@{version};")),
            "{name} is not version {version}"
        );
    }
}
