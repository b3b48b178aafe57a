//! `heliograph plugin new NAME --world W [--lang rust|python|js]`: writes a plugin project
//! that builds and passes its unit test as it is: a manifest, the source implementing
//! the world's functions, a unit test on the SDK's fake host, a call script for
//! `heliograph plugin test`, a README.
//!
//! The templates are in `templates/` next to this file and compiled into the binary;
//! a Python project also gets the SDK's Python package (`sdk/python/heliograph_plugin`)
//! and the WIT file (`wit/heliograph-plugin.wit`) copied in, so it builds offline with
//! nothing but componentize-py; a JavaScript project gets the SDK's modules (`sdk/js`) and
//! the WIT file, and a package.json pinning componentize-js. A Rust project depends on the published
//! `heliograph-plugin-sdk` (or, with `--sdk-path`, on a checkout of `sdk/`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::plugins::WIT_VERSION;

/// The SDK crate's version, from `sdk/Cargo.toml` (the `[workspace.package]` version its
/// crates share).
pub const SDK_VERSION: &str = sdk_version();

const fn sdk_version() -> &'static str {
    // The first line `version = "X.Y.Z"` of sdk/Cargo.toml (`[workspace.package]`).
    const TOML: &str = include_str!("../../../sdk/Cargo.toml");
    const NEEDLE: &[u8] = b"\nversion = \"";
    let bytes = TOML.as_bytes();
    let mut i = 0;
    while i + NEEDLE.len() < bytes.len() {
        let mut j = 0;
        while j < NEEDLE.len() && bytes[i + j] == NEEDLE[j] {
            j += 1;
        }
        if j == NEEDLE.len() {
            let start = i + j;
            let mut end = start;
            while bytes[end] != b'"' {
                end += 1;
            }
            let (_, rest) = TOML.split_at(start);
            let (version, _) = rest.split_at(end - start);
            return version;
        }
        i += 1;
    }
    panic!("sdk/Cargo.toml has no version line")
}

/// What `plugin new` was asked for.
pub struct NewProject {
    pub name: String,
    /// `authenticator`, `room-policy` or `component`.
    pub world: String,
    /// `rust`, `python` or `js`.
    pub lang: String,
    /// The directory the project directory is created in.
    pub dir: PathBuf,
    /// Rust: a path dependency on this SDK checkout instead of the published crate.
    pub sdk_path: Option<PathBuf>,
}

/// One file of a project: its path in the project and its text.
pub struct File {
    pub path: String,
    pub text: String,
}

const RUST_MANIFEST: &str = include_str!("templates/rust/Cargo.toml.tmpl");
const RUST_README: &str = include_str!("templates/rust/README.md");
const RUST_AUTHENTICATOR: &str = include_str!("templates/rust/authenticator.rs");
const RUST_ROOM_POLICY: &str = include_str!("templates/rust/room-policy.rs");
const RUST_COMPONENT: &str = include_str!("templates/rust/component.rs");
const PY_README: &str = include_str!("templates/python/README.md");
const PY_AUTHENTICATOR: &str = include_str!("templates/python/authenticator.py");
const PY_ROOM_POLICY: &str = include_str!("templates/python/room-policy.py");
const PY_COMPONENT: &str = include_str!("templates/python/component.py");
const PY_TEST_AUTHENTICATOR: &str = include_str!("templates/python/test-authenticator.py");
const PY_TEST_ROOM_POLICY: &str = include_str!("templates/python/test-room-policy.py");
const PY_TEST_COMPONENT: &str = include_str!("templates/python/test-component.py");
const PY_BUILD: &str = include_str!("templates/python/build.sh");
const PY_REQUIREMENTS: &str = include_str!("templates/python/requirements.txt");
const JS_README: &str = include_str!("templates/js/README.md");
const JS_AUTHENTICATOR: &str = include_str!("templates/js/authenticator.js");
const JS_ROOM_POLICY: &str = include_str!("templates/js/room-policy.js");
const JS_COMPONENT: &str = include_str!("templates/js/component.js");
const JS_TEST_AUTHENTICATOR: &str = include_str!("templates/js/test-authenticator.js");
const JS_TEST_ROOM_POLICY: &str = include_str!("templates/js/test-room-policy.js");
const JS_TEST_COMPONENT: &str = include_str!("templates/js/test-component.js");
const JS_BUILD: &str = include_str!("templates/js/build.sh");
const JS_PACKAGE: &str = include_str!("templates/js/package.json");
/// The SDK's JavaScript modules, as a JavaScript project gets them.
const JS_SDK: [(&str, &str); 3] = [
    (
        "heliograph_plugin.js",
        include_str!("../../../sdk/js/heliograph_plugin.js"),
    ),
    ("testing.js", include_str!("../../../sdk/js/testing.js")),
    (
        "wasm_backend.js",
        include_str!("../../../sdk/js/wasm_backend.js"),
    ),
];
const CALLS_AUTHENTICATOR: &str = include_str!("templates/calls-authenticator.toml");
const CALLS_ROOM_POLICY: &str = include_str!("templates/calls-room-policy.toml");
const CALLS_COMPONENT: &str = include_str!("templates/calls-component.toml");

