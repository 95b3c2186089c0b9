//! A long-mode guest that makes one memory access per test case through
//! randomly generated 4-level page tables, for the differential test of the
//! MMU's walk against the CPU (`tests/tests/mmu_differential.rs`).
//!
//! Guest-physical layout (identity-mapped "infrastructure" through PML4
//! entry 0; test mappings use PML4 entries 1..=511):
//!
//! | range | what |
//! |---|---|
//! | `0x10_0000` | kernel code ([`CODE_BASE`]) |
//! | `0x11_0000` | GDT, `0x11_1000` TSS, `0x11_2000` IDT, stack top `0x11_8000` |
//! | `0x14_0000` | case table: `{linear, kind}` per case ([`CASES_BASE`]) |
//! | `0x18_0000` | results: `{status, value, cr2, rip, rdx}` per case ([`RESULTS_BASE`]) |
//! | `0x20_0000` | user code page, `0x20_1000` user stack page |
//! | `0x30_0000` | infrastructure tables (PML4 = CR3, PDPT, PD, PT) |
//! | `0x40_0000..0x80_0000` | the random test tables ([`ARENA`]) |
//! | `0x80_0000..0xc0_0000` | data frames of the test pages ([`DATA`]) |
//!
//! Every data word holds `0xc3 | gpa << 8`: its low byte is `ret`, so an
//! instruction fetch through a test page returns at once, and a read tells
//! which guest-physical word it reached. A write stores `0xc3 | case_addr << 8`.
//!
//! The guest runs each case: kernel-mode (CPL 0) cases access directly;
//! user-mode (CPL 3) cases `iretq` to a stub in the user page that accesses
//! and then executes `ud2`. Every exception handler records the vector,
//! error code, CR2, RIP and RDX, resets RSP and jumps back to the loop, so
//! no handler needs to know instruction lengths.

use hyperplug_plugin_api::state::{cr, rflags, DTable, Regs, Segment, Sregs};
use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, IcedError};
use std::collections::{BTreeMap, HashSet};

/// Guest RAM size.
pub const RAM_SIZE: u64 = 16 << 20;
/// Kernel code.
pub const CODE_BASE: u64 = 0x10_0000;
/// GDT.
pub const GDT_BASE: u64 = 0x11_0000;
/// 64-bit TSS.
pub const TSS_BASE: u64 = 0x11_1000;
/// IDT (256 16-byte gates).
pub const IDT_BASE: u64 = 0x11_2000;
/// Kernel stack top (also TSS.RSP0).
pub const KSTACK_TOP: u64 = 0x11_8000;
/// Case table.
pub const CASES_BASE: u64 = 0x14_0000;
/// Results table.
pub const RESULTS_BASE: u64 = 0x18_0000;
/// Bytes per result record: status, error code or value, CR2, RIP, RDX.
pub const RESULT_SIZE: u64 = 40;
/// Most cases one run can hold (cases and results must fit their areas).
pub const MAX_CASES: usize = 1024;
/// User code page (stubs at 16-byte slots indexed by access kind).
pub const USER_CODE: u64 = 0x20_0000;
/// User stack top.
pub const USER_STACK_TOP: u64 = 0x20_2000;
/// Infrastructure PML4 (the guest's CR3).
pub const PML4: u64 = 0x30_0000;
const INFRA_PDPT: u64 = 0x30_1000;
const INFRA_PD: u64 = 0x30_2000;
const INFRA_PT: u64 = 0x30_3000;
/// Where the random test tables are allocated.
pub const ARENA: std::ops::Range<u64> = 0x40_0000..0x80_0000;
/// The data frames test pages map to.
pub const DATA: std::ops::Range<u64> = 0x80_0000..0xc0_0000;
/// The range compared after a run: every table (infrastructure + arena).
pub const TABLES: std::ops::Range<u64> = 0x30_0000..0x80_0000;

