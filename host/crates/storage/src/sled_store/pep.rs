//! [`PepStore`] on sled: `pep` maps `domain \0 local \0 node` to the JSON node with its
//! items; each write replaces the whole node and flushes.

use super::{Context, SledStore, decode, encode, keys, scan_keys};
use crate::pep::{PepNode, PepStore};
use crate::{Account, StorageResult};

impl PepStore for SledStore {
    fn node_names(&self, owner: &Account) -> StorageResult<Vec<String>> {
        let prefix = keys::account_prefix(owner)?;
        scan_keys(&self.pep, &prefix)?
            .iter()
            .map(|key| keys::suffix(key, &prefix))
            .collect()
    }

    fn node(&self, owner: &Account, name: &str) -> StorageResult<Option<PepNode>> {
        let key = keys::jid_key(owner, name)?;
        let value = self.pep.get(&key).context("reading a PEP node")?;
        value.map(|bytes| decode(&key, &bytes)).transpose()
    }

    fn put_node(&self, owner: &Account, node: &PepNode) -> StorageResult<()> {
        let key = keys::jid_key(owner, &node.name)?;
        self.pep
            .insert(key, encode(node)?)
            .context("storing a PEP node")?;
        self.flush()
    }

    fn delete_node(&self, owner: &Account, name: &str) -> StorageResult<bool> {
        let key = keys::jid_key(owner, name)?;
        let existed = self
            .pep
            .remove(key)
            .context("deleting a PEP node")?
            .is_some();
        self.flush()?;
        Ok(existed)
    }
}