/// The WIT package and the SDK's Python package, as a Python project gets them.
const WIT: &str = include_str!("../../../wit/heliograph-plugin.wit");
const PY_SDK: [(&str, &str); 10] = [
    (
        "__init__.py",
        include_str!("../../../sdk/python/heliograph_plugin/__init__.py"),
    ),
    (
        "_backend.py",
        include_str!("../../../sdk/python/heliograph_plugin/_backend.py"),
    ),
    (
        "_exports.py",
        include_str!("../../../sdk/python/heliograph_plugin/_exports.py"),
    ),
    (
        "component.py",
        include_str!("../../../sdk/python/heliograph_plugin/component.py"),
    ),
    (
        "config.py",
        include_str!("../../../sdk/python/heliograph_plugin/config.py"),
    ),
    (
        "kv.py",
        include_str!("../../../sdk/python/heliograph_plugin/kv.py"),
    ),
    (
        "log.py",
        include_str!("../../../sdk/python/heliograph_plugin/log.py"),
    ),
    (
        "room.py",
        include_str!("../../../sdk/python/heliograph_plugin/room.py"),
    ),
    (
        "testing.py",
        include_str!("../../../sdk/python/heliograph_plugin/testing.py"),
    ),
    (
        "types.py",
        include_str!("../../../sdk/python/heliograph_plugin/types.py"),
    ),
];

/// `my-auth` -> `MyAuth`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A project name: a cargo package name that is also a Python identifier once `-` is
/// `_`, starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "invalid plugin name {name:?}: start with a letter; use a-z, 0-9, '-' and '_' (at most 64)"
        );
    }
    Ok(())
}

/// Replaces `{{key}}` placeholders.
fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

