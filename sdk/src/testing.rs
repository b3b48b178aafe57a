//! Native test helpers: a fake host with an in-memory key-value store, a configuration
//! flattened exactly like the server does it, and captured log lines. Available on
//! non-wasm targets only, so `cargo test` runs a plugin's logic without the server.
//!
//! ```
//! use heliograph_plugin_sdk::prelude::*;
//! use heliograph_plugin_sdk::testing::FakeHost;
//!
//! let host = FakeHost::new()
//!     .config_json(r#"{"password": "s3cret"}"#)
//!     .kv("greeting", "hi")
//!     .install();
//! assert_eq!(config::get("password").as_deref(), Some("s3cret"));
//! log::info("hello", &[("k", "v")]);
//! assert_eq!(host.logs()[0].message, "hello");
//! ```
//!
//! The fake host is per thread (the test harness runs each test on its own thread), and
//! [`FakeHost::install`] replaces whatever the thread had.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::kv::KvError;
use crate::log::Level;

/// One captured log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    json: String,
    entries: Vec<(String, String)>,
    kv: BTreeMap<String, Vec<u8>>,
    logs: Vec<LogLine>,
    kv_unavailable: bool,
}

thread_local! {
    static CURRENT: RefCell<Rc<RefCell<State>>> = RefCell::new(Rc::new(RefCell::new(State {
        json: "{}".into(),
        ..State::default()
    })));
}

fn with<T>(f: impl FnOnce(&mut State) -> T) -> T {
    CURRENT.with(|c| f(&mut c.borrow().borrow_mut()))
}

/// Builds and inspects the fake host of the current thread.
pub struct FakeHost {
    state: Rc<RefCell<State>>,
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost::new()
    }
}

impl FakeHost {
    /// An empty configuration, store and log.
    pub fn new() -> FakeHost {
        FakeHost {
            state: Rc::new(RefCell::new(State {
                json: "{}".into(),
                ..State::default()
            })),
        }
    }

    /// Sets the configuration from JSON text (an object). Panics on invalid JSON.
    pub fn config_json(self, json: &str) -> FakeHost {
        let value: serde_json::Value = serde_json::from_str(json).expect("config_json: JSON");
        let serde_json::Value::Object(map) = &value else {
            panic!("config_json: the configuration must be a JSON object");
        };
        let mut entries = Vec::new();
        flatten("", map, &mut entries);
        entries.sort();
        {
            let mut s = self.state.borrow_mut();
            s.json = value.to_string();
            s.entries = entries;
        }
        self
    }

    /// Pre-stores a key-value entry.
    pub fn kv(self, key: &str, value: impl AsRef<[u8]>) -> FakeHost {
        self.state
            .borrow_mut()
            .kv
            .insert(key.into(), value.as_ref().to_vec());
        self
    }

    /// Makes every key-value operation fail with `Unavailable` (to test that path).
    pub fn kv_unavailable(self) -> FakeHost {
        self.state.borrow_mut().kv_unavailable = true;
        self
    }

    /// Makes this the current thread's host; keep the returned handle to inspect it.
    pub fn install(self) -> FakeHost {
        CURRENT.with(|c| *c.borrow_mut() = self.state.clone());
        self
    }

    /// Log lines written so far.
    pub fn logs(&self) -> Vec<LogLine> {
        self.state.borrow().logs.clone()
    }

    /// A stored value.
    pub fn kv_value(&self, key: &str) -> Option<Vec<u8>> {
        self.state.borrow().kv.get(key).cloned()
    }
}

fn flatten(
    prefix: &str,
    map: &serde_json::Map<String, serde_json::Value>,
    out: &mut Vec<(String, String)>,
) {
    for (key, value) in map {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            serde_json::Value::Object(inner) => flatten(&full, inner, out),
            serde_json::Value::String(s) => out.push((full, s.clone())),
            other => out.push((full, other.to_string())),
        }
    }
}

/// The host API on the fake host (used by `log`, `kv` and `config` on native targets).
#[doc(hidden)]
pub mod backend {
    use super::*;

    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        with(|s| {
            s.logs.push(LogLine {
                level,
                message: message.into(),
                fields: fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
        })
    }

    fn check(s: &State, key: &str) -> Result<(), KvError> {
        if s.kv_unavailable {
            return Err(KvError::Unavailable("fake host: unavailable".into()));
        }
        if key.is_empty() || key.len() > 256 {
            return Err(KvError::InvalidKey("empty or over 256 bytes".into()));
        }
        Ok(())
    }

    pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
        with(|s| {
            check(s, key)?;
            Ok(s.kv.get(key).cloned())
        })
    }

    pub fn kv_set(key: &str, value: &[u8]) -> Result<(), KvError> {
        with(|s| {
            check(s, key)?;
            if value.len() > 64 * 1024 {
                return Err(KvError::ValueTooLarge(64 * 1024));
            }
            s.kv.insert(key.into(), value.to_vec());
            Ok(())
        })
    }

    pub fn kv_delete(key: &str) -> Result<bool, KvError> {
        with(|s| {
            check(s, key)?;
            Ok(s.kv.remove(key).is_some())
        })
    }

    pub fn kv_list_keys(prefix: &str, limit: u32) -> Result<Vec<String>, KvError> {
        with(|s| {
            if s.kv_unavailable {
                return Err(KvError::Unavailable("fake host: unavailable".into()));
            }
            Ok(s.kv
                .keys()
                .filter(|k| k.starts_with(prefix))
                .take(limit.min(1000) as usize)
                .cloned()
                .collect())
        })
    }

    pub fn config_json() -> String {
        with(|s| s.json.clone())
    }

    pub fn config_get(key: &str) -> Option<String> {
        with(|s| {
            s.entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        })
    }

    pub fn config_entries() -> Vec<(String, String)> {
        with(|s| s.entries.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    #[test]
    fn config_is_flattened_like_the_server() {
        let _host = FakeHost::new()
            .config_json(r#"{"users": {"alice": "x"}, "n": 3, "on": true, "l": ["a", "b"]}"#)
            .install();
        assert_eq!(config::get("users.alice").as_deref(), Some("x"));
        assert_eq!(config::get("n").as_deref(), Some("3"));
        assert!(config::get_bool("on", false));
        assert_eq!(config::get_list("l"), vec!["a", "b"]);
        assert_eq!(
            config::with_prefix("users"),
            vec![("alice".into(), "x".into())]
        );
    }

    #[test]
    fn kv_and_logs() {
        let host = FakeHost::new().kv("a", "1").install();
        assert_eq!(kv::get_string("a").unwrap().as_deref(), Some("1"));
        kv::set("b", "2").unwrap();
        assert_eq!(kv::list_keys("", 10).unwrap(), vec!["a", "b"]);
        assert!(kv::delete("a").unwrap());
        assert_eq!(host.kv_value("b"), Some(b"2".to_vec()));
        log::warn("careful", &[("k", "v")]);
        assert_eq!(host.logs()[0].level, log::Level::Warn);
        assert!(matches!(kv::set("", "x"), Err(KvError::InvalidKey(_))));
    }
}
