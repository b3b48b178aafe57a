//! `heliograph plugin test FILE.wasm --script CALLS.toml`: runs a plugin's calls on the
//! real plugin host, without a server: the component is compiled, checked, trial
//! instantiated and `init`-ed exactly as an install does it, then each call of the script
//! (a login, a room decision, a stanza to a component) runs with the server's instance
//! rules (a fresh instance, or a reused one for an interpreter: `[plugins] reuse`), its
//! deadlines and memory cap. For each call it prints the decision, the plugin's
//! log lines and the time the call took; at the end, the key-value data the plugin left.
//!
//! The script (TOML, or JSON with the same shape when the file ends in `.json`):
//!
//! ```toml
//! [config]                       # the plugin's configuration (as --plugin-config)
//! users = { alice = "secret" }
//! [kv]                           # key-value data before the first call (text values)
//! "token/t-1" = "bob"
//!
//! [[call]]
//! login = "alice"                # a login: username and password (or token = "...")
//! password = "secret"
//! tls = true                     # default true; transport = "tcp" | "bosh" | "websocket"
//! expect = "ok"                  # optional: ok, denied or failed; a mismatch fails the run
//!
//! [[call]]
//! join = "team-a"                # a room decision: create, join, message, configure, nick
//! user = "bob@example.com/phone" # the user's full JID
//! roles = ["host"]               # what the authenticator said at login
//! occupants = 1
//!
//! [[call]]
//! stanza = "<message to='bot.example.com' type='chat'><body>hi</body></message>"
//! from = "alice@example.com/phone"
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};

use crate::plugins::{
    AuthDenied, AuthRequest, ComponentStanza, Mechanism, PluginConfig, PluginError, PluginHost,
    PluginSettings, PolicyOccupant, PolicyRoom, PolicyUser, RoomAnswer, RoomQuestion, StanzaKind,
    Transport, World,
};
use crate::storage::{MemPluginStore, PluginStore};
use crate::xmpp::muc::{Affiliation, Role};

/// The tenant and slot the plugin runs as.
const TENANT: &str = "test";
const SLOT: &str = "plugin";

/// A call script.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The plugin's configuration (a JSON object; a TOML table in a TOML script).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// Key-value data stored before the first call.
    #[serde(default)]
    pub kv: BTreeMap<String, String>,
    /// The calls, in order.
    #[serde(default)]
    pub call: Vec<Call>,
}

/// One call of a script: exactly one of `login`, `create`, `join`, `message`,
/// `configure`, `nick` or `stanza` says what it is.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// A login of this username (with `password` or `token`).
    pub login: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// The login's transport (`tcp`, `bosh`, `websocket`) and whether it is encrypted.
    pub transport: Option<String>,
    pub tls: Option<bool>,
    pub domain: Option<String>,
    /// Room decisions: the room's name (`team-a`) or JID.
    pub create: Option<String>,
    pub join: Option<String>,
    pub message: Option<String>,
    pub configure: Option<String>,
    pub nick: Option<String>,
    /// The user's full JID, and what the authenticator said about it at login.
    pub user: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The occupant's nickname, role and affiliation (what XEP-0045's rules gave).
    pub as_nick: Option<String>,
    pub role: Option<String>,
    pub affiliation: Option<String>,
    /// Occupants in the room before the action.
    pub occupants: Option<u32>,
    /// The room's configuration, and for `configure` the new one.
    #[serde(default)]
    pub room_config: BTreeMap<String, String>,
    #[serde(default)]
    pub new_config: BTreeMap<String, String>,
    /// A message body (`message`) or the new nickname (`nick`).
    pub body: Option<String>,
    pub new_nick: Option<String>,
    /// A stanza to a component (XML), and its sender.
    pub stanza: Option<String>,
    pub from: Option<String>,
    /// The expected outcome: `ok`, `denied` or `failed`.
    pub expect: Option<String>,
}