/// Kernel code selector (GDT slot 1).
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DS: u16 = 0x10;
/// User data selector (slot 3, RPL 3).
pub const USER_SS: u16 = 0x18 | 3;
/// User 64-bit code selector (slot 4, RPL 3).
pub const USER_CS: u16 = 0x20 | 3;
/// TSS selector.
pub const TSS_SEL: u16 = 0x28;
/// The vector user stubs raise (`ud2`, #UD) to come back to CPL 0: this
/// paravirtual KVM does not deliver `int n` from CPL 3, and an exception
/// needs no gate DPL anyway. A #UD at [`user_return_rip`] means success.
pub const BACK_VECTOR: u64 = 6;
/// Status of a case that completed without an exception.
pub const STATUS_OK: u64 = 0;
/// Status written before a case runs (still there = the guest never finished it).
pub const STATUS_PENDING: u64 = 0xff;

/// Entry bits (SDM vol. 3, 4.5, Tables 4-14..4-20; APM vol. 2, 5.4).
pub mod bits {
    /// Present.
    pub const P: u64 = 1;
    /// Writable.
    pub const RW: u64 = 1 << 1;
    /// User.
    pub const US: u64 = 1 << 2;
    /// Accessed.
    pub const A: u64 = 1 << 5;
    /// Dirty.
    pub const D: u64 = 1 << 6;
    /// Page size (PDE, PDPTE); reserved in a PML4E (SDM Table 4-15).
    pub const PS: u64 = 1 << 7;
    /// Global.
    pub const G: u64 = 1 << 8;
    /// Execute-disable (reserved when EFER.NXE = 0).
    pub const XD: u64 = 1 << 63;
}
use bits::*;

/// A small deterministic PRNG (xorshift64*), so every layout is reproducible from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a fixed non-zero value).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What the guest's CPUID says (probed by [`probe_guest`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    /// CPUID.80000001H:EDX.NX\[20\].
    pub nx: bool,
    /// CPUID.80000001H:EDX.Page1GB\[26\].
    pub gbpages: bool,
    /// CPUID.(EAX=07H,ECX=0):EBX.SMEP\[7\].
    pub smep: bool,
    /// CPUID.(EAX=07H,ECX=0):EBX.SMAP\[20\].
    pub smap: bool,
    /// CPUID.80000008H:EAX\[7:0\].
    pub maxphyaddr: u8,
}

/// Where the probe guest stores its CPUID words.
pub const PROBE_OUT: u64 = 0x13_0000;

/// A guest that stores CPUID leaves 0, 7.0, 80000001H and 80000008H at
/// [`PROBE_OUT`] and powers off (runs under the loader's identity map).
pub fn probe_guest() -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let out = PROBE_OUT as i32;
    for (i, (leaf, reg)) in [
        (0u32, eax),
        (7, ebx),
        (0x8000_0000, eax),
        (0x8000_0001, edx),
        (0x8000_0008, eax),
    ]
    .into_iter()
    .enumerate()
    {
        a.mov(eax, leaf)?;
        a.xor(ecx, ecx)?;
        a.cpuid()?;
        a.mov(dword_ptr(out + 4 * i as i32), reg)?;
    }
    emit_power_off(&mut a)?;
    a.assemble(CODE_BASE)
}

/// Decodes the probe guest's output words (leaf 0 EAX, 7 EBX, 80000000H EAX,
/// 80000001H EDX, 80000008H EAX); leaves above the maxima read as absent.
pub fn decode_probe(w: [u32; 5]) -> CpuFeatures {
    let leaf7 = if w[0] >= 7 { w[1] } else { 0 };
    let ext1 = if w[2] >= 0x8000_0001 { w[3] } else { 0 };
    let ext8 = if w[2] >= 0x8000_0008 { w[4] } else { 0 };
    CpuFeatures {
        nx: ext1 & (1 << 20) != 0,
        gbpages: ext1 & (1 << 26) != 0,
        smep: leaf7 & (1 << 7) != 0,
        smap: leaf7 & (1 << 20) != 0,
        maxphyaddr: if ext8 & 0xff == 0 {
            36
        } else {
            (ext8 & 0xff) as u8
        },
    }
}

/// ACPI S5 through PM1a_CNT (port 0x604, SLP_TYP 0 | SLP_EN = 0x2000), then `hlt`.
fn emit_power_off(a: &mut CodeAssembler) -> Result<(), IcedError> {
    a.mov(dx, 0x604u32)?;
    a.mov(ax, 0x2000u32)?;
    a.out(dx, ax)?;
    a.hlt()
}

