//! [`Backend`] on PostgreSQL: export reads every table in key order from one
//! repeatable-read snapshot, through portals 1,000 rows at a time; import writes every
//! record in one transaction (a failed or cut import keeps nothing), 500 inserts
//! pipelined at a time, then recomputes the
//! plugin quota usage. Both stream: the caller's thread reads or writes the file while
//! the store's runtime drives the connection ([`crate::bridge::Bridge::block_on`]).

use deadpool_postgres::Transaction;
use heliograph_storage::backend::{Backend, DumpRecord, Sink};
use heliograph_storage::{StorageError, StorageResult};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use super::{Fail, PgStore, Res, json, parse, to_i64, to_u64};

/// Rows fetched per round trip while exporting.
const BATCH: i32 = 1000;
/// Inserts sent before waiting for their answers while importing: one round trip per
/// record made a 400,000-record import take a minute.
const IMPORT_BATCH: usize = 500;

/// Every table, for `is_empty`.
const TABLES: [&str; 19] = [
    "users",
    "roster_versions",
    "roster_items",
    "offline_messages",
    "blocks",
    "tenants",
    "muc_rooms",
    "muc_log",
    "token_keys",
    "token_revocations",
    "refresh_tokens",
    "fast_tokens",
    "plugin_blobs",
    "plugin_slots",
    "plugin_kv",
    "archive",
    "archive_prefs",
    "account_data",
    "pep_nodes",
];

type ToRecord = fn(&Row) -> Res<DumpRecord>;

/// Each kind's query (key order; text keys are `COLLATE "C"`, so bytes order) and row.
const EXPORTS: [(&str, ToRecord); 19] = [
    (
        "SELECT domain, local, credentials::text FROM users ORDER BY domain, local",
        |r| {
            Ok(DumpRecord::User {
                domain: r.get(0),
                local: r.get(1),
                credentials: parse(r.get(2), "users")?,
            })
        },
    ),
    (
        "SELECT domain, local, version FROM roster_versions ORDER BY domain, local",
        |r| {
            Ok(DumpRecord::RosterVersion {
                domain: r.get(0),
                local: r.get(1),
                version: to_u64(r.get(2)),
            })
        },
    ),
    (
        "SELECT domain, local, item::text FROM roster_items ORDER BY domain, local, contact",
        |r| {
            Ok(DumpRecord::RosterItem {
                domain: r.get(0),
                local: r.get(1),
                item: parse(r.get(2), "roster_items")?,
            })
        },
    ),
    (
        "SELECT domain, local, stanza, stamp_ms FROM offline_messages ORDER BY domain, local, id",
        |r| {
            Ok(DumpRecord::Offline {
                domain: r.get(0),
                local: r.get(1),
                message: heliograph_storage::OfflineMessage {
                    stanza: r.get(2),
                    stamp_ms: to_u64(r.get(3)),
                },
            })
        },
    ),
    (
        "SELECT domain, local, jid FROM blocks ORDER BY domain, local, jid",
        |r| {
            Ok(DumpRecord::Block {
                domain: r.get(0),
                local: r.get(1),
                jid: r.get(2),
            })
        },
    ),
    ("SELECT record::text FROM tenants ORDER BY name", |r| {
        Ok(DumpRecord::Tenant {
            record: parse(r.get(0), "tenants")?,
        })
    }),
    (
        "SELECT domain, room::text FROM muc_rooms ORDER BY domain, name",
        |r| {
            Ok(DumpRecord::Room {
                domain: r.get(0),
                room: parse(r.get(1), "muc_rooms")?,
            })
        },
    ),
    (
        "SELECT domain, room, number, entry::text FROM muc_log ORDER BY domain, room, number",
        |r| {
            Ok(DumpRecord::RoomLog {
                domain: r.get(0),
                room: r.get(1),
                number: to_u64(r.get(2)),
                entry: parse(r.get(3), "muc_log")?,
            })
        },
    ),
    ("SELECT tenant, key FROM token_keys ORDER BY tenant", |r| {
        Ok(DumpRecord::SigningKey {
            tenant: r.get(0),
            key: r.get(1),
        })
    }),
    (
        "SELECT domain, local, seq FROM token_revocations ORDER BY domain, local",
        |r| {
            Ok(DumpRecord::RevocationSeq {
                domain: r.get(0),
                local: r.get(1),
                seq: to_u64(r.get(2)),
            })
        },
    ),
    (
        "SELECT domain, local, record::text FROM refresh_tokens ORDER BY domain, local, id",
        |r| {
            Ok(DumpRecord::Refresh {
                domain: r.get(0),
                local: r.get(1),
                record: parse(r.get(2), "refresh_tokens")?,
            })
        },
    ),
    (
        "SELECT domain, local, client, slots::text FROM fast_tokens \
         ORDER BY domain, local, client",
        |r| {
            Ok(DumpRecord::Fast {
                domain: r.get(0),
                local: r.get(1),
                client: r.get(2),
                slots: parse(r.get(3), "fast_tokens")?,
            })
        },
    ),
    (
        "SELECT sha256, wasm FROM plugin_blobs ORDER BY sha256",
        |r| {
            Ok(DumpRecord::PluginBlob {
                sha256: r.get(0),
                wasm: r.get(1),
            })
        },
    ),
    (
        "SELECT record::text FROM plugin_slots ORDER BY tenant, slot",
        |r| {
            Ok(DumpRecord::PluginSlot {
                record: parse(r.get(0), "plugin_slots")?,
            })
        },
    ),
    (
        "SELECT tenant, slot, key, value FROM plugin_kv ORDER BY tenant, slot, key",
        |r| {
            Ok(DumpRecord::PluginKv {
                tenant: r.get(0),
                slot: r.get(1),
                key: r.get(2),
                value: r.get(3),
            })
        },
    ),
    (
        "SELECT domain, local, id, with_jid, with_resource, outgoing, origin_id, stanza \
         FROM archive ORDER BY domain, local, id",
        |r| {
            Ok(DumpRecord::Archived {
                domain: r.get(0),
                local: r.get(1),
                message: heliograph_storage::ArchivedMessage {
                    id: heliograph_storage::ArchiveId(to_u64(r.get(2))),
                    with: r.get(3),
                    with_resource: r.get(4),
                    outgoing: r.get(5),
                    origin_id: r.get(6),
                    stanza: r.get(7),
                },
            })
        },
    ),
    (
        "SELECT domain, local, prefs::text FROM archive_prefs ORDER BY domain, local",
        |r| {
            Ok(DumpRecord::ArchivePrefs {
                domain: r.get(0),
                local: r.get(1),
                prefs: parse(r.get(2), "archive_prefs")?,
            })
        },
    ),
    (
        "SELECT domain, local, kind, value FROM account_data ORDER BY domain, local, kind",
        |r| {
            Ok(DumpRecord::AccountData {
                domain: r.get(0),
                local: r.get(1),
                data_kind: r.get(2),
                value: r.get(3),
            })
        },
    ),
    (
        "SELECT domain, local, value::text FROM pep_nodes ORDER BY domain, local, node",
        |r| {
            Ok(DumpRecord::PepNode {
                domain: r.get(0),
                local: r.get(1),
                node: parse(r.get(2), "pep_nodes")?,
            })
        },
    ),
];

