//! Table-driven tests of the page-table walk (SDM vol. 3, chapter 4).

mod ad;
mod misc;
mod not_present;
mod perms;
mod reference;
mod reserved;
mod translate;

use super::testutil::{PageSize, PageTableBuilder};
use crate::context::PagingMode;
use crate::testmem::FlatMemory;

/// Every paging mode with tables.
const MODES: [PagingMode; 4] = [
    PagingMode::Bits32,
    PagingMode::Pae,
    PagingMode::Level4,
    PagingMode::Level5,
];

/// Memory for the tests: 1 MiB, tables in [64 KiB, 1 MiB).
const MEM: u64 = 1 << 20;
/// The page-table area.
const TABLES: std::ops::Range<u64> = 0x1_0000..MEM;

/// A linear address per mode and size that exercises non-zero indices at every level.
fn sample_linear(mode: PagingMode, size: PageSize) -> u64 {
    let base: u64 = match mode {
        PagingMode::Bits32 | PagingMode::Pae | PagingMode::None => 0xc0c0_0000 | (5 << 12),
        PagingMode::Level4 => 0x0000_7f80_c000_0000 | (5 << 21) | (7 << 12),
        PagingMode::Level5 => 0x00ab_cd80_c000_0000 | (5 << 21) | (7 << 12),
    };
    base & !(size.bytes() - 1)
}

/// A physical page for `size` (aligned, below 4 GiB for 32-bit 4-KiB pages).
fn sample_gpa(size: PageSize) -> u64 {
    match size {
        PageSize::Size4K => 0x1234_5000,
        PageSize::Size2M => 0x7_4560_0000,
        PageSize::Size4M => 0x5680_0000,
        PageSize::Size1G => 0x39_4000_0000,
    }
}

/// A fresh memory.
fn mem() -> FlatMemory {
    FlatMemory::new(MEM)
}

/// A builder over `m` for `mode`.
fn builder(m: &FlatMemory, mode: PagingMode) -> PageTableBuilder<'_> {
    PageTableBuilder::new(m, mode, TABLES).expect("table area")
}