/// The control-register state of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunConfig {
    /// CR0.WP.
    pub wp: bool,
    /// EFER.NXE.
    pub nxe: bool,
    /// CR4.SMEP.
    pub smep: bool,
    /// CR4.SMAP.
    pub smap: bool,
    /// 1-GiB pages may be generated (CPUID Page1GB).
    pub gbpages: bool,
    /// CPL-3 cases are generated.
    pub user: bool,
    /// MAXPHYADDR (reserved-bit positions).
    pub maxphyaddr: u8,
}

impl RunConfig {
    /// A random configuration using only features `f` reports.
    pub fn random(rng: &mut Rng, f: &CpuFeatures, user: bool) -> Self {
        RunConfig {
            wp: rng.chance(50),
            nxe: f.nx && rng.chance(75),
            smep: f.smep && rng.chance(50),
            smap: f.smap && rng.chance(50),
            gbpages: f.gbpages,
            user,
            maxphyaddr: f.maxphyaddr,
        }
    }

    /// CR0: PE | ET | NE | PG (+ WP).
    pub fn cr0(&self) -> u64 {
        cr::CR0_PE | cr::CR0_ET | cr::CR0_NE | cr::CR0_PG | if self.wp { 1 << 16 } else { 0 }
    }

    /// CR4: PAE (+ SMEP bit 20, SMAP bit 21).
    pub fn cr4(&self) -> u64 {
        cr::CR4_PAE | if self.smep { 1 << 20 } else { 0 } | if self.smap { 1 << 21 } else { 0 }
    }

    /// EFER: LME | LMA (+ NXE bit 11).
    pub fn efer(&self) -> u64 {
        cr::EFER_LME | cr::EFER_LMA | if self.nxe { 1 << 11 } else { 0 }
    }
}

/// Read, write or fetch, as the case table encodes it (bits 1:0 of the kind word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `mov rdx, [rbx]`.
    Read = 0,
    /// `mov [rbx], rax`.
    Write = 1,
    /// `call rbx` (the target byte is `ret`).
    Fetch = 2,
}

/// One access the guest makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    /// The linear address (canonical, 8-byte aligned).
    pub linear: u64,
    /// Read, write or fetch.
    pub kind: Kind,
    /// From CPL 3 (else CPL 0).
    pub user: bool,
    /// RFLAGS.AC during a CPL-0 access.
    pub ac: bool,
}

impl Case {
    /// The case-table kind word: kind | user << 8 | ac << 9.
    pub fn word(&self) -> u64 {
        self.kind as u64 | u64::from(self.user) << 8 | u64::from(self.ac) << 9
    }
}

/// The value a write in case `index` stores.
pub fn write_marker(index: usize) -> u64 {
    0xc3 | (CASES_BASE + 16 * index as u64) << 8
}

/// The initial value of the data word at `gpa`.
pub fn data_word(gpa: u64) -> u64 {
    0xc3 | gpa << 8
}

/// A random set of test mappings: table entries (by guest-physical address)
/// and the linear addresses cases use.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Every test entry written into the tables (PML4 slots 1..=511 and the arena).
    pub entries: BTreeMap<u64, u64>,
    /// Entries that were given a reserved bit (a walk stops there with RSVD).
    pub reserved: HashSet<u64>,
    /// The linear addresses cases use.
    pub addresses: Vec<u64>,
    next_table: u64,
}

/// Sign-extends bit 47 (a canonical 4-level address, SDM 3.3.7.1).
pub fn canonical(a: u64) -> u64 {
    ((a << 16) as i64 >> 16) as u64
}

