//! MMU benchmarks: a full 4-level walk, a software-TLB hit, and random
//! accesses over 16 MiB of 4-KiB pages through the walker and through the TLB.
//!
//! Run with `cargo bench -p hyperplug-mmu` (criterion prints time per
//! iteration and, for the workloads, translations per second).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use hyperplug_mmu::paging::entry::{P, RW};
use hyperplug_mmu::paging::testutil::{PageSize, PageTableBuilder};
use hyperplug_mmu::testmem::FlatMemory;
use hyperplug_mmu::tlb::Tlb;
use hyperplug_mmu::track::WriteTracker;
use hyperplug_mmu::{walk, Access, AccessKind, AdUpdate, PagingContext, PagingMode};
use std::sync::Arc;
use std::time::Duration;

/// Linear base of the mapped range.
const LINEAR: u64 = 0x7f00_0000_0000;
/// Guest-physical base of the mapped data.
const DATA_GPA: u64 = 0x100_0000;
/// Mapped size: 16 MiB of 4-KiB pages.
const SPAN: u64 = 16 << 20;
/// Random addresses per workload iteration.
const BATCH: usize = 4096;

const READ: Access = Access::new(AccessKind::Read, 0);

/// Memory with `SPAN` bytes at `LINEAR` mapped by 4-KiB pages in 4-level tables.
fn setup() -> (FlatMemory, PagingContext) {
    let mem = FlatMemory::new(DATA_GPA + SPAN);
    let ctx = {
        let mut b =
            PageTableBuilder::new(&mem, PagingMode::Level4, 0x1000..DATA_GPA).expect("table area");
        for off in (0..SPAN).step_by(4096) {
            b.map(LINEAR + off, DATA_GPA + off, PageSize::Size4K, P | RW)
                .expect("map");
        }
        b.context()
    };
    (mem, ctx)
}

/// xorshift64*: reproducible random offsets.
fn random_addresses(n: usize) -> Vec<u64> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            LINEAR + ((x.wrapping_mul(0x2545_f491_4f6c_dd1d) % SPAN) & !7)
        })
        .collect()
}

fn single(c: &mut Criterion) {
    let (mem, ctx) = setup();
    let la = LINEAR + 0x12_3458;
    // The first walk sets A; afterwards a walk is pure reads.
    walk(&mem, &ctx, la, READ, AdUpdate::Set).expect("mapped");
    c.bench_function("walk 4-level 4K (A already set)", |b| {
        b.iter(|| walk(&mem, &ctx, black_box(la), READ, AdUpdate::Set))
    });
    c.bench_function("walk 4-level 4K (AdUpdate::None)", |b| {
        b.iter(|| walk(&mem, &ctx, black_box(la), READ, AdUpdate::None))
    });
    let mut tlb = Tlb::new(Arc::new(WriteTracker::new()));
    tlb.translate(&mem, &ctx, la, READ, |g| g).expect("fill");
    c.bench_function("tlb lookup hit", |b| {
        b.iter(|| tlb.lookup(&ctx, black_box(la), READ))
    });
    c.bench_function("tlb translate hit", |b| {
        b.iter(|| tlb.translate(&mem, &ctx, black_box(la), READ, |g| g))
    });
}

fn workload(c: &mut Criterion) {
    let (mem, ctx) = setup();
    let addrs = random_addresses(BATCH);
    let mut g = c.benchmark_group("random 16 MiB, 4K pages");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("walk", |b| {
        b.iter(|| {
            for &a in &addrs {
                black_box(walk(&mem, &ctx, a, READ, AdUpdate::Set).ok());
            }
        })
    });
    let mut tlb = Tlb::new(Arc::new(WriteTracker::new()));
    g.bench_function("tlb translate", |b| {
        b.iter(|| {
            for &a in &addrs {
                black_box(tlb.translate(&mem, &ctx, a, READ, |p| p).ok());
            }
        })
    });
    g.finish();
    let s = tlb.stats();
    eprintln!(
        "tlb over the 16 MiB workload: {} hits, {} misses ({:.1}% hits), {} evictions",
        s.hits,
        s.misses,
        100.0 * s.hits as f64 / (s.hits + s.misses).max(1) as f64,
        s.evictions
    );
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = single, workload }
criterion_main!(benches);
