//! Command-line syntax of `heliograph` (clap derive).
//!
//! ```text
//! heliograph [serve] [--config PATH] [--ready-file PATH]
//! heliograph user add JID [--password P]
//! heliograph user remove JID
//! heliograph user passwd JID [--password P]
//! heliograph user list DOMAIN
//! heliograph session list [DOMAIN]
//! heliograph tenant add NAME --domain D [--domain D2] [settings]
//! heliograph tenant set NAME [settings] [--muc KEY=VALUE ...]
//! heliograph tenant list | show NAME | enable NAME | disable NAME | token NAME
//! heliograph tenant remove NAME [--purge]
//! heliograph plugin install|list|rollback|remove TENANT [SLOT] ...
//! heliograph plugin new NAME --world W [--lang rust|python|js]       (local)
//! heliograph plugin test FILE.wasm [--script CALLS.toml]           (local)
//! heliograph room list|show|create|destroy|kick --tenant T ...
//! heliograph token mint|list|revoke [--tenant T] USER [--kind K] [--id ID]
//! heliograph reload
//! heliograph drain
//! heliograph storage migrate | export [--output FILE] | import FILE
//! ```
//!
//! Client commands take `--config`, `--api URL` (`HELIOGRAPH_API`), `--token-file PATH`
//! (`HELIOGRAPH_TOKEN_FILE`) and `--token TOKEN` (`HELIOGRAPH_TOKEN`) anywhere on the line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Multi-tenant XMPP signaling server.
#[derive(Debug, Parser)]
#[command(name = "heliograph", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    /// Write a JSON file describing the bound listeners once the server is ready
    /// (serve only; same as `serve --ready-file`).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,

    /// What to do; runs the server when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options every command accepts (shown under their own heading in every command's help).
#[derive(Debug, Args, Default, Clone)]
pub struct GlobalArgs {
    /// Config file (default: config/heliograph.toml if present, else built-in defaults;
    /// client commands without one ask the running server).
    #[arg(long, global = true, value_name = "PATH", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,

    /// Admin API URL, e.g. http://127.0.0.1:5281 (default: the config's
    /// listen.admin.address, else the running server's).
    #[arg(
        long,
        global = true,
        env = "HELIOGRAPH_API",
        value_name = "URL",
        help_heading = GLOBAL
    )]
    pub api: Option<String>,

    /// File holding the admin token (default: the config's admin token file, else the
    /// running server's, <data_dir>/admin.token).
    #[arg(
        long,
        global = true,
        env = "HELIOGRAPH_TOKEN_FILE",
        value_name = "PATH",
        help_heading = GLOBAL
    )]
    pub token_file: Option<PathBuf>,

    /// Admin token (prefer --token-file: command lines are visible to other users).
    #[arg(
        long,
        global = true,
        env = "HELIOGRAPH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        help_heading = GLOBAL
    )]
    pub token: Option<String>,
}

