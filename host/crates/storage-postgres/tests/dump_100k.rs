//! A deployment of 100,000 accounts, each with credentials, a versioned roster and an
//! offline message, moved from sled to PostgreSQL and back with the streaming dump
//! (`heliograph storage export` / `import` use the same two functions): the export of
//! every store along the way is equal to the first, record for record.
//!
//! Needs PostgreSQL like the other tests of this crate (skips without
//! `HELIOGRAPH_TEST_POSTGRES_URL` unless `HELIOGRAPH_REQUIRE_POSTGRES=1`).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use heliograph_storage::credentials::ScramKeys;
use heliograph_storage::dump::{self, FORMAT, VERSION};
use heliograph_storage::{
    DumpRecord, OfflineMessage, RosterItem, Storage, StoredCredentials, Subscription,
};
use heliograph_storage_postgres::testing::TestDb;
use heliograph_storage_postgres::{Schema, open};

const ACCOUNTS: usize = 100_000;
const DOMAIN: &str = "big.test";

fn credentials(i: usize) -> StoredCredentials {
    let b = (i % 251) as u8;
    let keys = |len| ScramKeys {
        salt: vec![b; 16],
        iterations: 4096,
        stored_key: vec![b; len],
        server_key: vec![b.wrapping_add(1); len],
    };
    StoredCredentials {
        sha1: keys(20),
        sha256: keys(32),
    }
}

/// Writes the deployment as a dump: per account its user, roster version, one contact
/// (the next account) and one offline message.
fn write_deployment(path: &Path) -> u64 {
    let mut out = BufWriter::new(File::create(path).unwrap());
    writeln!(
        out,
        "{{\"format\":\"{FORMAT}\",\"version\":{VERSION},\"backend\":\"generated\"}}"
    )
    .unwrap();
    let mut records = 0u64;
    let mut put = |r: DumpRecord| {
        serde_json::to_writer(&mut out, &r).unwrap();
        out.write_all(b"\n").unwrap();
        records += 1;
    };
    for i in 0..ACCOUNTS {
        let local = format!("user{i}");
        let account = || (DOMAIN.to_string(), local.clone());
        let (domain, local_) = account();
        put(DumpRecord::User {
            domain,
            local: local_,
            credentials: credentials(i),
        });
        let (domain, local_) = account();
        put(DumpRecord::RosterVersion {
            domain,
            local: local_,
            version: 1 + (i % 7) as u64,
        });
        let (domain, local_) = account();
        put(DumpRecord::RosterItem {
            domain,
            local: local_,
            item: RosterItem {
                jid: format!("user{}@{DOMAIN}", (i + 1) % ACCOUNTS),
                name: Some(format!("Contact {i}")),
                subscription: Subscription::Both,
                groups: vec!["Friends".into()],
                ..Default::default()
            },
        });
        let (domain, local_) = account();
        put(DumpRecord::Offline {
            domain,
            local: local_,
            message: OfflineMessage {
                stanza: format!(
                    "<message xmlns='jabber:client' from='user{}@{DOMAIN}/r' to='{local}@{DOMAIN}' type='chat'><body>hello {i}</body></message>",
                    (i + 1) % ACCOUNTS
                ),
                stamp_ms: 1_700_000_000_000 + i as u64,
            },
        });
    }
    out.write_all(format!("{{\"end\":{{\"records\":{records}}}}}\n").as_bytes())
        .unwrap();
    out.flush().unwrap();
    records
}

fn import(storage: &Storage, path: &Path) -> u64 {
    let mut input = BufReader::new(File::open(path).unwrap());
    dump::import(storage, &mut input).unwrap()
}

fn export(storage: &Storage, path: &Path) -> u64 {
    let mut out = BufWriter::new(File::create(path).unwrap());
    dump::export(storage, &mut out).unwrap()
}

/// Compares two dumps line by line, past their headers (which name the backend).
fn assert_same_records(a: &Path, b: &Path) {
    let lines = |p: &Path| BufReader::new(File::open(p).unwrap()).lines().skip(1);
    let (mut la, mut lb) = (lines(a), lines(b));
    let mut n = 0u64;
    loop {
        match (la.next(), lb.next()) {
            (None, None) => return,
            (Some(x), Some(y)) => {
                let (x, y) = (x.unwrap(), y.unwrap());
                assert_eq!(x, y, "record {n} of {} and {}", a.display(), b.display());
            }
            (x, y) => panic!(
                "{} and {} differ in length at record {n}: {x:?} / {y:?}",
                a.display(),
                b.display()
            ),
        }
        n += 1;
    }
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let out = f();
    eprintln!("{what}: {:.1?}", started.elapsed());
    out
}

#[test]
fn a_100k_account_deployment_moves_from_sled_to_postgres_and_back_equal() {
    let Some(db) = TestDb::create() else { return };
    let dir = tempfile::Builder::new()
        .prefix("heliograph-it-dump-")
        .tempdir()
        .unwrap();
    let generated = dir.path().join("generated.jsonl");
    let records = write_deployment(&generated);
    assert_eq!(records, 4 * ACCOUNTS as u64);

    // The sled deployment.
    let sled = Storage::open_sled(&dir.path().join("sled")).unwrap();
    assert_eq!(
        timed("import into sled", || import(&sled, &generated)),
        records
    );
    let from_sled = dir.path().join("from-sled.jsonl");
    assert_eq!(
        timed("export from sled", || export(&sled, &from_sled)),
        records
    );
    assert_eq!(sled.users.count_users(DOMAIN).unwrap(), ACCOUNTS);
    drop(sled);

    // Into PostgreSQL, and out again.
    let pg = open(&db.settings(), Schema::Migrate).unwrap();
    assert_eq!(
        timed("import into postgres", || import(&pg, &from_sled)),
        records
    );
    let from_pg = dir.path().join("from-pg.jsonl");
    assert_eq!(
        timed("export from postgres", || export(&pg, &from_pg)),
        records
    );
    assert_same_records(&from_sled, &from_pg);
    // The data is live, not just stored: a login's read, a roster fetch, an offline pop.
    let alice = heliograph_storage::Account::new("user4242", DOMAIN);
    assert_eq!(
        pg.users.credentials(&alice).unwrap(),
        Some(credentials(4242))
    );
    let roster = pg.rosters.roster(&alice).unwrap();
    assert_eq!(roster.version, 1 + (4242 % 7) as u64);
    assert_eq!(roster.items.len(), 1);
    assert_eq!(pg.offline.count(&alice).unwrap(), 1);

    // And back into a fresh sled data dir.
    let back = Storage::open_sled(&dir.path().join("sled-back")).unwrap();
    assert_eq!(
        timed("import into sled again", || import(&back, &from_pg)),
        records
    );
    let again = dir.path().join("again.jsonl");
    assert_eq!(export(&back, &again), records);
    assert_same_records(&from_sled, &again);
}