impl Layout {
    /// Generates about `n` addresses over shared upper-level tables.
    pub fn random(rng: &mut Rng, cfg: &RunConfig, n: usize) -> Self {
        let mut l = Layout {
            next_table: ARENA.start,
            ..Default::default()
        };
        let pool = |rng: &mut Rng, k: usize, lo: u64| -> Vec<u64> {
            (0..k).map(|_| lo + rng.below(512 - lo)).collect()
        };
        let pml4 = pool(rng, 3, 1);
        let pdpt = pool(rng, 3, 0);
        let pd = pool(rng, 3, 0);
        let pt = pool(rng, 4, 0);
        let pick = |rng: &mut Rng, v: &[u64]| v[rng.below(v.len() as u64) as usize];
        let mut tries = 0;
        while l.addresses.len() < n && tries < n * 20 {
            tries += 1;
            let idx = [
                pick(rng, &pml4),
                pick(rng, &pdpt),
                pick(rng, &pd),
                pick(rng, &pt),
            ];
            let a = l.place(rng, cfg, idx);
            if !l.addresses.contains(&a) {
                l.addresses.push(a);
            }
        }
        l
    }

    fn alloc_table(&mut self) -> Option<u64> {
        let t = self.next_table;
        if t + 4096 > ARENA.end {
            return None;
        }
        self.next_table += 4096;
        Some(t)
    }

    /// Follows (creating as needed) the path for the indices and returns the
    /// linear address, whose low bits depend on the page size reached.
    fn place(&mut self, rng: &mut Rng, cfg: &RunConfig, idx: [u64; 4]) -> u64 {
        let mut table = PML4;
        let mut level = 0;
        let base = idx[0] << 39 | idx[1] << 30 | idx[2] << 21 | idx[3] << 12;
        let small = (rng.below(512) * 8) & 0xfff;
        loop {
            let gpa = table + idx[level] * 8;
            let v = match self.entries.get(&gpa) {
                Some(&v) => v,
                None => {
                    let v = self.new_entry(rng, cfg, level, gpa);
                    self.entries.insert(gpa, v);
                    v
                }
            };
            let leaf = ((level == 1 || level == 2) && v & PS != 0) || level == 3;
            if v & P == 0 || leaf || self.reserved.contains(&gpa) {
                let addr = match (leaf, level) {
                    // 1 GiB page at frame 0: pick an offset inside the data area.
                    (true, 1) => {
                        (base & !((1 << 30) - 1))
                            | ((DATA.start + rng.below(DATA.end - DATA.start)) & !7)
                    }
                    (true, 2) => (base & !((1 << 21) - 1)) | (rng.below(1 << 21) & !7),
                    _ => base | small,
                };
                return canonical(addr);
            }
            table = v & 0x000f_ffff_ffff_f000 & ((1u64 << cfg.maxphyaddr) - 1);
            level += 1;
        }
    }

    /// A random entry at `level` (0 = PML4E .. 3 = PTE) stored at `gpa`.
    fn new_entry(&mut self, rng: &mut Rng, cfg: &RunConfig, level: usize, gpa: u64) -> u64 {
        let mut v = 0;
        for (bit, pct) in [(P, 95), (RW, 85), (US, 85), (A, 50)] {
            if rng.chance(pct) {
                v |= bit;
            }
        }
        if rng.chance(if cfg.nxe { 25 } else { 3 }) {
            v |= XD;
            if !cfg.nxe {
                self.reserved.insert(gpa);
            }
        }
        // Bits the architecture ignores: 11:9 and 62:52 (PKE is off).
        if rng.chance(10) {
            v |= (rng.next_u64() & 7) << 9 | (rng.next_u64() & 0x7ff) << 52;
        }
        let large = match level {
            1 => cfg.gbpages && rng.chance(15),
            2 => rng.chance(25),
            _ => false,
        };
        let leaf = large || level == 3;
        if leaf {
            for (bit, pct) in [(D, 50), (G, 20)] {
                if rng.chance(pct) {
                    v |= bit;
                }
            }
        }
        v |= match (level, large) {
            (1, true) => PS, // frame 0: the offset picks the data area
            (2, true) => PS | (DATA.start + rng.below(2) * (2 << 20)),
            (3, _) => DATA.start + rng.below((DATA.end - DATA.start) / 4096) * 4096,
            _ => self.alloc_table().unwrap_or(0),
        };
        if rng.chance(3) {
            let mut choices = Vec::new();
            if cfg.maxphyaddr < 52 {
                choices
                    .push(1u64 << (cfg.maxphyaddr as u64 + rng.below(52 - cfg.maxphyaddr as u64)));
            }
            match (level, large) {
                (0, _) => choices.push(PS),
                (1, true) => choices.push(1 << (13 + rng.below(17))),
                (2, true) => choices.push(1 << (13 + rng.below(8))),
                _ => {}
            }
            if !choices.is_empty() {
                v |= choices[rng.below(choices.len() as u64) as usize];
                self.reserved.insert(gpa);
            }
        }
        v
    }

