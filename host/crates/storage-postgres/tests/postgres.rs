//! The storage conformance suite on a real PostgreSQL (each case in a fresh database, a
//! second pool standing for a second node), and what is PostgreSQL's own: migrations
//! (applied to a database with data, refused when the schema is newer than the build or
//! behind it, applied once when nodes start together) and an unreachable database.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heliograph_storage::conformance::Harness;
use heliograph_storage::{Account, OfflineMessage, RosterItem, Storage, TenantRecord};
use heliograph_storage_postgres::testing::{TestDb, admin_sql};
use heliograph_storage_postgres::{PgError, PgSettings, PgStore, Schema, migrations, open};

fn harness() -> Option<Harness> {
    let db = TestDb::create()?;
    let storage = open(&db.settings(), Schema::Migrate).unwrap();
    let second = open(&db.settings(), Schema::Migrate).unwrap();
    let dbs: Arc<Mutex<Vec<TestDb>>> = Arc::new(Mutex::new(vec![db]));
    let fresh = {
        let dbs = dbs.clone();
        move || {
            let db = TestDb::create().expect("a server, as for the first database");
            let s = open(&db.settings(), Schema::Migrate).unwrap();
            dbs.lock().unwrap().push(db);
            s
        }
    };
    Some(Harness {
        storage,
        second,
        fresh: Box::new(fresh),
        guard: Box::new(dbs),
    })
}

mod conformance {
    heliograph_storage::conformance_tests!(super::harness);
}

fn admin(db: &TestDb) -> tokio_postgres::Config {
    db.url.parse().unwrap()
}

#[test]
fn a_migration_applies_to_a_database_with_data() {
    let Some(db) = TestDb::create() else { return };
    let store = PgStore::connect(&db.settings()).unwrap();
    assert_eq!(store.migrate(Some(1)).unwrap(), vec![1]);
    assert_eq!(store.schema_version().unwrap(), 1);
    // Data in the version-1 tables, written by this build's own code.
    let s = heliograph_storage_postgres::storage(store);
    let alice = Account::new("alice", "a.test");
    s.rosters
        .put_item(
            &alice,
            &RosterItem {
                jid: "bob@a.test".into(),
                ..Default::default()
            },
        )
        .unwrap();
    s.offline
        .push(
            &alice,
            &OfflineMessage {
                stanza: "<message/>".into(),
                stamp_ms: 1,
            },
        )
        .unwrap();
    s.tenants
        .put_tenant_record(&TenantRecord::new("acme"))
        .unwrap();
    // Opening with this build migrates the rest and keeps the data.
    let s = open(&db.settings(), Schema::Migrate).unwrap();
    assert_eq!(s.rosters.roster(&alice).unwrap().version, 1);
    assert_eq!(s.offline.count(&alice).unwrap(), 1);
    assert_eq!(s.tenants.tenant_records().unwrap().len(), 1);
    s.muc
        .put_room(
            "a.test",
            &heliograph_storage::StoredRoom {
                name: "room".into(),
                subdomain: "conference".into(),
                config: vec![],
                affiliations: vec![],
                subject: None,
            },
        )
        .unwrap();
    let store = PgStore::connect(&db.settings()).unwrap();
    assert_eq!(store.schema_version().unwrap(), migrations::latest());
    assert!(
        store.migrate(None).unwrap().is_empty(),
        "nothing left to apply"
    );
}

#[test]
fn a_schema_newer_than_the_build_is_refused() {
    let Some(db) = TestDb::create() else { return };
    open(&db.settings(), Schema::Migrate).unwrap();
    admin_sql(
        &admin(&db),
        "INSERT INTO heliograph_schema (version, name) VALUES (9999, 'from the future')".into(),
    )
    .unwrap();
    for schema in [Schema::Migrate, Schema::Require] {
        match open(&db.settings(), schema) {
            Err(PgError::SchemaTooNew { found: 9999, known }) => {
                assert_eq!(known, migrations::latest())
            }
            Err(e) => panic!("{schema:?}: {e}"),
            Ok(_) => panic!("{schema:?}: opened a schema newer than the build"),
        }
    }
}

#[test]
fn a_schema_behind_the_build_is_refused_unless_migrating() {
    let Some(db) = TestDb::create() else { return };
    match open(&db.settings(), Schema::Require) {
        Err(PgError::SchemaBehind { found: 0, .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened an empty database without migrating"),
    }
    open(&db.settings(), Schema::Migrate).unwrap();
    open(&db.settings(), Schema::Require).unwrap();
}

#[test]
fn nodes_migrating_at_once_apply_each_migration_once() {
    let Some(db) = TestDb::create() else { return };
    let settings = db.settings();
    let nodes: Vec<_> = (0..3)
        .map(|_| {
            let settings = settings.clone();
            std::thread::spawn(move || PgStore::connect(&settings).unwrap().migrate(None).unwrap())
        })
        .collect();
    let mut applied: Vec<i32> = nodes.into_iter().flat_map(|n| n.join().unwrap()).collect();
    applied.sort();
    let all: Vec<i32> = migrations::MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, all);
}

#[test]
fn an_unreachable_database_fails_calls_and_reports_not_reachable() {
    if TestDb::create().is_none() {
        return;
    }
    // A loopback port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = PgSettings::new(format!(
        "host=127.0.0.1 port={port} user=nobody dbname=none sslmode=disable"
    ));
    settings.connect_timeout = Duration::from_secs(1);
    settings.query_timeout = Duration::from_secs(2);
    let store = PgStore::connect(&settings).unwrap();
    let s: Storage = heliograph_storage_postgres::storage(store);
    let err = s
        .users
        .credentials(&Account::new("alice", "a.test"))
        .unwrap_err();
    assert!(
        matches!(err, heliograph_storage::StorageError::Backend(_)),
        "{err}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.backend.reachable() {
        assert!(Instant::now() < deadline, "still reported reachable");
        std::thread::sleep(Duration::from_millis(50));
    }
}
