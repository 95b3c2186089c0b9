//! The guest-physical layout and system structures the KVM guest and the emulated
//! machine share, and the initial segment/control-register state of each mode.
//!
//! | range | what |
//! |---|---|
//! | `0x0000` | real-mode IVT (SDM vol. 3, 21.1.4) |
//! | `0x0800` | GDT: null, 0x08 code32, 0x10 data, 0x18 code64, 0x20 TSS (busy), 0x30 code16, 0x38 LDT, 0x48 a second TSS descriptor (available) for the same TSS, 0x58 data, 0x60 a not-present LDT |
//! | `0x0900` | 64-bit TSS (IST1 = [`IST_TOP`]) |
//! | `0x0a00` | the LDT (three null entries) |
//! | `0x1000` | IDT (32 gates) |
//! | `0x2000`, `0x3000`, `0x4000` | PML4, PDPT, PD (one 2-MiB identity page) |
//! | `0x5000` | the harness ([`HARNESS`]) |
//! | `0x7000` | control block ([`CTRL`]), harness stack, IST stack |
//! | `0x7600` | current case's registers ([`CUR`]); `0x7700` result ([`OUT`]) |
//! | `0x7900` | the code slot ([`CODE`]) |
//! | `0x8000` | the data area ([`DATA`], 256 bytes) |
//! | `0x10000` | input records ([`INPUTS`]); `0x58000` output records ([`OUTPUTS`]) |
//!
//! Everything the snippet may touch lies in the data area; everything lies below
//! 1 MiB so real mode reaches it.

use super::Bits;
use hyperplug_emulator::cpu::{DtReg, Seg, SegReg};
use hyperplug_emulator::Cpu;
use hyperplug_plugin_api::state::{DTable, Segment, Sregs};