/// The statement and parameters that write one record as it is.
/// An insert ready to run: its prepared statement and parameters.
type Insert = (Statement, Vec<Box<dyn ToSql + Sync + Send>>);

/// Runs the batch's inserts pipelined on the transaction's connection (sent in order
/// without waiting for each answer, so offline messages keep their order), and empties it.
async fn insert_batch(tx: &Transaction<'_>, batch: &mut Vec<Insert>) -> Res<()> {
    let runs = batch.iter().map(|(st, params)| async move {
        let params: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        tx.execute(st, &params).await
    });
    futures_util::future::try_join_all(runs).await?;
    batch.clear();
    Ok(())
}

fn insert(record: &DumpRecord) -> StorageResult<(&'static str, Vec<Box<dyn ToSql + Sync + Send>>)> {
    fn b<T: ToSql + Sync + Send + 'static>(v: T) -> Box<dyn ToSql + Sync + Send> {
        Box::new(v)
    }
    Ok(match record.clone() {
        DumpRecord::User {
            domain,
            local,
            credentials,
        } => (
            "INSERT INTO users (domain, local, credentials) VALUES ($1, $2, CAST($3::text AS jsonb))",
            vec![b(domain), b(local), b(json(&credentials)?)],
        ),
        DumpRecord::RosterVersion {
            domain,
            local,
            version,
        } => (
            "INSERT INTO roster_versions (domain, local, version) VALUES ($1, $2, $3)",
            vec![b(domain), b(local), b(to_i64(version))],
        ),
        DumpRecord::RosterItem {
            domain,
            local,
            item,
        } => (
            "INSERT INTO roster_items (domain, local, contact, item) \
             VALUES ($1, $2, $3, CAST($4::text AS jsonb))",
            vec![b(domain), b(local), b(item.jid.clone()), b(json(&item)?)],
        ),
        DumpRecord::Offline {
            domain,
            local,
            message,
        } => (
            "INSERT INTO offline_messages (domain, local, stanza, stamp_ms) VALUES ($1, $2, $3, $4)",
            vec![
                b(domain),
                b(local),
                b(message.stanza),
                b(to_i64(message.stamp_ms)),
            ],
        ),
        DumpRecord::Block { domain, local, jid } => (
            "INSERT INTO blocks (domain, local, jid) VALUES ($1, $2, $3)",
            vec![b(domain), b(local), b(jid)],
        ),
        DumpRecord::Tenant { record } => (
            "INSERT INTO tenants (name, record) VALUES ($1, CAST($2::text AS jsonb))",
            vec![b(record.name.clone()), b(json(&record)?)],
        ),
        DumpRecord::Room { domain, room } => (
            "INSERT INTO muc_rooms (domain, name, room) VALUES ($1, $2, CAST($3::text AS jsonb))",
            vec![b(domain), b(room.name.clone()), b(json(&room)?)],
        ),
        DumpRecord::RoomLog {
            domain,
            room,
            number,
            entry,
        } => (
            "INSERT INTO muc_log (domain, room, number, entry) \
             VALUES ($1, $2, $3, CAST($4::text AS jsonb))",
            vec![b(domain), b(room), b(to_i64(number)), b(json(&entry)?)],
        ),
        DumpRecord::SigningKey { tenant, key } => (
            "INSERT INTO token_keys (tenant, key) VALUES ($1, $2)",
            vec![b(tenant), b(key)],
        ),
        DumpRecord::RevocationSeq { domain, local, seq } => (
            "INSERT INTO token_revocations (domain, local, seq) VALUES ($1, $2, $3)",
            vec![b(domain), b(local), b(to_i64(seq))],
        ),
        DumpRecord::Refresh {
            domain,
            local,
            record,
        } => (
            "INSERT INTO refresh_tokens (domain, local, id, record) \
             VALUES ($1, $2, $3, CAST($4::text AS jsonb))",
            vec![b(domain), b(local), b(record.id.clone()), b(json(&record)?)],
        ),
        DumpRecord::Fast {
            domain,
            local,
            client,
            slots,
        } => (
            "INSERT INTO fast_tokens (domain, local, client, slots) \
             VALUES ($1, $2, $3, CAST($4::text AS jsonb))",
            vec![b(domain), b(local), b(client), b(json(&slots)?)],
        ),
        DumpRecord::PluginBlob { sha256, wasm } => (
            "INSERT INTO plugin_blobs (sha256, wasm) VALUES ($1, $2)",
            vec![b(sha256), b(wasm)],
        ),
        DumpRecord::PluginSlot { record } => (
            "INSERT INTO plugin_slots (tenant, slot, record) VALUES ($1, $2, CAST($3::text AS jsonb))",
            vec![
                b(record.tenant.clone()),
                b(record.slot.clone()),
                b(json(&record)?),
            ],
        ),
        DumpRecord::PluginKv {
            tenant,
            slot,
            key,
            value,
        } => (
            "INSERT INTO plugin_kv (tenant, slot, key, value) VALUES ($1, $2, $3, $4)",
            vec![b(tenant), b(slot), b(key), b(value)],
        ),
        DumpRecord::Archived {
            domain,
            local,
            message,
        } => (
            "INSERT INTO archive \
               (domain, local, id, with_jid, with_resource, outgoing, origin_id, stanza) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                b(domain),
                b(local),
                b(i64::try_from(message.id.0).map_err(|_| {
                    StorageError::Backend(format!("archive id {} is out of range", message.id))
                })?),
                b(message.with),
                b(message.with_resource),
                b(message.outgoing),
                b(message.origin_id),
                b(message.stanza),
            ],
        ),
        DumpRecord::ArchivePrefs {
            domain,
            local,
            prefs,
        } => (
            "INSERT INTO archive_prefs (domain, local, prefs) \
             VALUES ($1, $2, CAST($3::text AS jsonb))",
            vec![b(domain), b(local), b(json(&prefs)?)],
        ),
        DumpRecord::AccountData {
            domain,
            local,
            data_kind,
            value,
        } => (
            "INSERT INTO account_data (domain, local, kind, value) VALUES ($1, $2, $3, $4)",
            vec![b(domain), b(local), b(data_kind), b(value)],
        ),
        DumpRecord::PepNode {
            domain,
            local,
            node,
        } => (
            "INSERT INTO pep_nodes (domain, local, node, value) \
             VALUES ($1, $2, $3, CAST($4::text AS jsonb))",
            vec![b(domain), b(local), b(node.name.clone()), b(json(&node)?)],
        ),
    })
}

