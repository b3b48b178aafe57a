//! Errors of the plugin host: [`PluginError`] for a call, [`InstallError`] for
//! install/rollback/remove, and [`FailureCause`], the one-word cause counted in the stats.
//!
//! A call that fails is never a successful login: the auth path maps every
//! [`PluginError`] to SASL `temporary-auth-failure`.

use std::fmt;

use heliograph_storage::StorageError;

/// Why a plugin call failed (not a denial: a denial is a plugin's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureCause {
    /// The guest trapped (a panic, `unreachable`, out-of-bounds access, stack overflow).
    Trap,
    /// The call ran past its deadline and was interrupted.
    Timeout,
    /// The guest tried to grow its memory beyond the cap.
    Memory,
    /// The guest returned something the host does not accept (too large, malformed).
    InvalidResult,
    /// The instance could not be created (for example the pool is exhausted).
    Instantiation,
    /// No plugin is installed in the slot, or it is of another world.
    NotInstalled,
}

impl FailureCause {
    pub const ALL: [FailureCause; 6] = [
        FailureCause::Trap,
        FailureCause::Timeout,
        FailureCause::Memory,
        FailureCause::InvalidResult,
        FailureCause::Instantiation,
        FailureCause::NotInstalled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::Trap => "trap",
            FailureCause::Timeout => "timeout",
            FailureCause::Memory => "memory",
            FailureCause::InvalidResult => "invalid-result",
            FailureCause::Instantiation => "instantiation",
            FailureCause::NotInstalled => "not-installed",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FailureCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin call that produced no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// Nothing installed in the slot (or a plugin of another world).
    #[error("no {world} plugin installed in slot {slot:?} of tenant {tenant:?}")]
    NotInstalled {
        tenant: String,
        slot: String,
        world: &'static str,
    },
    /// The call failed; `detail` is for the log, never for the client.
    #[error("plugin {tenant}/{slot} v{version} failed ({cause}): {detail}")]
    Failed {
        tenant: String,
        slot: String,
        version: u32,
        cause: FailureCause,
        detail: String,
    },
}

impl PluginError {
    pub fn cause(&self) -> FailureCause {
        match self {
            PluginError::NotInstalled { .. } => FailureCause::NotInstalled,
            PluginError::Failed { cause, .. } => *cause,
        }
    }
}

/// Why an install, rollback or removal was refused. Messages say exactly what is wrong;
/// a refused install changes nothing (the previous version keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("upload is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error(
        "upload is a precompiled artifact; only WebAssembly components are accepted (the server compiles them itself)"
    )]
    Precompiled,
    #[error("upload is not WebAssembly (no `\\0asm` header)")]
    NotWasm,
    #[error(
        "upload is a core WebAssembly module, not a component: build it for wasm32-wasip2 (or run `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("invalid plugin configuration: {0}")]
    InvalidConfig(String),
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// A required export is missing; `found` lists the component's exports.
    #[error("the component does not export `{expected}`, required by the {world} world{}", found_note(.found))]
    MissingExport {
        world: &'static str,
        expected: String,
        found: Vec<String>,
    },
    /// The right interface in another version of the package.
    #[error(
        "the component exports `{found}` but this server serves `{expected}`: rebuild it against heliograph:plugin@{}",
        crate::WIT_VERSION
    )]
    ExportVersion { expected: String, found: String },
    /// An import the host does not provide (unknown interface or version).
    #[error("the component imports `{import}`, which this server does not provide: {reason}")]
    UnsupportedImport { import: String, reason: String },
    /// Imports or exports have the right names but wrong types.
    #[error("the component does not match the {world} world: {detail}")]
    TypeMismatch { world: &'static str, detail: String },
    #[error("trial instantiation failed: {0}")]
    Instantiation(String),
    #[error("the plugin's init refused its configuration: {0}")]
    InitRefused(String),
    #[error("the plugin's init failed ({cause}): {detail}")]
    InitFailed { cause: FailureCause, detail: String },
    #[error("no plugin installed in slot {slot:?} of tenant {tenant:?}")]
    NotInstalled { tenant: String, slot: String },
    #[error("slot {slot:?} of tenant {tenant:?} has no version {version} (kept: {kept:?})")]
    UnknownVersion {
        tenant: String,
        slot: String,
        version: u32,
        kept: Vec<u32>,
    },
    /// Rollback without a version, and no kept version has served without failures.
    #[error(
        "slot {slot:?} of tenant {tenant:?} has no other version that served without failures (kept: {kept}); name one with ?version=N"
    )]
    NoGoodVersion {
        tenant: String,
        slot: String,
        kept: String,
    },
    #[error("slot {slot:?} of tenant {tenant:?} holds a {installed} plugin, not {requested}")]
    WorldMismatch {
        tenant: String,
        slot: String,
        installed: &'static str,
        requested: &'static str,
    },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("internal: {0}")]
    Internal(String),
}

fn found_note(found: &[String]) -> String {
    if found.is_empty() {
        " (it exports nothing)".into()
    } else {
        format!(" (it exports: {})", found.join(", "))
    }
}