/// GDT base.
pub const GDT: u64 = 0x0800;
/// GDT limit (fourteen 8-byte slots; TSS and LDT descriptors take two in long mode).
pub const GDT_LIMIT: u16 = 0x6f;
/// 64-bit TSS.
pub const TSS: u64 = 0x0900;
/// The LDT the LDT descriptor at [`LDT_SEL`] describes.
pub const LDT: u64 = 0x0a00;
/// LDT limit (three entries).
pub const LDT_LIMIT: u64 = 0x17;
/// IDT base.
pub const IDT: u64 = 0x1000;
/// Vectors with a handler.
pub const VECTORS: u64 = 32;
/// PML4 (CR3 in long mode).
pub const PML4: u64 = 0x2000;
const PDPT: u64 = 0x3000;
const PD: u64 = 0x4000;
/// The harness code.
pub const HARNESS: u64 = 0x5000;
/// Most harness bytes.
pub const HARNESS_MAX: usize = 0x2000;
/// Control block: +0 cases left (u32), +4 input segment/pointer (u32), +8 output
/// segment/pointer (u32), +0x10 the harness stack pointer saved while a case runs.
pub const CTRL: u64 = 0x7000;
/// The harness's stack top.
pub const HSTACK_TOP: u64 = 0x7400;
/// The 64-bit exception stack top (TSS IST1), so long-mode exceptions leave the
/// snippet's stack alone (SDM vol. 3, 6.14.5).
pub const IST_TOP: u64 = 0x7600;
/// The current case's registers: 16 GPRs, then RFLAGS at +0x80, then the initial
/// control registers ([`cur`]).
pub const CUR: u64 = 0x7600;
/// Bytes of registers (and initial control registers) in an input record.
pub const REGS_SIZE: u64 = 0xb0;
/// Input-record fields after the GPRs.
pub mod cur {
    /// RFLAGS.
    pub const RFLAGS: u64 = 0x80;
    /// Initial CR0.
    pub const CR0: u64 = 0x90;
    /// Initial CR4.
    pub const CR4: u64 = 0x98;
    /// Initial CR2.
    pub const CR2: u64 = 0xa0;
}
/// The current result: 16 GPRs, +0x80 RFLAGS, +0x88 status, +0x90 error code,
/// +0x98 IP, +0xa0 frame size, +0xa8.. the system state ([`out::CR0`] ..), +0x100
/// data area.
pub const OUT: u64 = 0x7700;
/// Result fields.
pub mod out {
    /// RFLAGS.
    pub const RFLAGS: u64 = 0x80;
    /// [`super::STATUS_DONE`], [`super::STATUS_PENDING`] or the exception vector.
    pub const STATUS: u64 = 0x88;
    /// Error code.
    pub const ERROR: u64 = 0x90;
    /// Saved IP.
    pub const IP: u64 = 0x98;
    /// Bytes the CPU pushed on the snippet's stack (16/32-bit modes).
    pub const FRAME: u64 = 0xa0;
    /// CR0 after the case.
    pub const CR0: u64 = 0xa8;
    /// CR2.
    pub const CR2: u64 = 0xb0;
    /// CR3.
    pub const CR3: u64 = 0xb8;
    /// CR4.
    pub const CR4: u64 = 0xc0;
    /// CR8 (64-bit mode only).
    pub const CR8: u64 = 0xc8;
    /// SGDT image (limit, then the base).
    pub const GDTR: u64 = 0xd0;
    /// SIDT image.
    pub const IDTR: u64 = 0xe0;
    /// STR (protected modes only).
    pub const TR: u64 = 0xf0;
    /// SLDT (protected modes only).
    pub const LDTR: u64 = 0xf2;
    /// The access byte of the TSS descriptor at [`super::TSS_SEL`].
    pub const TSS_ACCESS: u64 = 0xf4;
    /// The access byte of the TSS descriptor at [`super::TSS2_SEL`].
    pub const TSS2_ACCESS: u64 = 0xf5;
    /// The data area copy.
    pub const DATA: u64 = 0x100;
}
/// Status of a completed case.
pub const STATUS_DONE: u64 = 0x100;
/// Status the host writes before the run (still there: the case never finished).
pub const STATUS_PENDING: u64 = 0xffff;
/// The code slot the snippet is copied to.
pub const CODE: u64 = 0x7900;
/// Bytes of the code slot (snippet plus terminator).
pub const CODE_SIZE: usize = 0x70;
/// The data area.
pub const DATA: u64 = 0x8000;
/// Bytes of the data area.
pub const DATA_SIZE: usize = 0x100;
/// Input records: registers and control registers ([`REGS_SIZE`]), code (0x70),
/// data (0x100).
pub const INPUTS: u64 = 0x1_0000;
/// Output records: a copy of [`OUT`].
pub const OUTPUTS: u64 = 0x5_8000;
/// Bytes per input record.
pub const IN_RECORD: u64 = REGS_SIZE + CODE_SIZE as u64 + DATA_SIZE as u64;
/// Bytes per output record.
pub const RECORD: u64 = 0x200;
/// Where the harness keeps the GDTR image it restores before each case.
pub const HGDTR: u64 = CTRL + 0x20;
/// Where the harness keeps the IDTR image it restores before each case.
pub const HIDTR: u64 = CTRL + 0x30;
/// Most cases per VM run (records must stay below 640 KiB for real mode).
pub const BATCH: usize = 500;
/// Guest RAM.
pub const RAM: u64 = 2 << 20;

/// Code selectors.
pub const CS32: u16 = 0x08;
/// Data selector.
pub const DS_SEL: u16 = 0x10;
/// 64-bit code selector.
pub const CS64: u16 = 0x18;
/// 64-bit TSS selector.
pub const TSS_SEL: u16 = 0x20;
/// 16-bit code selector.
pub const CS16: u16 = 0x30;
/// LDT descriptor selector.
pub const LDT_SEL: u16 = 0x38;
/// A second (available) TSS descriptor for the same TSS, for LTR.
pub const TSS2_SEL: u16 = 0x48;
/// A data-segment descriptor (not a system descriptor: LLDT/LTR #GP).
pub const DATA2_SEL: u16 = 0x58;
/// A not-present LDT descriptor (LLDT #NP).
pub const LDT_NP_SEL: u16 = 0x60;