    /// The entries a walk of `linear` reads, outermost first, following the
    /// *initial* tables: it stops at a non-present entry, an entry with a
    /// reserved bit, or the leaf.
    pub fn path(&self, cfg: &RunConfig, linear: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut table = PML4;
        for level in 0..4 {
            let idx = (linear >> (39 - 9 * level)) & 511;
            let gpa = table + idx * 8;
            let v = self.initial(gpa);
            out.push((gpa, v));
            let leaf = (level == 1 || level == 2) && v & PS != 0;
            if v & P == 0 || leaf || self.reserved.contains(&gpa) {
                break;
            }
            table = v & 0x000f_ffff_ffff_f000 & ((1u64 << cfg.maxphyaddr) - 1);
        }
        out
    }

    /// The initial value of the table entry at `gpa` (test or infrastructure).
    pub fn initial(&self, gpa: u64) -> u64 {
        if let Some(&v) = self.entries.get(&gpa) {
            return v;
        }
        infra_entries()
            .into_iter()
            .find(|&(g, _)| g == gpa)
            .map_or(0, |(_, v)| v)
    }
}

/// The infrastructure entries: PML4[0] → PDPT → PD; PD[0] maps 0..2 MiB
/// (supervisor, RW); PD[1] → PT with the user code page (read-only) and the
/// user stack page. A and D are preset so running the guest changes none.
pub fn infra_entries() -> [(u64, u64); 6] {
    [
        (PML4, INFRA_PDPT | P | RW | US | A),
        (INFRA_PDPT, INFRA_PD | P | RW | US | A),
        (INFRA_PD, P | RW | PS | A | D),
        (INFRA_PD + 8, INFRA_PT | P | RW | US | A),
        (INFRA_PT, USER_CODE | P | US | A),
        (INFRA_PT + 8, (USER_CODE + 0x1000) | P | RW | US | A | D),
    ]
}

/// A segment descriptor (SDM vol. 3, 3.4.5, Figure 3-8) for a flat segment:
/// `type_`, S = 1, `dpl`, P = 1, L, D/B, G = 1, limit 0xfffff.
fn flat_desc(type_: u64, dpl: u64, l: u64, db: u64) -> u64 {
    0xffff | type_ << 40 | 1 << 44 | dpl << 45 | 1 << 47 | 0xf << 48 | l << 53 | db << 54 | 1 << 55
}

/// The GDT: null, kernel code64, kernel data, user data, user code64, TSS (16 bytes).
pub fn gdt_bytes() -> Vec<u8> {
    let tss =
        0x67 | (TSS_BASE & 0xff_ffff) << 16 | 0xb << 40 | 1 << 47 | (TSS_BASE >> 24 & 0xff) << 56;
    let e = [
        0,
        flat_desc(0xb, 0, 1, 0),
        flat_desc(0x3, 0, 0, 1),
        flat_desc(0x3, 3, 0, 1),
        flat_desc(0xb, 3, 1, 0),
        tss,
        TSS_BASE >> 32,
    ];
    e.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The 64-bit TSS (SDM vol. 3, 8.7, Figure 8-11): RSP0 at offset 4, no I/O bitmap.
pub fn tss_bytes() -> Vec<u8> {
    let mut t = vec![0u8; 0x68];
    t[4..12].copy_from_slice(&KSTACK_TOP.to_le_bytes());
    t[102..104].copy_from_slice(&0x68u16.to_le_bytes());
    t
}

/// A 64-bit interrupt gate (SDM vol. 3, 6.14.1, Figure 6-8): type 0xE, P = 1.
fn gate(handler: u64, dpl: u64) -> [u8; 16] {
    let lo = (handler & 0xffff)
        | u64::from(KERNEL_CS) << 16
        | (0xe | dpl << 5 | 0x80) << 40
        | (handler >> 16 & 0xffff) << 48;
    let mut g = [0u8; 16];
    g[..8].copy_from_slice(&lo.to_le_bytes());
    g[8..].copy_from_slice(&(handler >> 32).to_le_bytes());
    g
}

/// The assembled guest: kernel code, user stubs, and the IDT that points at the handlers.
#[derive(Debug, Clone)]
pub struct GuestImage {
    /// Kernel code at [`CODE_BASE`].
    pub code: Vec<u8>,
    /// User stubs at [`USER_CODE`].
    pub user: Vec<u8>,
    /// IDT bytes at [`IDT_BASE`].
    pub idt: Vec<u8>,
    /// Offset of each user stub's `ud2` within its 16-byte slot.
    pub user_ud2: [u64; 3],
}

/// Vectors whose exceptions push an error code (SDM vol. 3, 6.15, Table 6-1).
const HAS_ERROR_CODE: [u64; 10] = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30];

