//! Structured logging into the server's log. The server adds the tenant, plugin slot
//! and version to every line; at most 64 lines per call are kept.

/// Severity of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Writes one line with key/value fields.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    backend::log(level, message, fields)
}

pub fn trace(message: &str, fields: &[(&str, &str)]) {
    log(Level::Trace, message, fields)
}

pub fn debug(message: &str, fields: &[(&str, &str)]) {
    log(Level::Debug, message, fields)
}

pub fn info(message: &str, fields: &[(&str, &str)]) {
    log(Level::Info, message, fields)
}

pub fn warn(message: &str, fields: &[(&str, &str)]) {
    log(Level::Warn, message, fields)
}

pub fn error(message: &str, fields: &[(&str, &str)]) {
    log(Level::Error, message, fields)
}

#[cfg(target_arch = "wasm32")]
use crate::__guest::backend;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::backend;
