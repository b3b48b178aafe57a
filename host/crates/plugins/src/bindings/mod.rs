//! The WIT bindings, one module per supported track of the `heliograph:plugin` package,
//! and the dispatcher that picks the track a component was built against (as Zed's
//! extension host keeps one binding module per extension API version).
//!
//! The package version is written once, in `wit/heliograph-plugin.wit`
//! ([`crate::WIT_VERSION`], [`crate::WIT_TRACK`] are read from it at build time). Within
//! a track versions only add (`0.1.0` and `0.1.1` components run on a `0.1.2` host; wasmtime resolves
//! their names by the same semver rule). A new, incompatible track gets its own module
//! (`v0_2`, generated from a frozen copy of its WIT), a [`Track`] variant, and the arms
//! the compiler then asks for where [`Track`] is matched; the old module stays, so
//! plugins built against it keep loading.
//!
//! Supported tracks: [`v0_1`].

pub(crate) mod v0_1;

pub(crate) use v0_1::{authenticator, component, room_policy};

/// A supported track of the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Track {
    /// `heliograph:plugin@0.1.x`
    V0_1,
}

impl Track {
    /// The track this host serves as its current one.
    pub(crate) const CURRENT: Track = Track::V0_1;

    /// The track's name (`0.1`), for logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Track::V0_1 => "0.1",
        }
    }

    /// The track serving a component built against `version` of the package: the same
    /// semver track and not newer than [`crate::WIT_VERSION`].
    pub(crate) fn of(version: &str) -> Option<Track> {
        served_version(version).then_some(Track::V0_1)
    }
}

/// Whether a component built against `version` of the package runs on this host: the same
/// semver track ([`crate::WIT_TRACK`], i.e. `0.1.x` while the package is 0.x) and not newer
/// than [`crate::WIT_VERSION`].
pub(crate) fn served_version(version: &str) -> bool {
    let Some(rest) = version.strip_prefix(crate::WIT_TRACK) else {
        return false;
    };
    let Some(patch) = rest.strip_prefix('.') else {
        return false;
    };
    let served = crate::WIT_VERSION
        .rsplit('.')
        .next()
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(0);
    patch.parse::<u32>().is_ok_and(|p| p <= served)
}

/// The fully qualified name of an interface of this package, e.g.
/// `heliograph:plugin/authentication@X.Y.Z` (the served version).
pub(crate) fn interface_name(interface: &str) -> String {
    format!("heliograph:plugin/{interface}@{}", crate::WIT_VERSION)
}

/// Interfaces of this package the host provides as imports.
pub(crate) const HOST_INTERFACES: [&str; 7] = [
    "types",
    "host-log",
    "host-kv",
    "host-config",
    "auth-types",
    "room-types",
    "component-types",
];
