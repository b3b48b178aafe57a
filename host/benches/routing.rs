//! JID parsing and routing-table lookups.
//!
//! `cargo bench -p heliograph --bench routing`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use heliograph::router::{Router, SessionEntry, Transport, next_session_id};
use heliograph::storage::Account;
use heliograph::xmpp::jid as addressing;

fn jids(c: &mut Criterion) {
    let mut g = c.benchmark_group("jid_parse");
    for (name, s) in [
        ("bare", "juliet@example.com"),
        ("full", "juliet@example.com/balcony-4f2a9c"),
        ("domain", "conference.example.com"),
        ("unicode", "JÜLIET@Example.COM/Balkon ☀"),
    ] {
        g.bench_function(name, |b| b.iter(|| jid::Jid::new(black_box(s)).unwrap()));
    }
    g.bench_function("to_bare_string", |b| {
        b.iter(|| addressing::bare(black_box("juliet@example.com/balcony-4f2a9c")))
    });
    g.finish();
}

fn router_with(accounts: usize) -> (Router, Vec<heliograph::router::MailboxRx>) {
    let router = Router::default();
    let mut rxs = Vec::with_capacity(accounts);
    for i in 0..accounts {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        rxs.push(rx);
        let entry = SessionEntry::new(
            next_session_id(),
            Account::new(format!("user{i}"), "example.com"),
            "load".to_string(),
            Transport::Tcp,
            "127.0.0.1:1".to_string(),
            tx,
        );
        router.register(Arc::new(entry));
    }
    (router, rxs)
}

fn router(c: &mut Criterion) {
    let mut g = c.benchmark_group("router");
    for accounts in [1_000usize, 100_000] {
        let (router, _rxs) = router_with(accounts);
        let probe: Vec<Account> = (0..1024)
            .map(|i| Account::new(format!("user{}", (i * 7919) % accounts), "example.com"))
            .collect();
        let mut k = 0;
        g.bench_with_input(
            BenchmarkId::new("resource_lookup", accounts),
            &accounts,
            |b, _| {
                b.iter(|| {
                    k = (k + 1) % probe.len();
                    black_box(router.resource(&probe[k], "load"))
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("bare_resources", accounts),
            &accounts,
            |b, _| {
                b.iter(|| {
                    k = (k + 1) % probe.len();
                    black_box(router.resources(&probe[k]))
                })
            },
        );
        let missing = Account::new("nobody", "example.com");
        g.bench_with_input(
            BenchmarkId::new("offline_lookup", accounts),
            &accounts,
            |b, _| b.iter(|| black_box(router.is_online(&missing))),
        );
    }
    g.finish();
}

criterion_group!(benches, jids, router);
criterion_main!(benches);
