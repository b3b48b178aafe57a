//! From Wasm bytes to a ready-to-instantiate plugin: screening (size, header, precompiled
//! artifacts, core modules), compiling (or loading from the compiled cache), checking
//! the component against its world with precise messages, and pre-instantiation.
//!
//! All of it is blocking CPU work; [`super::PluginHost`] runs it with `spawn_blocking`.

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, Linker};

use super::bindings::{
    self, Track, authenticator::AuthenticatorPre, component::ComponentPre,
    room_policy::RoomPolicyPre, served_version,
};
use super::cache::CompiledCache;
use super::error::InstallError;
use super::reuse::WorldInstance;
use super::state::CallState;
use super::types::World;

/// A compiled, checked component, pre-instantiated for its world.
pub(crate) struct Prepared {
    /// The track of the package the component was built against.
    pub track: Track,
    pub pre: WorldPre,
    /// `lifecycle.init`, if the component exports it.
    pub init: Option<ComponentExportIndex>,
    /// `registration.approve`, if the component exports it (authenticators since 0.1.2).
    pub registration: Option<ComponentExportIndex>,
}

/// The pre-instantiated component of each world.
pub(crate) enum WorldPre {
    Authenticator(AuthenticatorPre<CallState>),
    RoomPolicy(RoomPolicyPre<CallState>),
    Component(ComponentPre<CallState>),
}

impl WorldPre {
    /// A new instance of the world in `store`.
    pub(crate) fn instantiate(
        &self,
        store: &mut wasmtime::Store<CallState>,
    ) -> wasmtime::Result<WorldInstance> {
        Ok(match self {
            WorldPre::Authenticator(pre) => WorldInstance::Authenticator(pre.instantiate(store)?),
            WorldPre::RoomPolicy(pre) => WorldInstance::RoomPolicy(pre.instantiate(store)?),
            WorldPre::Component(pre) => WorldInstance::Component(pre.instantiate(store)?),
        })
    }

    /// The world-independent pre-instantiated component.
    pub(crate) fn instance_pre(&self) -> &wasmtime::component::InstancePre<CallState> {
        match self {
            WorldPre::Authenticator(pre) => pre.instance_pre(),
            WorldPre::RoomPolicy(pre) => pre.instance_pre(),
            WorldPre::Component(pre) => pre.instance_pre(),
        }
    }
}

/// Checks what can be checked without compiling.
pub(crate) fn screen(wasm: &[u8], limit: usize) -> Result<(), InstallError> {
    if wasm.len() > limit {
        return Err(InstallError::TooLarge {
            size: wasm.len(),
            limit,
        });
    }
    if Engine::detect_precompiled(wasm).is_some() {
        return Err(InstallError::Precompiled);
    }
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(InstallError::NotWasm);
    }
    // Core modules are version 1 (layer 0); components carry layer 1 in bytes 6..8.
    if wasm[4..8] == [1, 0, 0, 0] {
        return Err(InstallError::CoreModule);
    }
    Ok(())
}

/// Compiles (or loads from the cache), checks and pre-instantiates. Blocking. Without a
/// `world`, the world is the one whose interface the component exports (in any version,
/// so a wrong version is reported precisely by the check that follows).
pub(crate) fn prepare(
    engine: &Engine,
    cache: &CompiledCache,
    linker: &Linker<CallState>,
    world: Option<World>,
    sha256: &str,
    wasm: &[u8],
) -> Result<(World, Prepared), InstallError> {
    let component = cache
        .load_or_compile(engine, sha256, wasm)
        .map_err(|e| InstallError::Compile(format!("{e:#}")))?;
    let track = check_imports(engine, &component)?;
    let world = match world {
        Some(w) => w,
        None => detect_world(engine, &component)?,
    };
    let expected = bindings::interface_name(world.export_interface());
    check_export(engine, &component, world, &expected)?;
    let instance_pre =
        linker
            .instantiate_pre(&component)
            .map_err(|e| InstallError::TypeMismatch {
                world: world.name(),
                detail: format!("{e:#}"),
            })?;
    let mismatch = |e: wasmtime::Error| InstallError::TypeMismatch {
        world: world.name(),
        detail: format!("{e:#}"),
    };
    let pre = match (track, world) {
        (Track::V0_1, World::Authenticator) => {
            WorldPre::Authenticator(AuthenticatorPre::new(instance_pre).map_err(mismatch)?)
        }
        (Track::V0_1, World::RoomPolicy) => {
            WorldPre::RoomPolicy(RoomPolicyPre::new(instance_pre).map_err(mismatch)?)
        }
        (Track::V0_1, World::Component) => {
            WorldPre::Component(ComponentPre::new(instance_pre).map_err(mismatch)?)
        }
    };
    let init = component
        .get_export_index(None, bindings::interface_name("lifecycle").as_str())
        .and_then(|iface| component.get_export_index(Some(&iface), "init"));
    let registration = (world == World::Authenticator)
        .then(|| {
            component
                .get_export_index(None, bindings::interface_name("registration").as_str())
                .and_then(|iface| component.get_export_index(Some(&iface), "approve"))
        })
        .flatten();
    Ok((
        world,
        Prepared {
            track,
            pre,
            init,
            registration,
        },
    ))
}

