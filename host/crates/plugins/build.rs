//! Reads the WIT package version from `wit/heliograph-plugin.wit` (the one place it is
//! written) and hands it to the crate as `HELIOGRAPH_WIT_VERSION` and
//! `HELIOGRAPH_WIT_TRACK` (`0.minor` while the package is 0.x, `major` after).

use std::path::Path;

fn main() {
    // Read at run time, not compiled in: the same build script binary may serve a
    // checkout at another path (worktrees sharing a target directory).
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let wit = Path::new(&dir).join("../../../wit/heliograph-plugin.wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    let text = std::fs::read_to_string(&wit).expect("wit/heliograph-plugin.wit is readable");
    let version = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("package heliograph:plugin@"))
        .map(|v| v.trim_end_matches(';').trim().to_string())
        .next()
        .expect("the WIT file declares `package heliograph:plugin@X.Y.Z;`");
    let parts: Vec<&str> = version.split('.').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
        "the WIT package version {version:?} is not X.Y.Z"
    );
    let track = if parts[0] == "0" {
        format!("0.{}", parts[1])
    } else {
        parts[0].to_string()
    };
    println!("cargo:rustc-env=HELIOGRAPH_WIT_VERSION={version}");
    println!("cargo:rustc-env=HELIOGRAPH_WIT_TRACK={track}");
}