/// Help heading of the options every command accepts.
const GLOBAL: &str = "Global options (any command)";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default command).
    Serve(ServeArgs),
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Inspect online sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Manage tenants (customer apps and their domains).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage tenants' WebAssembly plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Manage a tenant's MUC rooms (meetings).
    #[command(subcommand)]
    Room(RoomCommand),
    /// Mint, list and revoke users' server-issued tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Re-read the server's config file and apply the differences (like SIGHUP).
    Reload,
    /// Drain the server: not ready, no new connections, sessions sent elsewhere, then exit.
    Drain,
    /// The cluster as this node sees it.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Work on the configured storage directly (not through the API): schema migrations,
    /// export and import.
    #[command(subcommand)]
    Storage(StorageCommand),
}

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Apply the database schema migrations this build has and the database lacks
    /// (PostgreSQL; sled needs none).
    Migrate,
    /// Write every stored record as a streamed, versioned dump (JSON lines). Stop a sled
    /// server first: sled allows one process per database.
    Export {
        /// Where to write the dump (default: standard output).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Read a dump into the configured storage, which must be empty (PostgreSQL: one
    /// transaction, nothing kept if it fails).
    Import {
        /// The dump (`-` for standard input).
        #[arg(value_name = "FILE")]
        input: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint an access and/or refresh token for USER (printed once).
    Mint {
        /// The user's tenant (USER may then be a bare localpart of its first domain).
        #[arg(long)]
        tenant: Option<String>,
        /// A bare JID, or a localpart with --tenant.
        user: String,
        /// `access`, `refresh` or `both`.
        #[arg(long, default_value = "both", value_parser = ["access", "refresh", "both"])]
        kind: String,
    },
    /// List USER's live refresh tokens.
    List {
        #[arg(long)]
        tenant: Option<String>,
        user: String,
    },
    /// Revoke every token of USER at once (access tokens too), or one refresh token.
    Revoke {
        #[arg(long)]
        tenant: Option<String>,
        user: String,
        /// Revoke only this refresh token (an id from `token list`).
        #[arg(long)]
        id: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Upload a component and make it the slot's active version (calls that start after
    /// this returns use it; a refused upload leaves the previous version serving).
    Install {
        tenant: String,
        slot: String,
        /// The component (`.wasm`, built for wasm32-wasip2).
        file: PathBuf,
        /// The plugin's configuration, a JSON object (`--config` is the server's config
        /// file, as for every command). Without it (and --plugin-config-file) the new
        /// version keeps the active version's configuration.
        #[arg(long, value_name = "JSON", conflicts_with = "plugin_config_file")]
        plugin_config: Option<String>,
        /// Read the plugin's configuration (a JSON object) from a file.
        #[arg(long, value_name = "FILE")]
        plugin_config_file: Option<PathBuf>,
    },
    /// A tenant's plugins: versions kept, the active one, calls, failures, latency.
    List { tenant: String },
    /// Switch back to the last good version: the newest kept one, other than the active
    /// one, that served calls without a failure (or to --version N).
    Rollback {
        tenant: String,
        slot: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Remove a plugin: every kept version and its key-value data.
    #[command(alias = "delete")]
    Remove { tenant: String, slot: String },
    /// Write a new plugin project (manifest, source with the world's functions, a unit
    /// test, a call script, a README) that builds and passes its test as it is. Local:
    /// no server needed.
    New {
        /// The project's name (a directory of that name is created).
        name: String,
        /// The kind of plugin.
        #[arg(long, value_parser = ["authenticator", "room-policy", "component"])]
        world: String,
        /// The language.
        #[arg(long, default_value = "rust", value_parser = ["rust", "python", "js"])]
        lang: String,
        /// Where to create the project directory (default: the current directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Rust: depend on a checkout of the SDK at this path (heliograph's `sdk/`)
        /// instead of the published crate.
        #[arg(long, value_name = "PATH")]
        sdk_path: Option<PathBuf>,
    },
    /// Run a plugin's calls on the real plugin host without a server: a script of
    /// logins, room decisions or stanzas, with a configuration and key-value data;
    /// prints each decision, the plugin's log lines and the time per call. Local: no
    /// server needed. Exits 1 if a call's `expect` does not hold.
    Test {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The calls: a TOML (or `.json`) script (see `heliograph plugin new`'s
        /// calls.toml, or the SDK guide).
        #[arg(long, value_name = "FILE")]
        script: Option<PathBuf>,
        /// The plugin's configuration, a JSON object (replaces the script's).
        #[arg(long, value_name = "JSON", conflicts_with = "plugin_config_file")]
        plugin_config: Option<String>,
        /// Read the plugin's configuration from a file.
        #[arg(long, value_name = "FILE")]
        plugin_config_file: Option<PathBuf>,
        /// Key-value data before the first call, KEY=VALUE (repeat; added to the script's).
        #[arg(long, value_name = "KEY=VALUE")]
        kv: Vec<String>,
        /// The compiled-code cache (default: ~/.cache/heliograph/plugin-test).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
}

impl PluginCommand {
    /// Whether the command runs locally, without the admin API.
    pub fn is_local(&self) -> bool {
        matches!(self, PluginCommand::New { .. } | PluginCommand::Test { .. })
    }
}

#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// List the tenant's rooms.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Show a room with its occupants (nick, JID, role, affiliation).
    Show {
        /// The room's JID (`standup@conference.example.com`).
        room: String,
        #[arg(long)]
        tenant: String,
    },
    /// Print a logged room's public log, oldest first (`NUMBER  TIME  NICK: TEXT`).
    Log {
        room: String,
        #[arg(long)]
        tenant: String,
        /// Only lines numbered after this one.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many lines (default: all).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Create a configured, persistent room.
    Create {
        room: String,
        #[arg(long)]
        tenant: String,
        /// The room's display name.
        #[arg(long)]
        name: Option<String>,
        /// A room owner (bare JID; repeat for several).
        #[arg(long = "owner", value_name = "JID")]
        owners: Vec<String>,
        /// A `muc#roomconfig` field, `FIELD=VALUE` (`membersonly=1`, `maxusers=10`; repeat).
        #[arg(long = "set", value_name = "FIELD=VALUE")]
        settings: Vec<String>,
    },
    /// Destroy a room; its occupants are told (with the reason and alternate venue).
    #[command(alias = "delete")]
    Destroy {
        room: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        reason: Option<String>,
        /// The room to go to instead.
        #[arg(long, value_name = "ROOM_JID")]
        alternate: Option<String>,
    },
    /// Kick an occupant (by nickname).
    Kick {
        room: String,
        nick: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; its users can log in at once.
    Add {
        name: String,
        #[command(flatten)]
        settings: Box<TenantSettings>,
    },
    /// Change a tenant's settings (only the options given change).
    Set {
        name: String,
        #[command(flatten)]
        settings: Box<TenantSettings>,
    },
    /// Remove a tenant; its sessions end. Its data stays unless --purge is given.
    #[command(alias = "delete")]
    Remove {
        name: String,
        /// Also delete every account and all data of its domains.
        #[arg(long)]
        purge: bool,
    },
    /// List tenants.
    List,
    /// Show one tenant.
    Show { name: String },
    /// Enable a tenant.
    Enable { name: String },
    /// Disable a tenant: its sessions end with host-gone, logins get host-unknown.
    Disable { name: String },
    /// Issue (or replace) the tenant's own admin token; printed once.
    Token { name: String },
}

/// Tenant settings as command-line options; unset options are left unchanged. They map
/// one to one to the fields of the admin API's tenant (`POST /api/v1/tenants`, `PATCH
/// /api/v1/tenants/{tenant}`).
#[derive(Debug, Args, Default, Clone, PartialEq)]
#[command(next_help_heading = "Tenant settings")]
pub struct TenantSettings {
    /// A domain of the tenant (repeat for several; replaces the list with `set`).
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// `internal` or `plugin:SLOT`.
    #[arg(long, value_name = "METHOD")]
    pub auth: Option<String>,
    /// Maximum online sessions (0: unlimited).
    #[arg(long)]
    pub max_sessions: Option<u32>,
    /// Maximum accounts (0: unlimited).
    #[arg(long)]
    pub max_accounts: Option<u64>,
    /// Stanzas per second per session (0: unlimited).
    #[arg(long)]
    pub stanza_rate: Option<u32>,
    /// Burst of the stanza shaper.
    #[arg(long)]
    pub stanza_burst: Option<u32>,
    /// Largest stanza in bytes (0: the server's limit).
    #[arg(long)]
    pub max_stanza_size: Option<usize>,
    /// A tenant whose users may talk to this tenant's (repeat; both sides must list each
    /// other; replaces the list).
    #[arg(long = "federate-with", value_name = "TENANT")]
    pub federate_with: Vec<String>,
    /// The room-policy plugin of the tenant's MUC rooms: `plugin:SLOT` (failures refuse the
    /// action), `plugin:SLOT:fail-open` (failures allow it) or `none`.
    #[arg(long, value_name = "POLICY")]
    pub room_policy: Option<String>,
    /// The tenant's own certificate (PEM), with --key.
    #[arg(long, requires = "key", value_name = "PATH")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, requires = "cert", value_name = "PATH")]
    pub key: Option<PathBuf>,
    /// A MUC setting, `KEY=VALUE` (`subdomain=rooms`, `history_length=50`,
    /// `room_creation=admins`, `admins=["boss@acme.example"]`; repeat). Values are read
    /// as JSON when they parse, else as strings.
    #[arg(long = "muc", value_name = "KEY=VALUE")]
    pub muc: Vec<String>,

    /// Issue server-issued tokens (`token mint`, SASL2 token requests, FAST) with the
    /// default lifetimes, or the current ones with `set`.
    #[arg(
        long,
        help_heading = "Server-issued tokens",
        conflicts_with = "no_tokens"
    )]
    pub tokens: bool,
    /// Access (and FAST) token lifetime in seconds (implies --tokens).
    #[arg(
        long,
        value_name = "SECS",
        help_heading = "Server-issued tokens",
        conflicts_with = "no_tokens"
    )]
    pub tokens_access_ttl_secs: Option<u64>,
    /// Refresh token lifetime in seconds (implies --tokens).
    #[arg(
        long,
        value_name = "SECS",
        help_heading = "Server-issued tokens",
        conflicts_with = "no_tokens"
    )]
    pub tokens_refresh_ttl_secs: Option<u64>,
    /// Stop issuing tokens (those already issued are refused from then on).
    #[arg(long, help_heading = "Server-issued tokens")]
    pub no_tokens: bool,

    /// A JWT verification key: `alg=ALG` and one of `secret=TEXT`, `secret_file=PATH`,
    /// `public_key=PEM`, `public_key_file=PATH`, with an optional `kid=ID`, comma
    /// separated (`alg=HS256,kid=k1,secret_file=/etc/h/k1`); repeat for several. Turns
    /// JWT login on; replaces the key list with `set`.
    #[arg(long = "jwt-key", value_name = "SPEC", help_heading = "JWT login")]
    pub jwt_keys: Vec<String>,
    /// A JWKS file (`{"keys": [...]}`), re-read on reload (repeat; replaces the list).
    #[arg(
        long = "jwt-jwks-file",
        value_name = "PATH",
        help_heading = "JWT login"
    )]
    pub jwt_jwks_files: Vec<PathBuf>,
    /// The claim naming the user (default `sub`).
    #[arg(long, value_name = "CLAIM", help_heading = "JWT login")]
    pub jwt_username_claim: Option<String>,
    /// An accepted `aud` (repeat; replaces the list; none: `aud` is not checked).
    #[arg(long = "jwt-audience", value_name = "AUD", help_heading = "JWT login")]
    pub jwt_audience: Vec<String>,
    /// An accepted `iss` (repeat; replaces the list; none: `iss` is not checked).
    #[arg(long = "jwt-issuer", value_name = "ISS", help_heading = "JWT login")]
    pub jwt_issuer: Vec<String>,
    /// Clock leeway in seconds for `exp`, `nbf` and `iat`.
    #[arg(long, value_name = "SECS", help_heading = "JWT login")]
    pub jwt_leeway_secs: Option<u64>,
    /// Refuse tokens without `exp` (`true`, the default, or `false`).
    #[arg(long, value_name = "BOOL", help_heading = "JWT login")]
    pub jwt_require_exp: Option<bool>,
    /// Turn JWT login off.
    #[arg(
        long,
        help_heading = "JWT login",
        conflicts_with_all = ["jwt_keys", "jwt_jwks_files", "jwt_username_claim", "jwt_audience",
            "jwt_issuer", "jwt_leeway_secs", "jwt_require_exp"]
    )]
    pub no_jwt: bool,

    /// A component: `domain=DOMAIN` (repeat inside for several) and `secret=TEXT` (an
    /// external XEP-0114 component) or `plugin=SLOT` (a Wasm component), optionally
    /// `name=NAME`, `on_conflict=refuse|replace`, `hidden=true`, comma separated
    /// (`domain=bot.acme.example,secret=s3cret,name=Bot`); repeat for several. Replaces the
    /// list with `set`.
    #[arg(long = "component", value_name = "SPEC", help_heading = "Components")]
    pub components: Vec<String>,
    /// Remove every component of the tenant.
    #[arg(long, help_heading = "Components", conflicts_with = "components")]
    pub no_components: bool,
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Write a JSON file describing the bound listeners once the server is ready.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account.
    Add {
        /// Bare JID of the account, e.g. alice@example.com.
        #[arg(value_parser = parse_account)]
        jid: AccountArg,
        /// The password (default: read one line from standard input).
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account with all its data and end its sessions.
    #[command(alias = "delete")]
    Remove {
        /// Bare JID of the account.
        #[arg(value_parser = parse_account)]
        jid: AccountArg,
    },
    /// Change an account's password and end its sessions.
    Passwd {
        /// Bare JID of the account.
        #[arg(value_parser = parse_account)]
        jid: AccountArg,
        /// The new password (default: read one line from standard input).
        #[arg(long)]
        password: Option<String>,
    },
    /// List the accounts of a domain, one per line.
    List {
        /// The domain.
        domain: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Nodes (sessions, replica in sync, last heartbeat, version) and the NATS connection.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// List online sessions, of all domains or of one.
    List {
        /// Only sessions of this domain.
        domain: Option<String>,
    },
}

/// An account named on the command line: `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountArg {
    pub local: String,
    pub domain: String,
}

