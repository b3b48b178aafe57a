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

/// Rows of one query on `db`, from a thread of its own.
fn query_rows(db: &TestDb, sql: &'static str) -> Vec<(String, i64, i64)> {
    let config = admin(db);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            client
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect()
        })
    })
    .join()
    .unwrap()
}

/// Every hot query has an index: with sequential scans made a last resort for the
/// database's sessions, the calls a login, a roster fetch, an offline store and pop, a
/// room load, a room log page, archive pages, a retraction and account data make scan
/// the tables they touch only through indexes (the statistics count each scan; a query
/// with no usable index would still scan sequentially).
#[test]
fn hot_queries_scan_only_through_indexes() {
    let Some(db) = TestDb::create() else { return };
    admin_sql(
        &admin(&db),
        format!("ALTER DATABASE {} SET enable_seqscan = off", db.name),
    )
    .unwrap();
    // Building the tables' indexes scans them sequentially: migrate with a store of its
    // own, closed (its backends report their counts when they exit), wait until those
    // scans are counted, then start counting from zero.
    PgStore::connect(&db.settings())
        .unwrap()
        .migrate(None)
        .unwrap();
    wait_for_scans(&db, |_, seq, _| seq > 0);
    admin_sql(&admin(&db), "SELECT pg_stat_reset()".into()).unwrap();

    let s = open(&db.settings(), Schema::Require).unwrap();
    let alice = Account::new("alice", "a.test");
    let creds = |n: u8| {
        let keys = heliograph_storage::credentials::ScramKeys {
            salt: vec![n; 16],
            iterations: 4096,
            stored_key: vec![n; 32],
            server_key: vec![n; 32],
        };
        heliograph_storage::StoredCredentials {
            sha1: keys.clone(),
            sha256: keys,
        }
    };
    for i in 0..50u8 {
        let a = Account::new(format!("user{i}"), "a.test");
        s.users.create_user(&a, &creds(i)).unwrap();
    }
    s.users.create_user(&alice, &creds(1)).unwrap();
    let room = heliograph_storage::StoredRoom {
        name: "standup".into(),
        subdomain: "conference".into(),
        config: vec![],
        affiliations: vec![],
        subject: None,
    };
    s.muc.put_room("a.test", &room).unwrap();
    let line = heliograph_storage::RoomLogEntry {
        at: "2026-01-01T00:00:00.000Z".into(),
        nick: "n".into(),
        jid: "alice@a.test".into(),
        subject: false,
        text: "hi".into(),
    };

    // The hot path, through the store.
    assert!(s.users.credentials(&alice).unwrap().is_some());
    s.rosters
        .put_item(
            &alice,
            &RosterItem {
                jid: "bob@a.test".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(s.rosters.roster(&alice).unwrap().items.len(), 1);
    let msg = OfflineMessage {
        stanza: "<message/>".into(),
        stamp_ms: 1,
    };
    assert_eq!(s.offline.count(&alice).unwrap(), 0);
    s.offline.push(&alice, &msg).unwrap();
    assert_eq!(s.offline.take_all(&alice).unwrap().len(), 1);
    assert_eq!(s.muc.rooms("a.test").unwrap().len(), 1);
    s.muc
        .append_log("a.test", "standup", &[line.clone(), line], 100)
        .unwrap();
    assert_eq!(s.muc.room_log("a.test", "standup", 1, 50).unwrap().len(), 1);
    // The archive: a batch, a page without and with a conversation filter (anchored
    // both ways), a retraction; and account data.
    let archived = |id: u64, with: &str| heliograph_storage::ArchivedMessage {
        id: heliograph_storage::ArchiveId(id),
        with: with.into(),
        with_resource: None,
        outgoing: true,
        origin_id: Some(format!("o{id}")),
        stanza: "<message/>".into(),
    };
    s.archive
        .append(&[
            (alice.clone(), archived(1000, "bob@a.test")),
            (alice.clone(), archived(2000, "carol@a.test")),
            (alice.clone(), archived(3000, "bob@a.test")),
        ])
        .unwrap();
    let mut q = heliograph_storage::ArchiveQuery::default();
    assert_eq!(s.archive.query(&alice, &q).unwrap().count, 3);
    q.with = Some("bob@a.test".into());
    q.page.at = heliograph_storage::PageAt::Last;
    assert_eq!(s.archive.query(&alice, &q).unwrap().messages.len(), 2);
    q.page.at = heliograph_storage::PageAt::After(heliograph_storage::ArchiveId(1000));
    assert_eq!(s.archive.query(&alice, &q).unwrap().messages.len(), 1);
    assert!(
        s.archive
            .retract(&alice, "bob@a.test", "o3000", true, "gone")
            .unwrap()
    );
    s.account_data.put(&alice, "push", b"x").unwrap();
    assert!(s.account_data.get(&alice, "push").unwrap().is_some());

    // Closed, its backends report their counts: every table's index scans show up, and
    // no table may show a sequential one.
    drop(s);
    let rows = wait_for_scans(&db, |_, seq, idx| idx > 0 || seq > 0);
    for (table, seq, _) in &rows {
        assert_eq!(*seq, 0, "{table} was scanned sequentially: {rows:?}");
    }
}

/// Waits until every hot table's (name, sequential scans, index scans) satisfies `ready`.
fn wait_for_scans(db: &TestDb, ready: impl Fn(&str, i64, i64) -> bool) -> Vec<(String, i64, i64)> {
    const TABLES: &str = "SELECT relname::text, coalesce(seq_scan, 0), coalesce(idx_scan, 0) \
        FROM pg_stat_user_tables WHERE relname IN ('users', 'roster_versions', \
        'roster_items', 'offline_messages', 'muc_rooms', 'muc_log', 'archive', \
        'account_data') ORDER BY relname";
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let rows = query_rows(db, TABLES);
        if rows.len() == 8 && rows.iter().all(|(t, seq, idx)| ready(t, *seq, *idx)) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "the scan counts never got there: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
