//! Storage calls on sled and on PostgreSQL, in the same run: what a login reads (an
//! account's credentials), a roster fetch (20 items), an offline push followed by the pop
//! at the next login, a page of 50 from a room log of 100,000 messages at a random
//! place, and XEP-0313 archive pages of 50 from an account's archive of 100,000 messages
//! (over 40 conversations): after a random message, and in one conversation (2,500
//! messages) before a random one of its messages. Each archive page also counts the
//! whole result set (RSM `count`).
//!
//! `HELIOGRAPH_TEST_POSTGRES_URL=... cargo bench -p heliograph-storage-postgres --bench storage`
//! (tests/postgres.sh starts a private server); without the variable only sled runs.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use heliograph_storage::credentials::{ScramKeys, StoredCredentials};
use heliograph_storage::{
    Account, ArchiveId, ArchiveQuery, ArchivedMessage, OfflineMessage, Page, PageAt, RoomLogEntry,
    RosterItem, Storage,
};
use heliograph_storage_postgres::testing::TestDb;
use heliograph_storage_postgres::{Schema, open};

const DOMAIN: &str = "bench.test";
const ACCOUNTS: usize = 1000;
const LOG: u64 = 100_000;
const PAGE: usize = 50;
/// Messages in the benchmarked account's archive, and its conversations.
const ARCHIVE: u64 = 100_000;
const PARTIES: u64 = 40;
/// The first archive id: 2026-01-01, one message per millisecond after it.
const ARCHIVE_START: u64 = 1_767_225_600_000_000;

fn archive_id(k: u64) -> ArchiveId {
    ArchiveId(ARCHIVE_START + k * 1000)
}

fn party(k: u64) -> String {
    format!("contact{}@{DOMAIN}", k % PARTIES)
}

fn credentials() -> StoredCredentials {
    let keys = |len| ScramKeys {
        salt: vec![7; 16],
        iterations: 4096,
        stored_key: vec![1; len],
        server_key: vec![2; len],
    };
    StoredCredentials {
        sha1: keys(20),
        sha256: keys(32),
    }
}

fn account(i: usize) -> Account {
    Account::new(format!("user{i}"), DOMAIN)
}

/// Accounts with 20 roster items each, and one room with a 100,000-message log.
fn populate(s: &Storage) {
    for i in 0..ACCOUNTS {
        s.users.create_user(&account(i), &credentials()).unwrap();
    }
    for i in 0..50 {
        for k in 0..20 {
            let item = RosterItem {
                jid: format!("contact{k}@{DOMAIN}"),
                groups: vec!["Friends".into()],
                ..Default::default()
            };
            s.rosters.put_item(&account(i), &item).unwrap();
        }
    }
    let mut n = 0;
    while n < LOG {
        let batch: Vec<RoomLogEntry> = (n..n + 1000)
            .map(|k| RoomLogEntry {
                at: "2026-01-01T00:00:00.000Z".into(),
                nick: format!("nick{}", k % 40),
                jid: format!("user{}@{DOMAIN}", k % 40),
                subject: false,
                text: format!("message number {k} in the standup room"),
            })
            .collect();
        s.muc
            .append_log(DOMAIN, "standup", &batch, LOG as usize)
            .unwrap();
        n += 1000;
    }
    let owner = account(0);
    let mut k = 0;
    while k < ARCHIVE {
        let batch: Vec<(Account, ArchivedMessage)> = (k..k + 1000)
            .map(|k| {
                let m = ArchivedMessage {
                    id: archive_id(k),
                    with: party(k),
                    with_resource: None,
                    outgoing: k % 2 == 0,
                    origin_id: Some(format!("origin-{k}")),
                    stanza: format!(
                        "<message xmlns='jabber:client' type='chat' to='{}'>\
                         <body>archived message number {k}</body></message>",
                        party(k)
                    ),
                };
                (owner.clone(), m)
            })
            .collect();
        s.archive.append(&batch).unwrap();
        k += 1000;
    }
}

