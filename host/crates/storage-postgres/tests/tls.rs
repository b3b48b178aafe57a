//! TLS to the database where the URL asks for it: a private cluster on loopback TCP that
//! accepts TLS connections only (tests/postgres.sh start-tls, a certificate signed by a CA of its
//! own), reached with `sslmode=require` and that CA as `ca_file`; refused with the
//! system's roots (the certificate is checked, not just encrypted to), and refused in
//! plain text (`sslmode=disable`).
//!
//! Skips like the other tests of this crate without `HELIOGRAPH_TEST_POSTGRES_URL`
//! (unless `HELIOGRAPH_REQUIRE_POSTGRES=1`): that variable is what says PostgreSQL is
//! installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use heliograph_storage::Account;
use heliograph_storage::credentials::{ScramKeys, StoredCredentials};
use heliograph_storage_postgres::testing::TestDb;
use heliograph_storage_postgres::{PgSettings, Schema, open};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../tests/postgres.sh")
}

/// A TLS-only cluster of this test's own, stopped on drop.
struct TlsCluster {
    dir: tempfile::TempDir,
    port: u16,
}

impl TlsCluster {
    fn start() -> Option<TlsCluster> {
        drop(TestDb::create()?);
        let dir = tempfile::Builder::new()
            .prefix("heliograph-it-pgtls-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        // A free loopback port: bound, noted, released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = TlsCluster { dir, port };
        let out = Command::new(script())
            .args([
                "start-tls",
                &cluster.pg().to_string_lossy(),
                &port.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tests/postgres.sh start-tls: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(cluster)
    }

    fn pg(&self) -> PathBuf {
        self.dir.path().join("pg")
    }

    fn settings(&self, sslmode: &str, ca: bool) -> PgSettings {
        let mut s = PgSettings::new(format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode={sslmode}",
            self.port
        ));
        s.connect_timeout = Duration::from_secs(5);
        s.query_timeout = Duration::from_secs(10);
        s.ca_file = ca.then(|| self.pg().join("ca.crt"));
        s
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", &self.pg().to_string_lossy()])
            .output();
    }
}

fn credentials() -> StoredCredentials {
    let keys = |len| ScramKeys {
        salt: vec![3; 16],
        iterations: 4096,
        stored_key: vec![4; len],
        server_key: vec![5; len],
    };
    StoredCredentials {
        sha1: keys(20),
        sha256: keys(32),
    }
}

#[test]
fn tls_is_used_and_checked_where_the_url_asks() {
    let Some(cluster) = TlsCluster::start() else {
        return;
    };
    // TLS with the cluster's CA: works end to end.
    let s = open(&cluster.settings("require", true), Schema::Migrate).unwrap();
    let alice = Account::new("alice", "tls.test");
    s.users.create_user(&alice, &credentials()).unwrap();
    assert_eq!(s.users.credentials(&alice).unwrap(), Some(credentials()));

    // The same server with the system's roots: its certificate is not trusted.
    match open(&cluster.settings("require", false), Schema::Migrate) {
        Err(e) => assert!(e.to_string().contains("certificate"), "{e}"),
        Ok(_) => panic!("a certificate of an unknown CA was accepted with the system's roots"),
    }
    // Plain text: the server takes TLS connections only, so this proves the first was TLS.
    assert!(open(&cluster.settings("disable", false), Schema::Migrate).is_err());
}