/// The files of a project, without writing them.
pub fn project_files(p: &NewProject) -> anyhow::Result<Vec<File>> {
    check_name(&p.name)?;
    let ty = type_name(&p.name);
    let crate_name = p.name.replace('-', "_");
    let wasm = format!("{crate_name}.wasm");
    let wasm_path = format!("target/wasm32-wasip2/release/{crate_name}.wasm");
    let sdk_dep = match &p.sdk_path {
        Some(path) => {
            let path = path.to_string_lossy().replace('\\', "/");
            format!("{{ path = \"{path}\" }}")
        }
        None => format!("\"{SDK_VERSION}\""),
    };
    let calls = match p.world.as_str() {
        "authenticator" => CALLS_AUTHENTICATOR,
        "room-policy" => CALLS_ROOM_POLICY,
        "component" => CALLS_COMPONENT,
        other => bail!("unknown world {other:?}: authenticator, room-policy or component"),
    };
    let vars: Vec<(&str, &str)> = vec![
        ("name", &p.name),
        ("Type", &ty),
        ("world", &p.world),
        ("sdk_dep", &sdk_dep),
        ("version", env!("CARGO_PKG_VERSION")),
        ("wit_version", WIT_VERSION),
    ];
    let file = |path: &str, template: &str, extra: &[(&str, &str)]| {
        let mut all = vars.clone();
        all.extend_from_slice(extra);
        File {
            path: path.to_string(),
            text: render(template, &all),
        }
    };
    let mut files = Vec::new();
    match p.lang.as_str() {
        "rust" => {
            let source = match p.world.as_str() {
                "authenticator" => RUST_AUTHENTICATOR,
                "room-policy" => RUST_ROOM_POLICY,
                _ => RUST_COMPONENT,
            };
            let w = [
                ("wasm", wasm_path.as_str()),
                ("wasm_path", wasm_path.as_str()),
            ];
            files.push(file("Cargo.toml", RUST_MANIFEST, &w));
            files.push(file("src/lib.rs", source, &w));
            files.push(file("README.md", RUST_README, &w));
            files.push(file("calls.toml", calls, &w));
            files.push(file(".gitignore", "/target\n", &w));
        }
        "python" => {
            let (source, test) = match p.world.as_str() {
                "authenticator" => (PY_AUTHENTICATOR, PY_TEST_AUTHENTICATOR),
                "room-policy" => (PY_ROOM_POLICY, PY_TEST_ROOM_POLICY),
                _ => (PY_COMPONENT, PY_TEST_COMPONENT),
            };
            let w = [("wasm", wasm.as_str()), ("wasm_path", wasm.as_str())];
            files.push(file("app.py", source, &w));
            files.push(file("test_app.py", test, &w));
            files.push(file("build.sh", PY_BUILD, &w));
            files.push(file("requirements.txt", PY_REQUIREMENTS, &w));
            files.push(file("README.md", PY_README, &w));
            files.push(file("calls.toml", calls, &w));
            files.push(file(".gitignore", "/.venv\n__pycache__/\n*.wasm\n", &w));
            files.push(File {
                path: "wit/heliograph-plugin.wit".into(),
                text: WIT.into(),
            });
            for (name, text) in PY_SDK {
                files.push(File {
                    path: format!("heliograph_plugin/{name}"),
                    text: text.into(),
                });
            }
        }
        "js" => {
            let (source, test, exports) = match p.world.as_str() {
                "authenticator" => (
                    JS_AUTHENTICATOR,
                    JS_TEST_AUTHENTICATOR,
                    "authentication, lifecycle",
                ),
                "room-policy" => (
                    JS_ROOM_POLICY,
                    JS_TEST_ROOM_POLICY,
                    "roomDecisions, lifecycle",
                ),
                _ => (JS_COMPONENT, JS_TEST_COMPONENT, "stanzaHandler, lifecycle"),
            };
            let w = [
                ("wasm", wasm.as_str()),
                ("wasm_path", wasm.as_str()),
                ("exports", exports),
            ];
            files.push(file("app.js", source, &w));
            files.push(file("app.test.js", test, &w));
            files.push(file("build.sh", JS_BUILD, &w));
            files.push(file("package.json", JS_PACKAGE, &w));
            files.push(file("README.md", JS_README, &w));
            files.push(file("calls.toml", calls, &w));
            files.push(file(
                ".gitignore",
                "/node_modules\n*.wasm\n/component.js\n",
                &w,
            ));
            files.push(File {
                path: "wit/heliograph-plugin.wit".into(),
                text: WIT.into(),
            });
            for (name, text) in JS_SDK {
                files.push(File {
                    path: name.into(),
                    text: text.into(),
                });
            }
        }
        other => bail!("unknown language {other:?}: rust, python or js"),
    }
    Ok(files)
}

