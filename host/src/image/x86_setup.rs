//! The x86 CPU states the loaders start a guest in (real, flat protected,
//! identity-mapped long mode) and the GDT, TSS and page tables behind them.
//!
//! Choices, against the architecture's rules:
//! - Real mode: entry E (< 1 MiB) becomes CS = (E >> 4) & 0xF000, IP = E & 0xFFFF,
//!   so CS base = E & 0xF0000 and any E below 1 MiB is reachable; DS, ES, FS,
//!   GS, SS = 0; SP = 0x7c00 (nothing reserved: the image should set its own
//!   stack). CR0 = ET only (caching on: CD = NW = 0). TR and
//!   LDTR as after RESET (SDM vol. 3, 9.1.1, Table 9-1); IDTR = the IVT at 0, limit 0x3ff.
//! - Protected mode: CR0 = PE | ET (the multiboot spec 3.2 requires only PE set
//!   and PG clear; NE is left clear as after RESET), flat 4 GiB segments from
//!   the host's GDT, EFLAGS = 0x2, ESP = 0x9000, IDTR limit 0 (any exception
//!   before the OS loads its own IDT escalates to a triple fault).
//! - Long mode: CR0 = PE | ET | NE | PG (NE: native x87 errors, which 64-bit
//!   OSes expect; WP left clear), CR4 = PAE, EFER = LME | LMA, CR3 = PML4 at
//!   0x2000 identity-mapping 0..4 GiB with 2 MiB pages, CS = 64-bit code
//!   selector 0x18, RSP = 0x9000 (16-byte aligned).
//! - TR: busy 32/64-bit TSS (type 11) at 0x1100, limit 0x67, selector 0x20;
//!   LDTR unusable (SDM vol. 3, 26.3.1.2: TR must be usable with type 3 or 11,
//!   LDTR may be unusable).

use hyperplug_plugin_api::state::{cr, rflags, DTable, Regs, Segment, Sregs};

use super::layout::{self, Target};
use super::{ImageError, Mode};

/// Selector of the flat 32-bit code segment.
pub const CODE32_SEL: u16 = 0x08;
/// Selector of the flat data segment.
pub const DATA_SEL: u16 = 0x10;
/// Selector of the 64-bit code segment.
pub const CODE64_SEL: u16 = 0x18;
/// Selector of the TSS.
pub const TSS_SEL: u16 = 0x20;
/// GDT limit: five 8-byte slots plus the upper half of the 16-byte TSS descriptor, minus one.
pub const GDT_LIMIT: u16 = 0x2f;
/// TSS limit: the 104-byte 32-bit / 64-bit TSS, minus one (SDM vol. 3, 7.2.1, 8.7).
pub const TSS_LIMIT: u32 = 0x67;

/// Code segment type: execute/read, accessed (SDM vol. 3, 3.4.5.1, Table 3-1).
const TYPE_CODE_XR_A: u8 = 0xb;
/// Data segment type: read/write, accessed (SDM vol. 3, 3.4.5.1, Table 3-1).
const TYPE_DATA_RW_A: u8 = 0x3;
/// System type: busy 32-bit/64-bit TSS (SDM vol. 3, 3.5, Table 3-2).
const TYPE_TSS_BUSY: u8 = 0xb;
/// System type: LDT (SDM vol. 3, 3.5, Table 3-2).
const TYPE_LDT: u8 = 0x2;

/// Page-table entry bits (SDM vol. 3, 4.5, Tables 4-15, 4-17, 4-18).
const PTE_P: u64 = 1 << 0;
/// Writable.
const PTE_RW: u64 = 1 << 1;
/// Page size: the PDE maps a 2 MiB page.
const PTE_PS: u64 = 1 << 7;