/// A code/data descriptor (SDM vol. 3, 3.4.5, Figure 3-8): base 0, limit 0xfffff,
/// G = 1, P = 1, S = 1, DPL 0, accessed types so the CPU never writes the GDT.
fn desc(typ: u64, l: u64, db: u64) -> u64 {
    0xffff | typ << 40 | 1 << 44 | 1 << 47 | 0xf << 48 | l << 53 | db << 54 | 1 << 55
}

/// A system descriptor's low 8 bytes (SDM vol. 3, 3.5, Figure 3-8; long mode 8.2.3,
/// Figure 8-4 adds bits 63:32 of the base in the next 8 bytes): base, limit, type,
/// P = `present`, S = 0, DPL 0.
fn sys_desc(base: u64, limit: u64, typ: u64, present: bool) -> u64 {
    (limit & 0xffff)
        | (base & 0xff_ffff) << 16
        | typ << 40
        | u64::from(present) << 47
        | (limit >> 16 & 0xf) << 48
        | (base >> 24 & 0xff) << 56
}

/// Offset of a descriptor's access byte (type, S, DPL, P) in the descriptor.
pub const ACCESS_BYTE: u64 = 5;

/// The GDT image as each case starts: the TSS at [`TSS_SEL`] busy (TR holds it), the
/// one at [`TSS2_SEL`] available. In 16/32-bit protected mode a 16-byte system
/// descriptor reads as the 8-byte legacy one (type 9/0xB: 32-bit TSS, type 2: LDT)
/// followed by a null slot.
pub fn gdt() -> Vec<u8> {
    let e = [
        0,
        desc(0xb, 0, 1),
        desc(0x3, 0, 1),
        desc(0xb, 1, 0),
        sys_desc(TSS, 0x67, 0xb, true),
        TSS >> 32,
        // 16-bit code: limit 0xffff, G = 0, D = 0.
        desc(0xb, 0, 0) & !(0xf << 48 | 1 << 55),
        sys_desc(LDT, LDT_LIMIT, 0x2, true),
        LDT >> 32,
        sys_desc(TSS, 0x67, 0x9, true),
        TSS >> 32,
        desc(0x3, 0, 1),
        sys_desc(LDT, LDT_LIMIT, 0x2, false),
        0,
    ];
    e.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The 64-bit TSS (SDM vol. 3, 8.7, Figure 8-11): IST1 at offset 0x24, no I/O bitmap.
pub fn tss() -> Vec<u8> {
    let mut t = vec![0u8; 0x68];
    t[4..12].copy_from_slice(&IST_TOP.to_le_bytes());
    t[0x24..0x2c].copy_from_slice(&IST_TOP.to_le_bytes());
    t[102..104].copy_from_slice(&0x68u16.to_le_bytes());
    t
}

/// The interrupt table for `bits` with `handlers[v]` as vector v's handler: the IVT
/// (SDM vol. 3, 21.1.4: offset, segment 0), 32-bit interrupt gates (6.11, Figure
/// 6-2: type 0xE, selector 0x08, or 0x30 for the 16-bit harness) or 64-bit gates with IST 1 (6.14.1, Figure 6-8).
pub fn interrupt_table(bits: Bits, handlers: &[u64]) -> (u64, Vec<u8>) {
    let mut t = Vec::new();
    for &h in handlers {
        match bits {
            Bits::Real16 => {
                t.extend_from_slice(&(h as u16).to_le_bytes());
                t.extend_from_slice(&0u16.to_le_bytes());
            }
            Bits::Prot16 | Bits::Prot32 => {
                let cs = if bits == Bits::Prot16 { CS16 } else { CS32 };
                let g = (h & 0xffff) | u64::from(cs) << 16 | 0x8e << 40 | (h >> 16 & 0xffff) << 48;
                t.extend_from_slice(&g.to_le_bytes());
            }
            Bits::Long64 => {
                let g = (h & 0xffff)
                    | u64::from(CS64) << 16
                    | 1 << 32
                    | 0x8e << 40
                    | (h >> 16 & 0xffff) << 48;
                t.extend_from_slice(&g.to_le_bytes());
                t.extend_from_slice(&(h >> 32).to_le_bytes());
            }
        }
    }
    let base = if bits == Bits::Real16 { 0 } else { IDT };
    (base, t)
}

/// Page-table entries (address, value) identity-mapping 0..2 MiB with one large page
/// (SDM vol. 3, 4.5, Tables 4-15, 4-17, 4-18), A and D preset.
pub fn page_tables() -> [(u64, u64); 3] {
    const P_RW_A: u64 = 0x23;
    [
        (PML4, PDPT | P_RW_A),
        (PDPT, PD | P_RW_A),
        (PD, P_RW_A | 0x40 | 0x80),
    ]
}

/// One segment register's cache, in one description for both machines.
#[derive(Clone, Copy, Debug)]
struct SegSpec {
    selector: u16,
    limit: u32,
    typ: u8,
    l: bool,
    db: bool,
    g: bool,
}

impl SegSpec {
    fn kvm(self) -> Segment {
        Segment {
            base: 0,
            limit: self.limit,
            selector: self.selector,
            type_: self.typ,
            present: 1,
            dpl: 0,
            db: u8::from(self.db),
            s: 1,
            l: u8::from(self.l),
            g: u8::from(self.g),
            avl: 0,
            unusable: 0,
            padding: 0,
        }
    }

    fn emu(self) -> Seg {
        Seg {
            selector: self.selector,
            base: 0,
            limit: self.limit,
            typ: self.typ,
            s: true,
            dpl: 0,
            present: true,
            avl: false,
            l: self.l,
            db: self.db,
            g: self.g,
            unusable: false,
        }
    }
}

/// CR0, CR3, CR4 and EFER of `bits` (SDM vol. 3, 2.5; vol. 4 Table 2-2):
/// real mode ET|NE; protected mode PE|ET|NE; long mode PE|ET|NE|WP|PG with
/// CR4.PAE and EFER.LME|LMA.
pub fn control_regs(bits: Bits) -> (u64, u64, u64, u64) {
    match bits {
        Bits::Real16 => (0x30, 0, 0, 0),
        Bits::Prot16 | Bits::Prot32 => (0x31, 0, 0, 0),
        Bits::Long64 => (0x8001_0031, PML4, 0x20, 0x500),
    }
}

/// Code and data segments of `bits`: real-mode selector 0 (base 0, limit 0xffff);
/// flat 32-bit; 64-bit code with flat data.
fn segs(bits: Bits) -> (SegSpec, SegSpec) {
    let flat = |selector, typ, l, db| SegSpec {
        selector,
        limit: 0xffff_ffff,
        typ,
        l,
        db,
        g: true,
    };
    match bits {
        Bits::Real16 => {
            let r = |typ| SegSpec {
                selector: 0,
                limit: 0xffff,
                typ,
                l: false,
                db: false,
                g: false,
            };
            (r(0xb), r(0x3))
        }
        Bits::Prot16 => (
            SegSpec {
                selector: CS16,
                limit: 0xffff,
                typ: 0xb,
                l: false,
                db: false,
                g: false,
            },
            flat(DS_SEL, 0x3, false, true),
        ),
        Bits::Prot32 => (flat(CS32, 0xb, false, true), flat(DS_SEL, 0x3, false, true)),
        Bits::Long64 => (flat(CS64, 0xb, true, false), flat(DS_SEL, 0x3, false, true)),
    }
}

/// The KVM special registers of `bits` (`base` supplies the APIC base).
pub fn kvm_sregs(bits: Bits, base: &Sregs) -> Sregs {
    let (code, data) = segs(bits);
    let (cr0, cr3, cr4, efer) = control_regs(bits);
    let mut s = *base;
    s.cs = code.kvm();
    for d in [&mut s.ds, &mut s.es, &mut s.fs, &mut s.gs, &mut s.ss] {
        *d = data.kvm();
    }
    s.tr = Segment {
        base: TSS,
        limit: 0x67,
        selector: if bits == Bits::Real16 { 0 } else { TSS_SEL },
        type_: 0xb,
        present: 1,
        ..Segment::default()
    };
    s.ldt = Segment {
        type_: 2,
        present: 1,
        limit: 0xffff,
        ..Segment::default()
    };
    s.gdt = DTable {
        base: GDT,
        limit: GDT_LIMIT,
        padding: [0; 3],
    };
    let (idt_base, idt) = interrupt_table(bits, &[0; VECTORS as usize]);
    s.idt = DTable {
        base: idt_base,
        limit: (idt.len() - 1) as u16,
        padding: [0; 3],
    };
    s.cr0 = cr0;
    s.cr2 = 0;
    s.cr3 = cr3;
    s.cr4 = cr4;
    s.efer = efer;
    s.interrupt_bitmap = [0; 4];
    s
}

/// The emulator CPU in the state the harness leaves just before it jumps to the
/// snippet (GPRs and RFLAGS still to be set).
pub fn emu_cpu(bits: Bits) -> Cpu {
    let (code, data) = segs(bits);
    let (cr0, cr3, cr4, efer) = control_regs(bits);
    let mut cpu = Cpu {
        rip: CODE,
        cr0,
        cr3,
        cr4,
        efer,
        gdtr: DtReg {
            base: GDT,
            limit: GDT_LIMIT,
        },
        ..Cpu::default()
    };
    let (idt_base, idt) = interrupt_table(bits, &[0; VECTORS as usize]);
    cpu.idtr = DtReg {
        base: idt_base,
        limit: (idt.len() - 1) as u16,
    };
    for s in [SegReg::Es, SegReg::Ss, SegReg::Ds, SegReg::Fs, SegReg::Gs] {
        cpu.seg[s as usize] = data.emu();
    }
    cpu.seg[SegReg::Cs as usize] = code.emu();
    cpu.tr = Seg {
        selector: if bits == Bits::Real16 { 0 } else { TSS_SEL },
        base: TSS,
        limit: 0x67,
        typ: 0xb,
        present: true,
        ..Seg::default()
    };
    cpu
}

/// The data-area byte range the CPU's exception frame covers, given the stack pointer
/// at the fault and the exception (real mode: FLAGS, CS, IP, SDM vol. 3, 21.1.4;
/// 16- and 32-bit protected mode, through 32-bit gates: EFLAGS, CS, EIP and the error
/// code, 6.12.1, Figure 6-4). Long mode uses
/// IST 1 and pushes nothing on the snippet's stack.
pub fn frame_bytes(
    bits: Bits,
    sp: u64,
    e: Option<super::KException>,
) -> Option<std::ops::Range<usize>> {
    let (len, sp) = match bits {
        Bits::Real16 => (6, sp & 0xffff),
        Bits::Prot16 | Bits::Prot32 => (
            if e.is_some_and(|e| e.error_code.is_some()) {
                16
            } else {
                12
            },
            sp & 0xffff_ffff,
        ),
        Bits::Long64 => return None,
    };
    let start = sp.checked_sub(len)?.checked_sub(DATA)?;
    let end = (start + len).min(DATA_SIZE as u64);
    (start < end).then_some(start as usize..end as usize)
}