/// The record's key parts, checked like every other write checks them.
fn check_keys(record: &DumpRecord) -> StorageResult<()> {
    use heliograph_storage::key_part;
    let account = |d: &str, l: &str| -> StorageResult<()> {
        key_part(d, "domain")?;
        key_part(l, "localpart")?;
        Ok(())
    };
    match record {
        DumpRecord::User { domain, local, .. }
        | DumpRecord::RosterVersion { domain, local, .. }
        | DumpRecord::Offline { domain, local, .. }
        | DumpRecord::RevocationSeq { domain, local, .. }
        | DumpRecord::Refresh { domain, local, .. }
        | DumpRecord::Fast { domain, local, .. }
        | DumpRecord::Archived { domain, local, .. }
        | DumpRecord::ArchivePrefs { domain, local, .. } => account(domain, local),
        DumpRecord::AccountData {
            domain,
            local,
            data_kind,
            ..
        } => {
            account(domain, local)?;
            key_part(data_kind, "account data kind").map(drop)
        }
        DumpRecord::PepNode {
            domain,
            local,
            node,
        } => {
            account(domain, local)?;
            key_part(&node.name, "PEP node").map(drop)
        }
        DumpRecord::RosterItem {
            domain,
            local,
            item,
        } => {
            account(domain, local)?;
            key_part(&item.jid, "JID").map(drop)
        }
        DumpRecord::Block { domain, local, jid } => {
            account(domain, local)?;
            key_part(jid, "JID").map(drop)
        }
        DumpRecord::Tenant { record } => key_part(&record.name, "tenant").map(drop),
        DumpRecord::Room { domain, room } => {
            key_part(domain, "domain")?;
            key_part(&room.name, "room name").map(drop)
        }
        DumpRecord::RoomLog { domain, room, .. } => {
            key_part(domain, "domain")?;
            key_part(room, "room name").map(drop)
        }
        DumpRecord::SigningKey { tenant, .. } => key_part(tenant, "tenant").map(drop),
        DumpRecord::PluginBlob { sha256, .. } => key_part(sha256, "blob hash").map(drop),
        DumpRecord::PluginSlot { record } => {
            key_part(&record.tenant, "tenant")?;
            key_part(&record.slot, "plugin slot").map(drop)
        }
        DumpRecord::PluginKv { tenant, slot, .. } => {
            key_part(tenant, "tenant")?;
            key_part(slot, "plugin slot").map(drop)
        }
    }
}

