//! `heliograph storage migrate|export|import`: work on the configured storage directly,
//! with the config of `--config` (else `config/heliograph.toml`, else the built-in
//! default), not through a running server's API.
//!
//! Moving a deployment from sled to PostgreSQL: stop the server, `heliograph storage
//! export --config sled.toml -o dump.jsonl`, then `heliograph storage import --config
//! postgres.toml dump.jsonl`, and start the server on the new config. The same the other
//! way. The dump keeps roster versions, offline message order and room-log numbers.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, bail};
use heliograph_config::StorageBackend;
use heliograph_storage::dump;
use heliograph_storage_postgres::PgStore;

use super::args::StorageCommand;
use crate::config::Config;
use crate::serve::{open_storage, postgres_settings};

/// Runs one storage command.
pub fn run(config: Option<&Path>, cmd: StorageCommand) -> anyhow::Result<()> {
    let (config, _) = Config::load_or_default(config)?;
    match cmd {
        StorageCommand::Migrate => migrate(&config),
        StorageCommand::Export { output } => {
            let storage = open_storage(&config, false)?;
            let records = match &output {
                Some(path) => {
                    let file = File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut out = BufWriter::new(file);
                    let n = dump::export(&storage, &mut out)?;
                    out.into_inner()
                        .map_err(|e| e.into_error())?
                        .sync_all()
                        .with_context(|| format!("writing {}", path.display()))?;
                    n
                }
                None => dump::export(&storage, &mut BufWriter::new(io::stdout().lock()))?,
            };
            eprintln!(
                "exported {records} records from {} storage",
                storage.backend.name()
            );
            Ok(())
        }
        StorageCommand::Import { input } => {
            let storage = open_storage(&config, true)?;
            let records = if input == Path::new("-") {
                dump::import(&storage, &mut io::stdin().lock())?
            } else {
                let file =
                    File::open(&input).with_context(|| format!("opening {}", input.display()))?;
                dump::import(&storage, &mut BufReader::new(file))?
            };
            (storage.flush)().context("flushing storage")?;
            eprintln!(
                "imported {records} records into {} storage",
                storage.backend.name()
            );
            Ok(())
        }
    }
}

fn migrate(config: &Config) -> anyhow::Result<()> {
    if config.storage.backend == StorageBackend::Sled {
        bail!("the sled backend has no schema to migrate (storage.backend = \"sled\")");
    }
    let store = PgStore::connect(&postgres_settings(config)?)?;
    let applied = store.migrate(None)?;
    let out = &mut io::stdout().lock();
    if applied.is_empty() {
        writeln!(out, "schema already at version {}", store.schema_version()?)?;
    } else {
        let list: Vec<String> = applied.iter().map(i32::to_string).collect();
        writeln!(
            out,
            "applied migrations {}; schema at version {}",
            list.join(", "),
            store.schema_version()?
        )?;
    }
    Ok(())
}