impl Script {
    /// Reads a script: JSON when the file name ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> anyhow::Result<Script> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the script {}", path.display()))?;
        if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid call script", path.display()))
        } else {
            toml::from_str(&text)
                .with_context(|| format!("{} is not a valid call script", path.display()))
        }
    }
}

/// What the command was given.
pub struct TestOptions {
    pub file: PathBuf,
    pub script: Option<PathBuf>,
    /// Overrides the script's configuration.
    pub config: Option<String>,
    /// Added to (and overriding) the script's key-value data.
    pub kv: Vec<(String, String)>,
    pub settings: PluginSettings,
    /// The compiled-code cache (kept between runs).
    pub cache_dir: PathBuf,
}

/// A plugin log line (or a host line about the plugin) captured during a call.
#[derive(Debug, Clone)]
struct LogLine {
    level: tracing::Level,
    message: String,
    fields: Vec<(String, String)>,
}

/// Collects the plugin's log lines (`host-log`) and the host's lines about it.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<LogLine>>>);

impl Collector {
    fn take(&self) -> Vec<LogLine> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            // Every line is of this one plugin: the labels say nothing here.
            "tenant" | "plugin" | "version" => {}
            // A plugin line's own fields, already `k=v k=v`.
            "fields" => {
                if !value.is_empty() {
                    self.fields.push((String::new(), value.to_string()));
                }
            }
            name => self.fields.push((name.to_string(), value.to_string())),
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Collector {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        // The plugin's own lines (every level), and the host's warnings about it (a
        // failed call with the plugin's panic output, a refused install).
        let meta = event.metadata();
        let plugin_line = meta.target() == "heliograph::plugin";
        let host_warning = meta.target().starts_with("heliograph_plugins")
            && *meta.level() <= tracing::Level::WARN;
        if !plugin_line && !host_warning {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        self.0.lock().unwrap().push(LogLine {
            level: *meta.level(),
            message: f.message,
            fields: f.fields,
        });
    }
}

/// How a call ended, for `expect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Denied,
    Failed,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Denied => "denied",
            Verdict::Failed => "failed",
        }
    }
}