/// The world whose export interface (in any version) the component exports.
fn detect_world(engine: &Engine, component: &Component) -> Result<World, InstallError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let unversioned = |name: &str| name.split('@').next().unwrap_or(name).to_string();
    World::ALL
        .into_iter()
        .find(|w| {
            let wanted = unversioned(&bindings::interface_name(w.export_interface()));
            exports.iter().any(|e| unversioned(e) == wanted)
        })
        .ok_or_else(|| InstallError::MissingExport {
            world: "authenticator, room-policy or component",
            expected: World::ALL
                .iter()
                .map(|w| bindings::interface_name(w.export_interface()))
                .collect::<Vec<_>>()
                .join("` or `"),
            found: exports,
        })
}

/// Every import must be one of this package's host interfaces in a served version, or
/// WASI (linked without capabilities; the linker checks its versions and types). Returns
/// the track the component's imports belong to (the current one if it imports none).
fn check_imports(engine: &Engine, component: &Component) -> Result<Track, InstallError> {
    let mut track = None;
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        let (path, version) = name.split_once('@').unwrap_or((name, ""));
        if let Some(iface) = path.strip_prefix("heliograph:plugin/") {
            if !bindings::HOST_INTERFACES.contains(&iface) {
                return Err(InstallError::UnsupportedImport {
                    import: name.to_string(),
                    reason: format!(
                        "heliograph:plugin has no host interface `{iface}` (there are: {})",
                        bindings::HOST_INTERFACES.join(", ")
                    ),
                });
            }
            track = Track::of(version);
            if track.is_none() {
                return Err(InstallError::UnsupportedImport {
                    import: name.to_string(),
                    reason: format!(
                        "this server provides heliograph:plugin@{} (and older {} versions); rebuild the plugin against it",
                        super::WIT_VERSION,
                        super::WIT_TRACK
                    ),
                });
            }
        } else if !path.starts_with("wasi:") {
            return Err(InstallError::UnsupportedImport {
                import: name.to_string(),
                reason: "plugins may import heliograph:plugin interfaces and WASI 0.2 only".into(),
            });
        }
    }
    Ok(track.unwrap_or(Track::CURRENT))
}

fn check_export(
    engine: &Engine,
    component: &Component,
    world: World,
    expected: &str,
) -> Result<(), InstallError> {
    let ty = component.component_type();
    let mut found = Vec::new();
    let unversioned = expected.split('@').next().unwrap_or(expected);
    for (name, item) in ty.exports(engine) {
        let (path, version) = name.split_once('@').unwrap_or((name, ""));
        if path == unversioned && served_version(version) {
            if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
                return Err(InstallError::TypeMismatch {
                    world: world.name(),
                    detail: format!("`{expected}` is exported, but not as an interface instance"),
                });
            }
            return Ok(());
        }
        found.push(name.to_string());
    }
    if let Some(other) = found
        .iter()
        .find(|name| name.split('@').next() == Some(unversioned))
    {
        return Err(InstallError::ExportVersion {
            expected: expected.to_string(),
            found: other.clone(),
        });
    }
    Err(InstallError::MissingExport {
        world: world.name(),
        expected: expected.to_string(),
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screening_names_the_problem() {
        let limit = 1 << 20;
        assert!(matches!(
            screen(&vec![0; limit + 1], limit),
            Err(InstallError::TooLarge { .. })
        ));
        assert!(matches!(
            screen(b"hello world", limit),
            Err(InstallError::NotWasm)
        ));
        assert!(matches!(
            screen(b"\0asm\x01\0\0\0", limit),
            Err(InstallError::CoreModule)
        ));
        assert!(screen(b"\0asm\x0d\0\x01\0", limit).is_ok());
    }

    #[test]
    fn served_versions_are_the_track_up_to_the_host_version() {
        assert!(served_version("0.1.0"));
        assert!(served_version("0.1.1"));
        assert!(served_version(crate::WIT_VERSION));
        assert!(!served_version("0.1.3"), "newer than the host");
        assert!(!served_version("0.2.0"));
        assert!(!served_version("1.1.0"));
        assert!(!served_version("0.10.0"));
        assert!(!served_version("0.1.0-rc1"));
        assert!(!served_version(""));
    }

    #[test]
    fn precompiled_artifacts_are_refused() {
        let engine = Engine::default();
        let elf = engine.precompile_component(b"\0asm\x0d\0\x01\0").unwrap();
        let err = screen(&elf, 1 << 30).unwrap_err();
        assert!(matches!(err, InstallError::Precompiled), "{err}");
    }
}
