//! [`PepStore`] on PostgreSQL: `pep_nodes`, one row per account and node holding the
//! node as JSON. Deleting the account deletes its rows (`users.rs`).

use heliograph_storage::{Account, PepNode, PepStore, StorageResult, key_part};

use super::{PgStore, account, json, parse};

impl PepStore for PgStore {
    fn node_names(&self, a: &Account) -> StorageResult<Vec<String>> {
        let (d, l) = account(a)?;
        self.call("listing PEP nodes", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT node FROM pep_nodes WHERE domain = $1 AND local = $2 ORDER BY node",
                )
                .await?;
            Ok(c.query(&st, &[&d, &l])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
    }

    fn node(&self, a: &Account, name: &str) -> StorageResult<Option<PepNode>> {
        let (d, l) = account(a)?;
        let name = key_part(name, "PEP node")?.to_string();
        self.call("reading a PEP node", move |c| async move {
            let st = c
                .prepare_cached(
                    "SELECT value::text FROM pep_nodes \
                     WHERE domain = $1 AND local = $2 AND node = $3",
                )
                .await?;
            match c.query_opt(&st, &[&d, &l, &name]).await? {
                Some(row) => Ok(Some(parse(row.get(0), "pep_nodes")?)),
                None => Ok(None),
            }
        })
    }

    fn put_node(&self, a: &Account, node: &PepNode) -> StorageResult<()> {
        let (d, l) = account(a)?;
        let name = key_part(&node.name, "PEP node")?.to_string();
        let value = json(node)?;
        self.call("storing a PEP node", move |c| async move {
            let st = c
                .prepare_cached(
                    "INSERT INTO pep_nodes (domain, local, node, value) \
                     VALUES ($1, $2, $3, CAST($4::text AS jsonb)) \
                     ON CONFLICT (domain, local, node) DO UPDATE SET value = EXCLUDED.value",
                )
                .await?;
            c.execute(&st, &[&d, &l, &name, &value]).await?;
            Ok(())
        })
    }

    fn delete_node(&self, a: &Account, name: &str) -> StorageResult<bool> {
        let (d, l) = account(a)?;
        let name = key_part(name, "PEP node")?.to_string();
        self.call("deleting a PEP node", move |c| async move {
            let st = c
                .prepare_cached(
                    "DELETE FROM pep_nodes WHERE domain = $1 AND local = $2 AND node = $3",
                )
                .await?;
            Ok(c.execute(&st, &[&d, &l, &name]).await? > 0)
        })
    }
}