/// A flat 4 GiB segment (G = 1, limit 0xffffffff in bytes as kvm_segment holds it).
fn flat(selector: u16, type_: u8, db: u8, l: u8) -> Segment {
    Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db,
        s: 1,
        l,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// The flat 32-bit code segment.
pub fn code32() -> Segment {
    flat(CODE32_SEL, TYPE_CODE_XR_A, 1, 0)
}

/// The flat data segment.
pub fn data() -> Segment {
    flat(DATA_SEL, TYPE_DATA_RW_A, 1, 0)
}

/// The 64-bit code segment (L = 1 requires D = 0, SDM vol. 3, 3.4.5).
pub fn code64() -> Segment {
    flat(CODE64_SEL, TYPE_CODE_XR_A, 0, 1)
}

/// TR: the busy TSS at [`layout::TSS_ADDR`].
pub fn tss() -> Segment {
    Segment {
        base: layout::TSS_ADDR,
        limit: TSS_LIMIT,
        selector: TSS_SEL,
        type_: TYPE_TSS_BUSY,
        present: 1,
        ..Segment::default()
    }
}

/// LDTR: null selector, marked unusable.
pub fn ldt_unusable() -> Segment {
    Segment {
        type_: TYPE_LDT,
        unusable: 1,
        ..Segment::default()
    }
}

/// A real-mode segment with the given selector (base = selector << 4, limit 64 KiB).
pub fn real_segment(selector: u16, type_: u8) -> Segment {
    Segment {
        base: u64::from(selector) << 4,
        limit: 0xffff,
        selector,
        type_,
        present: 1,
        s: 1,
        ..Segment::default()
    }
}

/// Encodes a segment as an 8-byte GDT descriptor (SDM vol. 3, 3.4.5, Figure 3-8).
/// With G = 1 the 20-bit limit field counts 4 KiB units, so `limit >> 12` is stored.
pub fn descriptor(s: &Segment) -> u64 {
    let limit = if s.g != 0 {
        u64::from(s.limit >> 12)
    } else {
        u64::from(s.limit)
    } & 0xf_ffff;
    let base = s.base & 0xffff_ffff;
    (limit & 0xffff)
        | ((base & 0xff_ffff) << 16)
        | (u64::from(s.type_ & 0xf) << 40)
        | (u64::from(s.s & 1) << 44)
        | (u64::from(s.dpl & 3) << 45)
        | (u64::from(s.present & 1) << 47)
        | ((limit >> 16) << 48)
        | (u64::from(s.avl & 1) << 52)
        | (u64::from(s.l & 1) << 53)
        | (u64::from(s.db & 1) << 54)
        | (u64::from(s.g & 1) << 55)
        | ((base >> 24) << 56)
}

/// The GDT's bytes: null, code32, data, code64, then the 16-byte TSS
/// descriptor (SDM vol. 3, 8.2.3, Figure 8-4; its upper half holds base 63:32).
pub fn gdt_bytes() -> Vec<u8> {
    let t = tss();
    let entries = [
        0,
        descriptor(&code32()),
        descriptor(&data()),
        descriptor(&code64()),
        descriptor(&t),
        t.base >> 32,
    ];
    entries.iter().flat_map(|e| e.to_le_bytes()).collect()
}

/// The TSS's bytes: all zero except the I/O map base, set past the limit so
/// there is no I/O permission bitmap (SDM vol. 3, 19.5.2; offset 102).
pub fn tss_bytes() -> Vec<u8> {
    let mut t = vec![0u8; TSS_LIMIT as usize + 1];
    let iomap = (TSS_LIMIT as u16 + 1).to_le_bytes();
    t[102..104].copy_from_slice(&iomap);
    t
}

/// Writes the GDT and TSS.
pub fn write_gdt(t: &Target<'_>) -> Result<(), ImageError> {
    t.write("GDT", layout::GDT_ADDR, &gdt_bytes())?;
    t.write("TSS", layout::TSS_ADDR, &tss_bytes())
}

/// Writes PML4, PDPT and four PDs of 2 MiB pages identity-mapping 0..4 GiB
/// (SDM vol. 3, 4.5.4, Figures 4-9 and 4-10; no 1 GiB pages).
pub fn write_page_tables(t: &Target<'_>) -> Result<(), ImageError> {
    let mut pml4 = vec![0u8; 4096];
    pml4[..8].copy_from_slice(&(layout::PDPT_ADDR | PTE_P | PTE_RW).to_le_bytes());
    t.write("PML4", layout::PML4_ADDR, &pml4)?;
    let mut pdpt = vec![0u8; 4096];
    for i in 0..4u64 {
        let pd = layout::PD_ADDR + i * 4096;
        let at = (i * 8) as usize;
        pdpt[at..at + 8].copy_from_slice(&(pd | PTE_P | PTE_RW).to_le_bytes());
        let mut dir = vec![0u8; 4096];
        for j in 0..512u64 {
            let phys = (i * 512 + j) << 21;
            let at = (j * 8) as usize;
            dir[at..at + 8].copy_from_slice(&(phys | PTE_P | PTE_RW | PTE_PS).to_le_bytes());
        }
        t.write("page directory", pd, &dir)?;
    }
    t.write("PDPT", layout::PDPT_ADDR, &pdpt)
}

/// Areas a boot in `mode` writes.
pub fn areas(mode: Mode) -> &'static [layout::Area] {
    match mode {
        Mode::Real => layout::REAL_AREAS,
        Mode::Protected => layout::PROTECTED_AREAS,
        Mode::Long => layout::LONG_AREAS,
    }
}