/// Assembles the guest for `n` cases.
///
/// Registers in the loop: RSI = case, RDI = result, R13 = cases left,
/// R14 = `next` (handlers jump there), R15 = the kernel stack top.
pub fn build_guest(n: usize) -> Result<GuestImage, String> {
    let g = assemble_guest(n).map_err(|e| format!("assembling the MMU test guest: {e}"))?;
    if g.user.len() != 48 {
        return Err(format!("user stubs are {} bytes, not 3 x 16", g.user.len()));
    }
    Ok(g)
}

fn assemble_guest(n: usize) -> Result<GuestImage, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut top = a.create_label();
    let mut next = a.create_label();
    let mut done = a.create_label();
    let mut user = a.create_label();
    let mut k_read = a.create_label();
    let mut k_write = a.create_label();
    let mut k_ok = a.create_label();
    let mut common = a.create_label();

    a.mov(r15, rsp)?;
    a.mov(rsi, CASES_BASE)?;
    a.mov(rdi, RESULTS_BASE)?;
    a.mov(r13, n as u64)?;
    a.lea(r14, ptr(next))?;
    a.set_label(&mut top)?;
    a.test(r13, r13)?;
    a.jz(done)?;
    a.mov(rbx, qword_ptr(rsi))?;
    a.mov(rcx, qword_ptr(rsi + 8))?;
    a.mov(qword_ptr(rdi), STATUS_PENDING as i32)?;
    // RAX = the write marker: 0xc3 | case address << 8.
    a.mov(rax, rsi)?;
    a.shl(rax, 8u32)?;
    a.or(rax, 0xc3i32)?;
    // RFLAGS = 2 | AC (kind bit 9 -> RFLAGS bit 18).
    a.mov(rdx, rcx)?;
    a.and(rdx, 0x200i32)?;
    a.shl(rdx, 9u32)?;
    a.or(rdx, rflags::FIXED as i32)?;
    a.push(rdx)?;
    a.popfq()?;
    a.test(rcx, 0x100i32)?;
    a.jnz(user)?;
    a.cmp(cl, 0i32)?;
    a.je(k_read)?;
    a.cmp(cl, 1i32)?;
    a.je(k_write)?;
    a.call(rbx)?;
    a.xor(edx, edx)?;
    a.jmp(k_ok)?;
    a.set_label(&mut k_read)?;
    a.mov(rdx, qword_ptr(rbx))?;
    a.jmp(k_ok)?;
    a.set_label(&mut k_write)?;
    a.mov(qword_ptr(rbx), rax)?;
    a.xor(edx, edx)?;
    a.set_label(&mut k_ok)?;
    a.mov(qword_ptr(rdi), STATUS_OK as i32)?;
    a.mov(qword_ptr(rdi + 8), rdx)?;
    a.jmp(next)?;

    // CPL 3: iretq to the stub for this kind (USER_CODE + kind * 16).
    a.set_label(&mut user)?;
    a.movzx(edx, cl)?;
    a.shl(rdx, 4u32)?;
    a.add(rdx, USER_CODE as i32)?;
    a.push(i32::from(USER_SS))?;
    a.push(USER_STACK_TOP as i32)?;
    a.push(rflags::FIXED as i32)?;
    a.push(i32::from(USER_CS))?;
    a.push(rdx)?;
    a.iretq()?;

    a.set_label(&mut next)?;
    a.add(rsi, 16i32)?;
    a.add(rdi, RESULT_SIZE as i32)?;
    a.dec(r13)?;
    a.jmp(top)?;
    a.set_label(&mut done)?;
    emit_power_off(&mut a)?;

    // Exception stubs: [error code,] vector, then the common recorder.
    let mut stubs = Vec::new();
    for v in 0..32u64 {
        let mut l = a.create_label();
        a.set_label(&mut l)?;
        if !HAS_ERROR_CODE.contains(&v) {
            a.push(0i32)?;
        }
        a.push(v as i32)?;
        a.jmp(common)?;
        stubs.push(l);
    }
    a.set_label(&mut common)?;
    a.pop(rcx)?;
    a.mov(qword_ptr(rdi), rcx)?;
    a.pop(rcx)?;
    a.mov(qword_ptr(rdi + 8), rcx)?;
    a.mov(rcx, cr2)?;
    a.mov(qword_ptr(rdi + 16), rcx)?;
    a.mov(rcx, qword_ptr(rsp))?;
    a.mov(qword_ptr(rdi + 24), rcx)?;
    a.mov(qword_ptr(rdi + 32), rdx)?;
    a.mov(rsp, r15)?;
    a.jmp(r14)?;

    let r = a.assemble_options(
        CODE_BASE,
        BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
    )?;
    let mut idt = vec![0u8; 4096];
    for (v, l) in stubs.iter().enumerate() {
        idt[v * 16..v * 16 + 16].copy_from_slice(&gate(r.label_ip(l)?, 0));
    }

    let mut user_code = Vec::new();
    let mut user_ud2 = [0u64; 3];
    for kind in [Kind::Read, Kind::Write, Kind::Fetch] {
        let mut u = CodeAssembler::new(64)?;
        match kind {
            Kind::Read => u.mov(rdx, qword_ptr(rbx))?,
            Kind::Write => {
                u.mov(qword_ptr(rbx), rax)?;
                u.xor(edx, edx)?;
            }
            Kind::Fetch => {
                u.call(rbx)?;
                u.xor(edx, edx)?;
            }
        }
        let at = USER_CODE + 16 * kind as u64;
        user_ud2[kind as usize] = u.assemble(at)?.len() as u64;
        u.ud2()?;
        user_code.extend_from_slice(&u.assemble(at)?);
        // Pad with int3 to the next slot (a longer stub shows as a wrong total length).
        user_code.resize(user_code.len().max(16 * (kind as usize + 1)), 0xcc);
    }
    Ok(GuestImage {
        code: r.inner.code_buffer,
        user: user_code,
        idt,
        user_ud2,
    })
}