/// Runs the plugin test; `Ok(false)` when an `expect` did not hold.
pub async fn run(opts: TestOptions, out: &mut dyn Write) -> anyhow::Result<bool> {
    let collector = Collector::default();
    // The command is a process of its own: the collector is its global subscriber, so
    // lines written on the host's blocking threads are seen too.
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(collector.clone()),
    );

    let mut script = match &opts.script {
        Some(path) => Script::load(path)?,
        None => Script::default(),
    };
    if let Some(text) = &opts.config {
        script.config = Some(serde_json::from_str(text).context("--plugin-config is not JSON")?);
    }
    for (k, v) in &opts.kv {
        script.kv.insert(k.clone(), v.clone());
    }
    let config = PluginConfig::from_value(
        script
            .config
            .clone()
            .unwrap_or_else(|| serde_json::json!({})),
    )?;

    let wasm =
        std::fs::read(&opts.file).with_context(|| format!("reading {}", opts.file.display()))?;
    let store = Arc::new(MemPluginStore::default());
    for (k, v) in &script.kv {
        store.kv_set(TENANT, SLOT, k, v.as_bytes(), u64::MAX)?;
    }
    std::fs::create_dir_all(&opts.cache_dir)
        .with_context(|| format!("creating {}", opts.cache_dir.display()))?;
    let host = PluginHost::new(opts.settings.clone(), store.clone(), &opts.cache_dir)?;

    let size = wasm.len();
    let started = Instant::now();
    let installed = host
        .install_detecting_world(TENANT, SLOT, wasm, Some(config))
        .await;
    let install_time = started.elapsed();
    let init_logs = collector.take();
    let info = match installed {
        Ok(info) => info,
        Err(e) => {
            write_logs(out, &init_logs)?;
            bail!("the plugin was refused: {e}");
        }
    };
    let cache = host.cache_stats();
    writeln!(
        out,
        "{}: {} plugin, {} bytes; compiled{}, checked, instantiated and init-ed in {}",
        opts.file.display(),
        info.world,
        size,
        if cache.hits > 0 {
            " (from the cache)"
        } else {
            ""
        },
        human(install_time)
    )?;
    write_logs(out, &init_logs)?;
    // One instance more, for its figures (each call below gets a fresh one too).
    if let Ok(probe) = host.probe_instance(TENANT, SLOT) {
        writeln!(
            out,
            "an instance: {} to create, {:.1} MiB of linear memory",
            human(probe.instantiation),
            probe.memory_bytes as f64 / (1 << 20) as f64
        )?;
    }

    let mut all_met = true;
    for (i, call) in script.call.iter().enumerate() {
        let (what, request) = describe(call, info.world)?;
        let started = Instant::now();
        let (verdict, answer) = perform(&host, request).await;
        let took = started.elapsed();
        writeln!(out, "call {}: {what}", i + 1)?;
        writeln!(out, "  -> {answer}  ({})", human(took))?;
        write_logs(out, &collector.take())?;
        if let Some(expected) = &call.expect
            && expected != verdict.name()
        {
            all_met = false;
            writeln!(out, "  !! expected {expected}, got {}", verdict.name())?;
        }
    }

    let keys = store.kv_list_keys(TENANT, SLOT, "", 1000)?;
    if !keys.is_empty() {
        writeln!(out, "key-value data after the calls:")?;
        for k in keys {
            let v = store.kv_get(TENANT, SLOT, &k)?.unwrap_or_default();
            writeln!(out, "  {k} = {}", String::from_utf8_lossy(&v))?;
        }
    }
    if let Some(stats) = host.stats(TENANT, SLOT)
        && stats.calls > 0
    {
        writeln!(
            out,
            "{} calls: {} ok, {} denied, {} failed; p50 {} us, p99 {} us, max {:.0} us; \
             at most {:.1} MiB of linear memory; {} on a reused instance",
            stats.calls,
            stats.succeeded,
            stats.denied,
            stats.failed.values().sum::<u64>(),
            stats.p50_us,
            stats.p99_us,
            stats.max_us,
            stats.memory_max_bytes as f64 / (1 << 20) as f64,
            stats.reused_instance_calls
        )?;
    }
    Ok(all_met)
}