/// Writes what `mode` needs (GDT, page tables) and returns the state that
/// starts at `entry`; the caller has checked `entry` for the mode.
pub fn setup(t: &Target<'_>, mode: Mode, entry: u64) -> Result<(Regs, Sregs), ImageError> {
    match mode {
        Mode::Real => Ok(real_mode(entry)),
        Mode::Protected => {
            write_gdt(t)?;
            Ok(protected_mode(entry))
        }
        Mode::Long => {
            write_gdt(t)?;
            write_page_tables(t)?;
            Ok(long_mode(entry))
        }
    }
}

/// Real-mode state for entry `entry` (< 1 MiB).
pub fn real_mode(entry: u64) -> (Regs, Sregs) {
    let cs_sel = ((entry >> 4) & 0xf000) as u16;
    let data = real_segment(0, TYPE_DATA_RW_A);
    let sregs = Sregs {
        cs: real_segment(cs_sel, TYPE_CODE_XR_A),
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr: Segment {
            limit: 0xffff,
            type_: TYPE_TSS_BUSY,
            present: 1,
            ..Segment::default()
        },
        ldt: Segment {
            limit: 0xffff,
            type_: TYPE_LDT,
            present: 1,
            ..Segment::default()
        },
        gdt: DTable {
            base: 0,
            limit: 0xffff,
            padding: [0; 3],
        },
        idt: DTable {
            base: 0,
            limit: 0x3ff,
            padding: [0; 3],
        },
        cr0: cr::CR0_ET,
        ..Sregs::default()
    };
    let regs = Regs {
        rip: entry & 0xffff,
        rsp: layout::REAL_MODE_SP,
        rflags: rflags::FIXED,
        ..Regs::default()
    };
    (regs, sregs)
}

/// Flat protected-mode state (paging off) for `entry`.
pub fn protected_mode(entry: u64) -> (Regs, Sregs) {
    let d = data();
    let sregs = Sregs {
        cs: code32(),
        ds: d,
        es: d,
        fs: d,
        gs: d,
        ss: d,
        tr: tss(),
        ldt: ldt_unusable(),
        gdt: DTable {
            base: layout::GDT_ADDR,
            limit: GDT_LIMIT,
            padding: [0; 3],
        },
        idt: DTable::default(),
        cr0: cr::CR0_PE | cr::CR0_ET,
        ..Sregs::default()
    };
    let regs = Regs {
        rip: entry,
        rsp: layout::STACK_TOP,
        rflags: rflags::FIXED,
        ..Regs::default()
    };
    (regs, sregs)
}

