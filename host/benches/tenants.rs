//! Tenant registry costs at 10 and at 10,000 tenants: the per-stanza lookups (domain →
//! tenant, and the isolation check between two domains) and adding one tenant. The
//! lookups must not grow with the number of tenants.
//!
//! `cargo bench -p heliograph --bench tenants`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use heliograph::tenants::registry::{Registry, Tenant};
use heliograph::tenants::spec::TenantSpec;

fn tenant(i: usize) -> Tenant {
    let spec = TenantSpec::with_domains(vec![
        format!("tenant{i}.example"),
        format!("alt{i}.example"),
    ]);
    Tenant::new(format!("t{i}"), spec, false, None, None)
}

fn registry(n: usize) -> Registry {
    Registry::with_tenants((0..n).map(tenant).collect()).expect("distinct domains")
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("tenant_lookup");
    for n in [10usize, 10_000] {
        let reg = registry(n);
        let domains: Vec<String> = (0..64)
            .map(|i| format!("tenant{}.example", (i * 7919) % n))
            .collect();
        group.bench_with_input(BenchmarkId::new("by_domain", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % domains.len();
                black_box(reg.by_domain(black_box(&domains[i])))
            })
        });
        group.bench_with_input(BenchmarkId::new("can_reach", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % domains.len();
                let snap = reg.snapshot();
                let a = snap.by_domain(&domains[i]);
                let z = snap.by_domain(&domains[(i + 1) % domains.len()]);
                black_box(matches!((a, z), (Some(a), Some(z)) if a.can_reach(z)))
            })
        });
    }
    group.finish();
}

fn add_one(c: &mut Criterion) {
    let mut group = c.benchmark_group("tenant_add");
    for n in [10usize, 10_000] {
        let reg = registry(n);
        group.bench_with_input(BenchmarkId::new("upsert_then_remove", n), &n, |b, _| {
            b.iter(|| {
                reg.upsert(tenant(n + 1)).expect("new domains");
                black_box(reg.remove(&format!("t{}", n + 1)))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookups, add_one);
criterion_main!(benches);