fn human(d: Duration) -> String {
    if d < Duration::from_millis(10) {
        format!("{} us", d.as_micros())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn write_logs(out: &mut dyn Write, lines: &[LogLine]) -> std::io::Result<()> {
    for l in lines {
        let fields: Vec<String> = l
            .fields
            .iter()
            .map(|(k, v)| {
                if k.is_empty() {
                    v.clone()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        writeln!(
            out,
            "  log {:<5} {} {}",
            l.level.as_str().to_lowercase(),
            l.message,
            fields.join(" ")
        )?;
    }
    Ok(())
}

/// A call ready to run.
enum Request {
    Login(AuthRequest),
    Room(RoomQuestion),
    Stanza(ComponentStanza),
}

fn parse_role(s: Option<&str>) -> anyhow::Result<Role> {
    Ok(match s.unwrap_or("participant") {
        "none" => Role::None,
        "visitor" => Role::Visitor,
        "participant" => Role::Participant,
        "moderator" => Role::Moderator,
        other => bail!("unknown role {other:?} (none, visitor, participant, moderator)"),
    })
}

fn parse_affiliation(s: Option<&str>) -> anyhow::Result<Affiliation> {
    Ok(match s.unwrap_or("none") {
        "outcast" => Affiliation::Outcast,
        "none" => Affiliation::None,
        "member" => Affiliation::Member,
        "admin" => Affiliation::Admin,
        "owner" => Affiliation::Owner,
        other => bail!("unknown affiliation {other:?} (outcast, none, member, admin, owner)"),
    })
}

fn pairs(map: &BTreeMap<String, String>) -> Vec<(String, String)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// What the call is (a one-line description) and the request to make.
fn describe(call: &Call, world: World) -> anyhow::Result<(String, Request)> {
    let kinds = [
        call.login.is_some(),
        call.create.is_some(),
        call.join.is_some(),
        call.message.is_some(),
        call.configure.is_some(),
        call.nick.is_some(),
        call.stanza.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        bail!(
            "each call needs exactly one of login, create, join, message, configure, nick, stanza"
        );
    }
    let domain = call.domain.clone().unwrap_or_else(|| "example.com".into());
    if let Some(username) = &call.login {
        let (mechanism, credential) = match (&call.password, &call.token) {
            (Some(p), None) => (Mechanism::Password, p.clone()),
            (None, Some(t)) => (Mechanism::Token, t.clone()),
            _ => bail!("login {username:?}: give password or token"),
        };
        let transport = match call.transport.as_deref().unwrap_or("tcp") {
            "tcp" => Transport::Tcp,
            "bosh" => Transport::Bosh,
            "websocket" => Transport::Websocket,
            other => bail!("unknown transport {other:?} (tcp, bosh, websocket)"),
        };
        let tls = call.tls.unwrap_or(true);
        let what = format!(
            "login {username} ({}, {}{})",
            if mechanism == Mechanism::Password {
                "password"
            } else {
                "token"
            },
            call.transport.as_deref().unwrap_or("tcp"),
            if tls { ", tls" } else { ", no tls" }
        );
        ensure_world(world, World::Authenticator, "login")?;
        return Ok((
            what,
            Request::Login(AuthRequest {
                domain,
                mechanism,
                username: username.clone(),
                credential,
                client_address: Some("127.0.0.1".into()),
                transport,
                tls,
            }),
        ));
    }
    if let Some(xml) = &call.stanza {
        ensure_world(world, World::Component, "stanza")?;
        let el = crate::xml::parser::parse_element(
            xml.as_bytes(),
            crate::xml::ns::CLIENT,
            crate::xml::ParserLimits::default(),
        )
        .map_err(|e| anyhow::anyhow!("the stanza is not well-formed XML: {e}"))?;
        let mut el = el;
        let from = call
            .from
            .clone()
            .or_else(|| el.attr("from").map(str::to_string))
            .unwrap_or_else(|| "alice@example.com/test".into());
        el.set_attr("from", &from);
        let to = el.attr("to").unwrap_or_default().to_string();
        let kind = match el.name() {
            "message" => StanzaKind::Message,
            "presence" => StanzaKind::Presence,
            "iq" => StanzaKind::Iq,
            other => bail!("<{other}/> is not a stanza (message, presence, iq)"),
        };
        let what = format!("<{}/> from {from} to {to}", el.name());
        let domain = to
            .split_once('@')
            .map_or(to.as_str(), |(_, d)| d)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        return Ok((
            what,
            Request::Stanza(ComponentStanza {
                kind,
                from,
                to,
                stanza_type: el.attr("type").unwrap_or_default().to_string(),
                id: el.attr("id").unwrap_or_default().to_string(),
                domain,
                xml: el.to_string_in(""),
            }),
        ));
    }
    ensure_world(world, World::RoomPolicy, "a room decision")?;
    let name = [
        &call.create,
        &call.join,
        &call.message,
        &call.configure,
        &call.nick,
    ]
    .into_iter()
    .flatten()
    .next()
    .expect("one is set");
    let jid = if name.contains('@') {
        name.clone()
    } else {
        format!("{name}@conference.{domain}")
    };
    let room = PolicyRoom {
        jid: jid.clone(),
        occupants: call.occupants.unwrap_or(0),
        config: pairs(&call.room_config),
    };
    let user_jid = call
        .user
        .clone()
        .unwrap_or_else(|| format!("alice@{domain}/test"));
    let user = PolicyUser {
        jid: user_jid.clone(),
        roles: call.roles.clone(),
        attributes: pairs(&call.attributes),
    };
    let occupant = || -> anyhow::Result<PolicyOccupant> {
        Ok(PolicyOccupant {
            user: user.clone(),
            nick: call
                .as_nick
                .clone()
                .unwrap_or_else(|| user_jid.split('@').next().unwrap_or("nick").to_string()),
            role: parse_role(call.role.as_deref())?,
            affiliation: parse_affiliation(call.affiliation.as_deref())?,
        })
    };
    let (what, question) = if call.create.is_some() {
        (
            format!("create {jid} by {user_jid}"),
            RoomQuestion::Create {
                room,
                creator: user.clone(),
            },
        )
    } else if call.join.is_some() {
        (
            format!("join {jid} as {user_jid} ({} in the room)", room.occupants),
            RoomQuestion::Join {
                room,
                occupant: occupant()?,
            },
        )
    } else if call.message.is_some() {
        let body = call.body.clone().unwrap_or_default();
        (
            format!("message to {jid} from {user_jid}: {body:?}"),
            RoomQuestion::Message {
                room,
                occupant: occupant()?,
                body,
            },
        )
    } else if call.configure.is_some() {
        (
            format!("configure {jid} by {user_jid}"),
            RoomQuestion::Configure {
                room,
                actor: user.clone(),
                new_config: pairs(&call.new_config),
            },
        )
    } else {
        let new_nick = call.new_nick.clone().unwrap_or_default();
        (
            format!("nick change in {jid} by {user_jid} to {new_nick:?}"),
            RoomQuestion::ChangeNick {
                room,
                occupant: occupant()?,
                new_nick,
            },
        )
    };
    Ok((what, Request::Room(question)))
}

fn ensure_world(world: World, wanted: World, what: &str) -> anyhow::Result<()> {
    if world != wanted {
        bail!(
            "{what} needs a plugin of the {} world; this one is of the {world} world",
            wanted.name()
        );
    }
    Ok(())
}

/// Runs one call; the verdict and the answer as text.
async fn perform(host: &PluginHost, request: Request) -> (Verdict, String) {
    let failed = |e: PluginError| (Verdict::Failed, format!("FAILED: {e}"));
    match request {
        Request::Login(req) => match host.authenticate(TENANT, SLOT, req).await {
            Ok(out) => match out.result {
                Ok(user) => {
                    let mut text = format!("ok: user {}", user.username);
                    if let Some(name) = &user.display_name {
                        text.push_str(&format!(" ({name})"));
                    }
                    if !user.roles.is_empty() {
                        text.push_str(&format!(", roles {}", user.roles.join(",")));
                    }
                    for (k, v) in &user.attributes {
                        text.push_str(&format!(", {k}={v}"));
                    }
                    if let Some(at) = user.expires_at {
                        text.push_str(&format!(", expires at {at}"));
                    }
                    (Verdict::Ok, text)
                }
                Err(AuthDenied::NotAuthorized) => {
                    (Verdict::Denied, "denied: not-authorized".into())
                }
                Err(AuthDenied::AccountDisabled) => {
                    (Verdict::Denied, "denied: account-disabled".into())
                }
                Err(AuthDenied::TemporaryFailure(r)) => (
                    Verdict::Denied,
                    format!("denied: temporary-auth-failure ({r})"),
                ),
            },
            Err(e) => failed(e),
        },
        Request::Room(q) => match host.decide_room(TENANT, SLOT, q).await {
            Ok(out) => match out.answer {
                RoomAnswer::Allow => (Verdict::Ok, "allow".into()),
                RoomAnswer::JoinDefault => (Verdict::Ok, "allow with XEP-0045's role".into()),
                RoomAnswer::JoinAllow { role, affiliation } => (
                    Verdict::Ok,
                    format!(
                        "allow: role {}, affiliation {}",
                        role.map_or("(default)".to_string(), |r| format!("{r:?}").to_lowercase()),
                        affiliation
                            .map_or("(default)".to_string(), |a| format!("{a:?}").to_lowercase())
                    ),
                ),
                RoomAnswer::ReplaceBody(b) => (Verdict::Ok, format!("allow with body {b:?}")),
                RoomAnswer::Deny(r) => (Verdict::Denied, format!("deny: {r}")),
            },
            Err(e) => failed(e),
        },
        Request::Stanza(s) => {
            let limit = crate::xml::ParserLimits::default().max_stanza_bytes;
            match host.handle_stanza(TENANT, SLOT, s, limit).await {
                Ok(out) => match out.result {
                    Ok(stanzas) if stanzas.is_empty() => (Verdict::Ok, "no stanza sent".into()),
                    Ok(stanzas) => (
                        Verdict::Ok,
                        format!(
                            "{} stanza(s):\n     {}",
                            stanzas.len(),
                            stanzas.join("\n     ")
                        ),
                    ),
                    Err(r) => (Verdict::Denied, format!("refused: {r}")),
                },
                Err(e) => failed(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_parse_from_toml_and_json() {
        let toml: Script = toml::from_str(
            r#"
            [config]
            users = { alice = "secret" }
            [kv]
            "token/t" = "bob"
            [[call]]
            login = "alice"
            password = "secret"
            expect = "ok"
            [[call]]
            join = "team-a"
            user = "bob@example.com/r"
            roles = ["host"]
            "#,
        )
        .unwrap();
        assert_eq!(toml.call.len(), 2);
        assert_eq!(toml.kv["token/t"], "bob");
        assert_eq!(toml.config.unwrap()["users"]["alice"], "secret");
        let json: Script = serde_json::from_str(
            r#"{"call": [{"stanza": "<message to='x.example.com'/>", "from": "a@example.com/r"}]}"#,
        )
        .unwrap();
        assert!(json.call[0].stanza.is_some());
        assert!(
            toml::from_str::<Script>("[[call]]\nlogn = \"x\"").is_err(),
            "typos are refused"
        );
    }

    #[test]
    fn calls_are_described_and_checked_against_the_world() {
        let login = Call {
            login: Some("alice".into()),
            password: Some("pw".into()),
            ..Call::default()
        };
        let (what, _) = describe(&login, World::Authenticator).unwrap();
        assert_eq!(what, "login alice (password, tcp, tls)");
        assert!(describe(&login, World::RoomPolicy).is_err());
        let both = Call {
            join: Some("a".into()),
            ..login.clone()
        };
        assert!(describe(&both, World::Authenticator).is_err());
        let join = Call {
            join: Some("team".into()),
            occupants: Some(2),
            role: Some("moderator".into()),
            ..Call::default()
        };
        let (what, req) = describe(&join, World::RoomPolicy).unwrap();
        assert_eq!(
            what,
            "join team@conference.example.com as alice@example.com/test (2 in the room)"
        );
        assert!(
            matches!(req, Request::Room(RoomQuestion::Join { occupant, .. }) if occupant.role == Role::Moderator)
        );
        let stanza = Call {
            stanza: Some(
                "<iq type='get' id='1' to='bot.example.com'><ping xmlns='urn:xmpp:ping'/></iq>"
                    .into(),
            ),
            ..Call::default()
        };
        let (_, req) = describe(&stanza, World::Component).unwrap();
        let Request::Stanza(s) = req else { panic!() };
        assert_eq!(
            (s.kind, s.domain.as_str(), s.id.as_str()),
            (StanzaKind::Iq, "bot.example.com", "1")
        );
        assert!(
            s.xml.contains("from=\"alice@example.com/test\"")
                || s.xml.contains("from='alice@example.com/test'"),
            "{}",
            s.xml
        );
    }
}
