//! Test support: an in-memory [`Storage`], a cheap credential derivation, and an admin API
//! served on an ephemeral loopback port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{AdminApi, CredentialDeriver};
use crate::Server;
use crate::config::Config;
use crate::sasl::{ScramKeys, StoredCredentials};
use crate::storage::*;
use crate::tenants::TenantRecord;

/// The operator token of test servers.
pub const TOKEN: &str = "test-operator-token";

/// Accounts in a map; every other store is empty.
#[derive(Default)]
pub struct MemUsers {
    pub accounts: Mutex<BTreeMap<Account, StoredCredentials>>,
    /// When set, every call fails with a backend error.
    pub broken: std::sync::atomic::AtomicBool,
}

impl MemUsers {
    fn check(&self) -> StorageResult<()> {
        if self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StorageError::Backend("simulated failure".into()));
        }
        Ok(())
    }
}

impl UserStore for MemUsers {
    fn create_user(&self, account: &Account, creds: &StoredCredentials) -> StorageResult<()> {
        self.check()?;
        let mut m = self.accounts.lock().unwrap();
        if m.contains_key(account) {
            return Err(StorageError::AlreadyExists);
        }
        m.insert(account.clone(), creds.clone());
        Ok(())
    }
    fn set_credentials(&self, account: &Account, creds: &StoredCredentials) -> StorageResult<()> {
        self.check()?;
        match self.accounts.lock().unwrap().get_mut(account) {
            Some(c) => {
                *c = creds.clone();
                Ok(())
            }
            None => Err(StorageError::NotFound),
        }
    }
    fn credentials(&self, account: &Account) -> StorageResult<Option<StoredCredentials>> {
        self.check()?;
        Ok(self.accounts.lock().unwrap().get(account).cloned())
    }
    fn delete_user(&self, account: &Account) -> StorageResult<()> {
        self.check()?;
        self.accounts
            .lock()
            .unwrap()
            .remove(account)
            .map(|_| ())
            .ok_or(StorageError::NotFound)
    }
    fn list_users(&self, domain: &str) -> StorageResult<Vec<String>> {
        self.check()?;
        let m = self.accounts.lock().unwrap();
        Ok(m.keys()
            .filter(|a| a.domain == domain)
            .map(|a| a.local.clone())
            .collect())
    }
    fn count_users(&self, domain: &str) -> StorageResult<usize> {
        Ok(self.list_users(domain)?.len())
    }
    fn purge_domain(&self, domain: &str) -> StorageResult<()> {
        self.check()?;
        self.accounts
            .lock()
            .unwrap()
            .retain(|a, _| a.domain != domain);
        Ok(())
    }
}

struct NoRosters;
impl RosterStore for NoRosters {
    fn roster(&self, _: &Account) -> StorageResult<Roster> {
        Ok(Roster::default())
    }
    fn item(&self, _: &Account, _: &str) -> StorageResult<Option<RosterItem>> {
        Ok(None)
    }
    fn put_item(&self, _: &Account, _: &RosterItem) -> StorageResult<u64> {
        Ok(0)
    }
    fn remove_item(&self, _: &Account, _: &str) -> StorageResult<u64> {
        Ok(0)
    }
}

struct NoOffline;
impl OfflineStore for NoOffline {
    fn push(&self, _: &Account, _: &OfflineMessage) -> StorageResult<usize> {
        Ok(0)
    }
    fn take_all(&self, _: &Account) -> StorageResult<Vec<OfflineMessage>> {
        Ok(Vec::new())
    }
    fn peek(&self, _: &Account, _: Option<u64>, _: usize) -> StorageResult<Vec<QueuedMessage>> {
        Ok(Vec::new())
    }
    fn remove(&self, _: &Account, _: &[u64]) -> StorageResult<usize> {
        Ok(0)
    }
    fn count(&self, _: &Account) -> StorageResult<usize> {
        Ok(0)
    }
}