/// Parses a bare JID with a localpart (normalized).
fn parse_account(s: &str) -> Result<AccountArg, String> {
    let jid = jid::BareJid::new(s).map_err(|e| format!("not a valid JID: {e}"))?;
    let local = jid
        .node()
        .ok_or("expected an account JID like alice@example.com")?;
    Ok(AccountArg {
        local: local.as_str().to_string(),
        domain: jid.domain().as_str().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("heliograph").chain(args.iter().copied()))
    }

    #[test]
    fn no_subcommand_means_serve() {
        let cli = parse(&["--config", "x.toml", "--ready-file", "r.json"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.global.config, Some(PathBuf::from("x.toml")));
        assert_eq!(cli.ready_file, Some(PathBuf::from("r.json")));
    }

    #[test]
    fn serve_subcommand() {
        let cli = parse(&["serve", "--ready-file", "r.json", "--config", "c.toml"]).unwrap();
        match cli.command {
            Some(Command::Serve(s)) => assert_eq!(s.ready_file, Some(PathBuf::from("r.json"))),
            other => panic!("{other:?}"),
        }
        assert_eq!(cli.global.config, Some(PathBuf::from("c.toml")));
    }

    #[test]
    fn user_commands() {
        let cli = parse(&[
            "user",
            "add",
            "Alice@Example.com",
            "--password",
            "pw",
            "--api",
            "http://h:1",
        ])
        .unwrap();
        match cli.command {
            Some(Command::User(UserCommand::Add { jid, password })) => {
                assert_eq!(
                    jid,
                    AccountArg {
                        local: "alice".into(),
                        domain: "example.com".into()
                    }
                );
                assert_eq!(password.as_deref(), Some("pw"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cli.global.api.as_deref(), Some("http://h:1"));

        let cli = parse(&["--token-file", "t", "user", "remove", "bob@example.com"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::User(UserCommand::Remove { .. }))
        ));
        assert_eq!(cli.global.token_file, Some(PathBuf::from("t")));

        let cli = parse(&["user", "passwd", "bob@example.com"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::User(UserCommand::Passwd { password: None, .. }))
        ));

        let cli = parse(&["user", "list", "example.com", "--token", "tok"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::User(UserCommand::List { ref domain })) if domain == "example.com")
        );
        assert_eq!(cli.global.token.as_deref(), Some("tok"));
    }

    #[test]
    fn session_list_with_and_without_domain() {
        let cli = parse(&["session", "list"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Session(SessionCommand::List { domain: None }))
        ));
        let cli = parse(&["session", "list", "example.com"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Session(SessionCommand::List { domain: Some(_) }))
        ));
    }

    #[test]
    fn usage_errors() {
        for args in [
            &["user", "add"][..],
            &["user", "add", "example.com"],
            &["user", "add", "a@b@c"],
            &["user", "list"],
            &["user", "frobnicate"],
            &["--bogus"],
            &["session", "list", "a", "b"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }
}
