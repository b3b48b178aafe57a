//! Reads the WIT package version from `wit/heliograph-plugin.wit` (the one place it is
//! written; `wit` is a link to the repository's `wit/`, and `cargo package` copies the
//! file into the crate) and hands it to the crate as `HELIOGRAPH_WIT_VERSION`.

use std::path::Path;

fn main() {
    // Read at run time (see host/crates/plugins/build.rs).
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let wit = Path::new(&dir).join("wit/heliograph-plugin.wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    let text = std::fs::read_to_string(&wit).expect("wit/heliograph-plugin.wit is readable");
    let version = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("package heliograph:plugin@"))
        .map(|v| v.trim_end_matches(';').trim().to_string())
        .next()
        .expect("the WIT file declares `package heliograph:plugin@X.Y.Z;`");
    println!("cargo:rustc-env=HELIOGRAPH_WIT_VERSION={version}");
}