struct NoBlocks;
impl BlockStore for NoBlocks {
    fn blocked(&self, _: &Account) -> StorageResult<Vec<String>> {
        Ok(Vec::new())
    }
    fn block(&self, _: &Account, _: &[String]) -> StorageResult<Vec<String>> {
        Ok(Vec::new())
    }
    fn unblock(&self, _: &Account, _: &[String]) -> StorageResult<Vec<String>> {
        Ok(Vec::new())
    }
    fn unblock_all(&self, _: &Account) -> StorageResult<Vec<String>> {
        Ok(Vec::new())
    }
}

/// Tenant records in memory.
#[derive(Default)]
pub struct MemTenants(std::sync::Mutex<std::collections::BTreeMap<String, TenantRecord>>);
impl TenantStore for MemTenants {
    fn tenant_records(&self) -> StorageResult<Vec<TenantRecord>> {
        Ok(self.0.lock().unwrap().values().cloned().collect())
    }
    fn tenant_record(&self, name: &str) -> StorageResult<Option<TenantRecord>> {
        Ok(self.0.lock().unwrap().get(name).cloned())
    }
    fn put_tenant_record(&self, record: &TenantRecord) -> StorageResult<()> {
        self.0
            .lock()
            .unwrap()
            .insert(record.name.clone(), record.clone());
        Ok(())
    }
    fn delete_tenant_record(&self, name: &str) -> StorageResult<()> {
        self.0.lock().unwrap().remove(name);
        Ok(())
    }
}

/// Fake credentials that remember the password in `stored_key`, so tests can tell which
/// password is set. Refuses passwords containing U+0007 like SASLprep would.
pub fn fake_deriver() -> CredentialDeriver {
    Arc::new(|password: &str, iterations: u32| {
        if password.contains('\u{7}') {
            return Err(crate::sasl::SaslFailure::IncorrectEncoding);
        }
        let keys = |salt: &[u8]| ScramKeys {
            salt: salt.to_vec(),
            iterations,
            stored_key: password.as_bytes().to_vec(),
            server_key: Vec::new(),
        };
        Ok(StoredCredentials {
            sha1: keys(b"s1"),
            sha256: keys(b"s256"),
        })
    })
}

/// A running test admin API.
pub struct TestApi {
    pub addr: SocketAddr,
    pub users: Arc<MemUsers>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApi {
    /// Serves domains `example.com` and `other.test` on 127.0.0.1:0.
    pub async fn start() -> TestApi {
        let users = Arc::new(MemUsers::default());
        let storage = Storage {
            users: users.clone(),
            rosters: Arc::new(NoRosters),
            offline: Arc::new(NoOffline),
            archive: Arc::new(crate::storage::MemArchiveStore::default()),
            account_data: Arc::new(crate::storage::MemAccountDataStore::default()),
            pep: Arc::new(crate::storage::MemPepStore::default()),
            blocks: Arc::new(NoBlocks),
            tenants: Arc::new(MemTenants::default()),
            muc: Arc::new(crate::storage::MemMucStore::default()),
            plugins: Arc::new(crate::storage::MemPluginStore::default()),
            tokens: Arc::new(crate::storage::MemTokenStore::default()),
            flush: Arc::new(|| Ok(())),
            backend: Arc::new(crate::storage::MemBackend),
        };
        let mut config = Config::default();
        config.general.hosts = vec!["example.com".into(), "other.test".into()];
        let server = Arc::new(Server::new(Arc::new(config), storage, TOKEN.into()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let api = AdminApi::new(server).with_credential_deriver(fake_deriver());
        let task = tokio::spawn(api.serve(listener, async move {
            let _ = rx.await;
        }));
        TestApi {
            addr,
            users,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Base URL, e.g. `http://127.0.0.1:40000`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The password a fake-derived account currently has.
    pub fn password_of(&self, local: &str, domain: &str) -> Option<String> {
        let m = self.users.accounts.lock().unwrap();
        m.get(&Account::new(local, domain))
            .map(|c| String::from_utf8(c.sha256.stored_key.clone()).unwrap())
    }

    /// Signals shutdown and waits for the server to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}