/// 64-bit long-mode state (identity-mapped first 4 GiB) for `entry`.
pub fn long_mode(entry: u64) -> (Regs, Sregs) {
    let (regs, mut sregs) = protected_mode(entry);
    sregs.cs = code64();
    sregs.cr0 = cr::CR0_PE | cr::CR0_ET | cr::CR0_NE | cr::CR0_PG;
    sregs.cr3 = layout::PML4_ADDR;
    sregs.cr4 = cr::CR4_PAE;
    sregs.efer = cr::EFER_LME | cr::EFER_LMA;
    (regs, sregs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testutil;

    #[test]
    fn descriptors_encode_per_sdm() {
        // Well-known flat descriptors (SDM vol. 3, 3.4.5).
        let cases: &[(Segment, u64)] = &[
            (code32(), 0x00cf_9b00_0000_ffff),
            (data(), 0x00cf_9300_0000_ffff),
            (code64(), 0x00af_9b00_0000_ffff),
            (tss(), 0x0000_8b00_1100_0067),
            (
                Segment {
                    base: 0x1234_5678,
                    limit: 0xabcde,
                    type_: 3,
                    s: 1,
                    present: 1,
                    dpl: 3,
                    ..Segment::default()
                },
                0x120a_f334_5678_bcde,
            ),
        ];
        for (seg, want) in cases {
            assert_eq!(descriptor(seg), *want, "{seg:?}");
        }
    }

    #[test]
    fn gdt_matches_segment_caches() {
        let g = gdt_bytes();
        assert_eq!(g.len(), GDT_LIMIT as usize + 1);
        let entry = |sel: u16| {
            let i = sel as usize;
            u64::from_le_bytes(g[i..i + 8].try_into().unwrap_or([0; 8]))
        };
        assert_eq!(entry(0), 0);
        for s in [code32(), data(), code64(), tss()] {
            assert_eq!(
                entry(s.selector),
                descriptor(&s),
                "selector {:#x}",
                s.selector
            );
        }
        assert_eq!(entry(TSS_SEL + 8), 0, "TSS base 63:32");
    }

    #[test]
    fn real_mode_cs_ip_table() {
        let cases: &[(u64, u16, u64, u64)] = &[
            (0x7c00, 0x0000, 0x0000, 0x7c00),
            (0x12345, 0x1000, 0x10000, 0x2345),
            (0xfffff, 0xf000, 0xf0000, 0xffff),
            (0x10000, 0x1000, 0x10000, 0x0000),
        ];
        for &(entry, sel, base, ip) in cases {
            let (r, s) = real_mode(entry);
            assert_eq!(
                (s.cs.selector, s.cs.base, r.rip),
                (sel, base, ip),
                "entry {entry:#x}"
            );
            assert_eq!(s.cs.base + r.rip, entry);
            assert_eq!(s.cr0 & cr::CR0_PE, 0);
            assert_eq!(
                (s.cs.limit, s.cs.g, s.cs.db, s.cs.present, s.cs.s),
                (0xffff, 0, 0, 1, 1)
            );
        }
    }

    #[test]
    fn protected_and_long_state() {
        let (r, s) = protected_mode(0x10_0000);
        assert_eq!(r.rip, 0x10_0000);
        assert_eq!(r.rflags, 0x2);
        assert_eq!(s.cr0, cr::CR0_PE | cr::CR0_ET);
        assert_eq!(
            (
                s.cs.selector,
                s.cs.db,
                s.cs.l,
                s.cs.g,
                s.cs.limit,
                s.cs.type_
            ),
            (0x08, 1, 0, 1, 0xffff_ffff, 0xb)
        );
        for d in [s.ds, s.es, s.fs, s.gs, s.ss] {
            assert_eq!(
                (d.selector, d.type_, d.s, d.present, d.base, d.limit),
                (0x10, 3, 1, 1, 0, 0xffff_ffff)
            );
        }
        assert_eq!(
            (s.tr.type_, s.tr.s, s.tr.present, s.tr.unusable),
            (11, 0, 1, 0)
        );
        assert_eq!(s.ldt.unusable, 1);
        assert_eq!((s.gdt.base, s.gdt.limit), (layout::GDT_ADDR, GDT_LIMIT));

        let (r, s) = long_mode(0x20_0000);
        assert_eq!(r.rip, 0x20_0000);
        assert_eq!(r.rsp % 16, 0);
        assert_ne!(s.cr0 & cr::CR0_PG, 0);
        assert_ne!(s.cr4 & cr::CR4_PAE, 0);
        assert_eq!(s.efer, cr::EFER_LME | cr::EFER_LMA);
        assert_eq!((s.cs.l, s.cs.db, s.cs.selector), (1, 0, 0x18));
        assert_eq!(s.cr3, layout::PML4_ADDR);
    }

    #[test]
    fn page_tables_identity_map_4gib() {
        let mem = testutil::memory(1 << 20);
        let t = Target {
            file: "f",
            mem: &mem,
            ram_size: 1 << 20,
        };
        assert!(write_page_tables(&t).is_ok());
        for va in [
            0u64,
            0x1234_5678,
            0x1f_ffff,
            0x20_0000,
            0xffff_ffff,
            0xc000_1000,
        ] {
            assert_eq!(
                testutil::walk(&mem, layout::PML4_ADDR, va),
                Some(va),
                "va {va:#x}"
            );
        }
        assert_eq!(testutil::walk(&mem, layout::PML4_ADDR, 0x1_0000_0000), None);
        assert_eq!(
            testutil::walk(&mem, layout::PML4_ADDR, 0x80_0000_0000),
            None
        );
    }
}