fn storage_error(what: &str) -> impl Fn(Fail) -> StorageError + '_ {
    move |e| e.into_storage(what)
}

impl Backend for PgStore {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn reachable(&self) -> bool {
        self.is_reachable()
    }

    fn is_empty(&self) -> StorageResult<bool> {
        let sql = format!(
            "SELECT {}",
            TABLES
                .iter()
                .map(|t| format!("NOT EXISTS (SELECT 1 FROM {t})"))
                .collect::<Vec<_>>()
                .join(" AND ")
        );
        self.call("checking for data", move |c| async move {
            Ok(c.query_one(&sql, &[]).await?.get(0))
        })
    }

    fn export(&self, sink: &mut Sink<'_>) -> StorageResult<u64> {
        let pool = self.pool().clone();
        self.bridge()
            .block_on(async move {
                let mut client = pool.get().await.map_err(Fail::pool)?;
                let tx = client
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                let mut n = 0u64;
                for (sql, to_record) in EXPORTS {
                    let portal = tx.bind(sql, &[]).await?;
                    loop {
                        let rows = tx.query_portal(&portal, BATCH).await?;
                        for row in &rows {
                            sink(to_record(row)?)?;
                            n += 1;
                        }
                        if rows.len() < BATCH as usize {
                            break;
                        }
                    }
                }
                tx.commit().await?;
                Ok(n)
            })?
            .map_err(storage_error("exporting"))
    }

    fn import(
        &self,
        records: &mut dyn Iterator<Item = StorageResult<DumpRecord>>,
    ) -> StorageResult<u64> {
        let pool = self.pool().clone();
        self.bridge()
            .block_on(async move {
                let mut client = pool.get().await.map_err(Fail::pool)?;
                let tx = client.transaction().await?;
                let mut n = 0u64;
                let mut batch = Vec::with_capacity(IMPORT_BATCH);
                for record in records {
                    let record = record?;
                    check_keys(&record)?;
                    let (sql, params) = insert(&record)?;
                    batch.push((tx.prepare_cached(sql).await?, params));
                    n += 1;
                    if batch.len() == IMPORT_BATCH {
                        insert_batch(&tx, &mut batch).await?;
                    }
                }
                insert_batch(&tx, &mut batch).await?;
                tx.execute(
                    "INSERT INTO plugin_kv_usage (tenant, slot, bytes) \
                     SELECT tenant, slot, sum(octet_length(key) + octet_length(value)) \
                     FROM plugin_kv GROUP BY tenant, slot",
                    &[],
                )
                .await?;
                tx.commit().await?;
                Ok(n)
            })?
            .map_err(storage_error("importing"))
    }
}