/// Writes the project into `dir/NAME` (which must not exist) and says what to do next.
pub fn new_project(p: &NewProject, out: &mut dyn Write) -> anyhow::Result<()> {
    let files = project_files(p)?;
    let root = p.dir.join(&p.name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    for f in &files {
        let path = root.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, &f.text).with_context(|| format!("writing {}", path.display()))?;
        #[cfg(unix)]
        if f.path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    writeln!(
        out,
        "created {} ({} plugin in {}, heliograph:plugin@{WIT_VERSION})",
        root.display(),
        p.world,
        p.lang
    )?;
    let next = next_steps(&root, p);
    for line in next {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

fn next_steps(root: &Path, p: &NewProject) -> Vec<String> {
    let cd = format!("cd {}", root.display());
    let crate_name = p.name.replace('-', "_");
    if p.lang == "rust" {
        let wasm = format!("target/wasm32-wasip2/release/{crate_name}.wasm");
        vec![
            cd,
            "cargo test".into(),
            "cargo build --release --target wasm32-wasip2".into(),
            format!("heliograph plugin test {wasm} --script calls.toml"),
        ]
    } else if p.lang == "js" {
        let wasm = format!("{crate_name}.wasm");
        vec![
            cd,
            "npm install".into(),
            "node --test".into(),
            "./build.sh".into(),
            format!("heliograph plugin test {wasm} --script calls.toml"),
        ]
    } else {
        let wasm = format!("{crate_name}.wasm");
        vec![
            cd,
            "python3 -m unittest".into(),
            "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt".into(),
            "PATH=.venv/bin:$PATH ./build.sh".into(),
            format!("heliograph plugin test {wasm} --script calls.toml"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(world: &str, lang: &str) -> Vec<File> {
        project_files(&NewProject {
            name: "my-auth".into(),
            world: world.into(),
            lang: lang.into(),
            dir: ".".into(),
            sdk_path: None,
        })
        .unwrap()
    }

    #[test]
    fn every_world_and_language_renders_without_placeholders() {
        for world in ["authenticator", "room-policy", "component"] {
            for lang in ["rust", "python", "js"] {
                let files = project(world, lang);
                for f in &files {
                    assert!(
                        !f.text.contains("{{"),
                        "{world}/{lang}: {} keeps a placeholder",
                        f.path
                    );
                }
                let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
                assert!(
                    paths.contains(&"README.md") && paths.contains(&"calls.toml"),
                    "{paths:?}"
                );
                let calls: crate::cli::plugin_test::Script =
                    toml::from_str(&files.iter().find(|f| f.path == "calls.toml").unwrap().text)
                        .unwrap();
                assert!(calls.call.iter().all(|c| c.expect.is_some()), "{world}");
            }
        }
        let rust = project("authenticator", "rust");
        let lib = &rust.iter().find(|f| f.path == "src/lib.rs").unwrap().text;
        assert!(lib.contains("impl Authenticator for MyAuth"));
        let manifest = &rust.iter().find(|f| f.path == "Cargo.toml").unwrap().text;
        assert!(manifest.contains(&format!("heliograph-plugin-sdk = \"{SDK_VERSION}\"")));
        let py = project("room-policy", "python");
        let build = &py.iter().find(|f| f.path == "build.sh").unwrap().text;
        assert!(build.contains("-w room-policy-with-init"), "{build}");
    }

    #[test]
    fn names_and_versions() {
        assert_eq!(type_name("my-auth"), "MyAuth");
        assert_eq!(type_name("rooms_2"), "Rooms2");
        assert!(check_name("My-Auth").is_err());
        assert!(check_name("1auth").is_err());
        assert!(check_name("a b").is_err());
        assert!(SDK_VERSION.split('.').count() == 3, "{SDK_VERSION}");
    }

    /// The guide's Python example (sdk/README.md, "Python") is this scaffold's
    /// authenticator, and the scaffold pins the componentize-py the tests build with.
    #[test]
    fn the_guide_shows_the_python_scaffold_and_the_pins_agree() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let files = project("authenticator", "python");
        for (generated, example) in [("app.py", "app.py"), ("test_app.py", "test_app.py")] {
            let text = &files.iter().find(|f| f.path == generated).unwrap().text;
            let example =
                std::fs::read_to_string(repo.join("sdk/python/examples/my_auth").join(example))
                    .unwrap();
            assert_eq!(
                text, &example,
                "sdk/python/examples/my_auth/{generated} is `plugin new my-auth` rendered"
            );
        }
        let pin = |text: &str| {
            text.lines()
                .find(|l| l.starts_with("componentize-py=="))
                .map(str::to_string)
        };
        let tested = std::fs::read_to_string(repo.join("plugins/python/requirements.txt")).unwrap();
        assert_eq!(pin(PY_REQUIREMENTS), pin(&tested));
        assert!(pin(&tested).is_some());
    }

    /// The JavaScript project pins the componentize-js (and preview2-shim) the
    /// first-party JavaScript plugins are built and tested with, and carries every module
    /// of sdk/js.
    #[test]
    fn the_js_project_pins_the_tested_tools_and_carries_the_sdk() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let deps = |text: &str| {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            v["devDependencies"].clone()
        };
        let tested = std::fs::read_to_string(repo.join("plugins/js/package.json")).unwrap();
        let files = project("authenticator", "js");
        // The guide's JavaScript example (sdk/README.md, "JavaScript") is this scaffold.
        for (generated, example) in [("app.js", "app.js"), ("app.test.js", "app.test.js")] {
            let text = &files.iter().find(|f| f.path == generated).unwrap().text;
            let example =
                std::fs::read_to_string(repo.join("sdk/js/examples/my_auth").join(example))
                    .unwrap();
            assert_eq!(
                text, &example,
                "sdk/js/examples/my_auth/{generated} is `plugin new my-auth --lang js` rendered"
            );
        }
        let package = &files
            .iter()
            .find(|f| f.path == "package.json")
            .unwrap()
            .text;
        assert_eq!(deps(package), deps(&tested));
        let build = &files.iter().find(|f| f.path == "build.sh").unwrap().text;
        assert!(build.contains(r#""authentication, lifecycle""#), "{build}");
        let mut on_disk: Vec<String> = std::fs::read_dir(repo.join("sdk/js"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".js"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = JS_SDK.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            on_disk, embedded,
            "a new module of sdk/js must be added to JS_SDK"
        );
    }

    #[test]
    fn the_python_project_carries_the_whole_sdk_package() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/python/heliograph_plugin");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".py"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = PY_SDK.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(
            on_disk, embedded,
            "a new module of sdk/python must be added to PY_SDK"
        );
    }
}