/// The register state that starts the guest: 64-bit CPL 0 with our GDT, IDT,
/// TSS and CR3, and `cfg`'s CR0/CR4/EFER. `base` supplies everything else
/// (e.g. the APIC base) from the loader's long-mode state.
pub fn boot_state(cfg: &RunConfig, base: &Sregs) -> (Regs, Sregs) {
    let seg = |selector: u16, type_: u8, dpl: u8, l: u8, db: u8| Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl,
        db,
        s: 1,
        l,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    let data = seg(KERNEL_DS, 3, 0, 0, 1);
    let mut s = *base;
    s.cs = seg(KERNEL_CS, 0xb, 0, 1, 0);
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = Segment {
        base: TSS_BASE,
        limit: 0x67,
        selector: TSS_SEL,
        type_: 0xb,
        present: 1,
        ..Segment::default()
    };
    s.gdt = DTable {
        base: GDT_BASE,
        limit: (gdt_bytes().len() - 1) as u16,
        padding: [0; 3],
    };
    s.idt = DTable {
        base: IDT_BASE,
        limit: 0xfff,
        padding: [0; 3],
    };
    s.cr0 = cfg.cr0();
    s.cr3 = PML4;
    s.cr4 = cfg.cr4();
    s.efer = cfg.efer();
    let r = Regs {
        rip: CODE_BASE,
        rsp: KSTACK_TOP,
        rflags: rflags::FIXED,
        ..Regs::default()
    };
    (r, s)
}