fn backends() -> Vec<(&'static str, Storage, Box<dyn std::any::Any>)> {
    let dir = tempfile::tempdir().unwrap();
    let sled = Storage::open_sled(&dir.path().join("db")).unwrap();
    let mut out: Vec<(&'static str, Storage, Box<dyn std::any::Any>)> =
        vec![("sled", sled, Box::new(dir))];
    if std::env::var(heliograph_storage_postgres::testing::URL_VAR).is_ok()
        && let Some(db) = TestDb::create()
    {
        let pg = open(&db.settings(), Schema::Migrate).unwrap();
        out.push(("postgres", pg, Box::new(db)));
    }
    for (name, s, _) in &out {
        let t = std::time::Instant::now();
        populate(s);
        eprintln!("{name}: populated in {:.1?}", t.elapsed());
    }
    out
}

fn storage(c: &mut Criterion) {
    let stores = backends();
    let mut group = c.benchmark_group("storage");
    for (name, s, _) in &stores {
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("login_credentials", name), |b| {
            b.iter(|| {
                i = (i + 1) % ACCOUNTS;
                black_box(s.users.credentials(&account(i)).unwrap())
            })
        });
        group.bench_function(BenchmarkId::new("roster_fetch_20", name), |b| {
            b.iter(|| {
                i = (i + 1) % 50;
                black_box(s.rosters.roster(&account(i)).unwrap())
            })
        });
        let msg = OfflineMessage {
            stanza: "<message xmlns='jabber:client' type='chat'><body>hi</body></message>".into(),
            stamp_ms: 1,
        };
        group.bench_function(BenchmarkId::new("offline_push_then_pop", name), |b| {
            b.iter(|| {
                i = (i + 1) % ACCOUNTS;
                s.offline.push(&account(i), &msg).unwrap();
                black_box(s.offline.take_all(&account(i)).unwrap())
            })
        });
        let mut after = 0u64;
        group.bench_function(BenchmarkId::new("room_log_page_50_of_100k", name), |b| {
            b.iter(|| {
                // A different place each time: 7919 is prime, so the pages walk the log.
                after = (after + 7919) % (LOG - PAGE as u64);
                let page = s.muc.room_log(DOMAIN, "standup", after, PAGE).unwrap();
                assert_eq!(page.len(), PAGE);
                black_box(page)
            })
        });
        let owner = account(0);
        let mut k = 0u64;
        group.bench_function(BenchmarkId::new("archive_page_50_of_100k", name), |b| {
            b.iter(|| {
                k = (k + 7919) % (ARCHIVE - PAGE as u64);
                let q = ArchiveQuery {
                    page: Page {
                        max: PAGE,
                        at: PageAt::After(archive_id(k)),
                    },
                    ..Default::default()
                };
                let page = s.archive.query(&owner, &q).unwrap();
                assert_eq!((page.messages.len(), page.count), (PAGE, ARCHIVE as usize));
                black_box(page)
            })
        });
        group.bench_function(
            BenchmarkId::new("archive_with_page_50_of_100k", name),
            |b| {
                b.iter(|| {
                    // A message of contact0's conversation past its first page.
                    k = (k + 7919) % (ARCHIVE - PARTIES * PAGE as u64);
                    let anchor = (k / PARTIES) * PARTIES + PARTIES * PAGE as u64;
                    let q = ArchiveQuery {
                        with: Some(party(0)),
                        page: Page {
                            max: PAGE,
                            at: PageAt::Before(archive_id(anchor)),
                        },
                        ..Default::default()
                    };
                    let page = s.archive.query(&owner, &q).unwrap();
                    assert_eq!(
                        (page.messages.len(), page.count),
                        (PAGE, (ARCHIVE / PARTIES) as usize)
                    );
                    black_box(page)
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, storage);
criterion_main!(benches);