/// Where the user stub for `kind` raises its `ud2` (stub start + access instruction(s)).
pub fn user_return_rip(image: &GuestImage, kind: Kind) -> u64 {
    USER_CODE + 16 * kind as u64 + image.user_ud2[kind as usize]
}

/// One result record as the guest left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestResult {
    /// [`STATUS_OK`], an exception vector, or [`STATUS_PENDING`].
    pub status: u64,
    /// On a CPL-0 success the value read (0 for writes and fetches); on an exception its error code.
    pub value: u64,
    /// CR2 when an exception was recorded.
    pub cr2: u64,
    /// The saved RIP of the exception.
    pub rip: u64,
    /// RDX at the exception (a CPL-3 read's value).
    pub rdx: u64,
}

impl GuestResult {
    /// Decodes a [`RESULT_SIZE`]-byte record.
    pub fn from_bytes(b: &[u8; RESULT_SIZE as usize]) -> Self {
        let w = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(x)
        };
        GuestResult {
            status: w(0),
            value: w(1),
            cr2: w(2),
            rip: w(3),
            rdx: w(4),
        }
    }
}

/// Random cases over `layout`'s addresses.
pub fn random_cases(rng: &mut Rng, cfg: &RunConfig, layout: &Layout, n: usize) -> Vec<Case> {
    (0..n)
        .map(|_| {
            let linear = layout.addresses[rng.below(layout.addresses.len() as u64) as usize];
            let kind = match rng.below(3) {
                0 => Kind::Read,
                1 => Kind::Write,
                _ => Kind::Fetch,
            };
            Case {
                linear,
                kind,
                user: cfg.user && rng.chance(40),
                ac: rng.chance(50),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_reproducible_and_canonical() {
        let cfg = RunConfig {
            wp: true,
            nxe: true,
            smep: false,
            smap: false,
            gbpages: true,
            user: true,
            maxphyaddr: 48,
        };
        let a = Layout::random(&mut Rng::new(7), &cfg, 40);
        let b = Layout::random(&mut Rng::new(7), &cfg, 40);
        assert_eq!(a.entries, b.entries);
        assert_eq!(a.addresses, b.addresses);
        assert!(a.addresses.len() >= 10, "{}", a.addresses.len());
        for &x in &a.addresses {
            assert_eq!(canonical(x), x);
            assert_ne!((x >> 39) & 511, 0, "PML4 slot 0 is the infrastructure's");
            assert_eq!(x & 7, 0);
        }
        for &gpa in a.entries.keys() {
            assert!((PML4..PML4 + 4096).contains(&gpa) || ARENA.contains(&gpa));
        }
    }

    #[test]
    fn guest_assembles_and_stubs_fit() {
        let g = build_guest(200).expect("assemble");
        assert!(g.code.len() < 0x1_0000);
        assert_eq!(g.user.len(), 48);
        // The #PF gate points into the code and is a present DPL-0 interrupt gate.
        let pf = &g.idt[14 * 16..15 * 16];
        assert_eq!(pf[5], 0x8e);
        let off = u64::from(u16::from_le_bytes([pf[0], pf[1]]))
            | u64::from(u16::from_le_bytes([pf[6], pf[7]])) << 16;
        assert!((CODE_BASE..CODE_BASE + g.code.len() as u64).contains(&off));
        assert_eq!(
            g.user_ud2,
            [3, 5, 4],
            "mov rdx,[rbx] | mov [rbx],rax; xor | call rbx; xor"
        );
    }

    #[test]
    fn probe_decoding_table() {
        let cases = [
            (
                [
                    7u32,
                    1 << 7 | 1 << 20,
                    0x8000_0008,
                    1 << 20 | 1 << 26,
                    0x3030,
                ],
                (true, true, true, true, 48),
            ),
            (
                [6, 1 << 7, 0x8000_0001, 0, 0x3030],
                (false, false, false, false, 36),
            ),
        ];
        for (w, (nx, gb, smep, smap, m)) in cases {
            let f = decode_probe(w);
            assert_eq!(
                (f.nx, f.gbpages, f.smep, f.smap, f.maxphyaddr),
                (nx, gb, smep, smap, m),
                "{w:x?}"
            );
        }
    }
}
