//! The case generator: random CPL-0 integer snippets for one [`Bits`], deterministic
//! from a seed and case index.
//!
//! Invariants, so a case only touches the data area on any correct x86:
//! * a base register (BX/BP in 16-bit code, EBX/EBP, or RBX/RBP/R12..R15) points into
//!   the data area and is never written; explicit memory operands are `[base + disp]`
//!   with the access inside the data area;
//! * the stack pointer starts in the data area's upper half and only bounded
//!   pushes and pops move it; `popf` only pops what `pushf` pushed;
//! * string instructions get SI/DI inside the data area and a count of at most 8
//!   elements right before them;
//! * every flag consumer (ADC/SBB, RCL/RCR, SETcc, CMOVcc, Jcc, LAHF, PUSHF, INTO, BCD)
//!   is preceded by a `cmp` that defines all status flags;
//! * branches are forward only (a Jcc over the next instruction);
//! * privileged writes keep the guest running: CR0 writes never change PE (nor PG
//!   outside 64-bit mode), CR4 writes only toggle bits that change nothing the harness
//!   or the snippet depends on, LGDT/LIDT keep the table base (the handlers are entered
//!   through it) and only grow the limit, LTR/LLDT only use the GDT's prepared
//!   descriptors ([`super::layout::gdt`]); the harness restores all of it before the
//!   next case.
//!
//! Forms left out because the two machines model different CPUs (not bugs): MOV to
//! CR4 setting OSXSAVE, VME, PVI, UMIP, FSGSBASE, PCIDE (64-bit), SMEP, SMAP or PKE
//! (the emulator's model has none of these features, KVM's guest CPUID may have them:
//! the emulator raises #GP as the SDM requires for an unsupported bit, vol. 2B MOV);
//! XSETBV values with SSE/AVX state (XCR0 = 3 or 7: the emulator supports x87 state
//! only, vol. 1, 13.3); XGETBV with ECX = 1 (XINUSE is not in the emulator's model);
//! MOV to CR0 setting reserved bits 31:0 (KVM ignores them, the emulator raises #GP);
//! MOV to CR0 setting bits 63:32 in 64-bit mode (measured: this KVM loads the value
//! without a fault; the SDM, vol. 3, 2.5, requires #GP(0), which the emulator raises);
//! MOV to CR3 setting bits at or above MAXPHYADDR (the two machines' MAXPHYADDR
//! differ).

use super::layout::{self, CODE, CODE_SIZE, DATA, DATA_SIZE};
use super::{Bits, GuestFeatures, KCase};
use hyperplug_oracle::Rng;
use iced_x86::{
    Code, Decoder, DecoderOptions, Encoder, Instruction, MemoryOperand, Mnemonic, Register,
    RepPrefixKind,
};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Looks up an iced-x86 [`Code`] by name (e.g. `"Add_rm32_r32"`).
pub fn code(name: &str) -> Option<Code> {
    static MAP: OnceLock<HashMap<String, Code>> = OnceLock::new();
    MAP.get_or_init(|| Code::values().map(|c| (format!("{c:?}"), c)).collect())
        .get(name)
        .copied()
}

const R8_LEGACY: [Register; 8] = [
    Register::AL,
    Register::CL,
    Register::DL,
    Register::BL,
    Register::AH,
    Register::CH,
    Register::DH,
    Register::BH,
];
const R8_64: [Register; 16] = [
    Register::AL,
    Register::CL,
    Register::DL,
    Register::BL,
    Register::SPL,
    Register::BPL,
    Register::SIL,
    Register::DIL,
    Register::R8L,
    Register::R9L,
    Register::R10L,
    Register::R11L,
    Register::R12L,
    Register::R13L,
    Register::R14L,
    Register::R15L,
];

/// The GPR of `size` bits with encoding index `i`.
fn gpr(size: u32, i: usize) -> Register {
    let base = match size {
        16 => Register::AX,
        32 => Register::EAX,
        _ => Register::RAX,
    };
    // iced's register enum lists AX..R15W, EAX..R15D, RAX..R15 contiguously.
    Register::values()
        .nth(base as usize + i)
        .unwrap_or(Register::None)
}

/// Condition-code suffixes in encoding order (SDM vol. 2, B.1.4.7).
const CC: [&str; 16] = [
    "o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g",
];

/// Instruction families (the differential test reports per mode, not per family).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fam {
    Alu,
    Unary,
    Shift,
    DoubleShift,
    MulDiv,
    Move,
    Exchange,
    Flags,
    CondMove,
    Stack,
    String,
    Convert,
    Bcd,
    BitTest,
    Branch,
    Fault,
    System,
    CrWrite,
    DescTable,
    NewInsn,
}

const FAMS: [(Fam, u32); 20] = [
    (Fam::Alu, 8),
    (Fam::Unary, 3),
    (Fam::Shift, 5),
    (Fam::DoubleShift, 2),
    (Fam::MulDiv, 4),
    (Fam::Move, 5),
    (Fam::Exchange, 3),
    (Fam::Flags, 3),
    (Fam::CondMove, 3),
    (Fam::Stack, 4),
    (Fam::String, 3),
    (Fam::Convert, 2),
    (Fam::Bcd, 2),
    (Fam::BitTest, 2),
    (Fam::Branch, 2),
    (Fam::Fault, 1),
    (Fam::System, 2),
    (Fam::CrWrite, 4),
    (Fam::DescTable, 3),
    (Fam::NewInsn, 3),
];

/// CR0 bits (SDM vol. 3, 2.5, Figure 2-7).
mod cr0b {
    pub const PE: u64 = 1 << 0;
    pub const MP: u64 = 1 << 1;
    pub const EM: u64 = 1 << 2;
    pub const TS: u64 = 1 << 3;
    pub const NE: u64 = 1 << 5;
    pub const WP: u64 = 1 << 16;
    pub const AM: u64 = 1 << 18;
    pub const NW: u64 = 1 << 29;
    pub const CD: u64 = 1 << 30;
}

/// CR0 bits a write may toggle and the guest keeps running: the x87 controls, WP
/// (all pages are writable), AM (CPL 0 never checks alignment), CD (SDM vol. 3,
/// 2.5).
const CR0_TOGGLE: [u64; 7] = [
    cr0b::MP,
    cr0b::EM,
    cr0b::TS,
    cr0b::NE,
    cr0b::WP,
    cr0b::AM,
    cr0b::CD,
];

/// CR4 bits (SDM vol. 3, 2.5, Figure 2-8).
mod cr4b {
    pub const TSD: u64 = 1 << 2;
    pub const DE: u64 = 1 << 3;
    pub const PSE: u64 = 1 << 4;
    pub const PAE: u64 = 1 << 5;
    pub const MCE: u64 = 1 << 6;
    pub const PGE: u64 = 1 << 7;
    pub const PCE: u64 = 1 << 8;
    pub const OSFXSR: u64 = 1 << 9;
    pub const OSXMMEXCPT: u64 = 1 << 10;
    pub const LA57: u64 = 1 << 12;
    pub const PCIDE: u64 = 1 << 17;
    pub const OSXSAVE: u64 = 1 << 18;
}

/// CR4 bits both machines accept and that change nothing the snippet or the harness
/// depends on at CPL 0 (PSE is ignored with PAE paging or paging off, PGE only
/// flushes the TLB).
const CR4_TOGGLE: [u64; 8] = [
    cr4b::TSD,
    cr4b::DE,
    cr4b::PSE,
    cr4b::MCE,
    cr4b::PGE,
    cr4b::PCE,
    cr4b::OSFXSR,
    cr4b::OSXMMEXCPT,
];

struct Gen<'a> {
    rng: &'a mut Rng,
    bits: Bits,
    /// Full base register and its value.
    base: Register,
    base_val: u64,
    /// Bytes pushed and not popped.
    depth: u64,
    code: Vec<u8>,
    excluded: &'a [Mnemonic],
    /// Inside `enter` ... `leave`: the frame pointer is not written either.
    protect_bp: bool,
    /// Register operands only (between `pushf` and `popf`, so the pushed image is
    /// not overwritten).
    reg_only: bool,
    /// The guest's CPUID features.
    features: GuestFeatures,
    /// CR4 as the code emitted so far leaves it (when it runs to here).
    cr4: u64,
}

type R<T> = Option<T>;

impl Gen<'_> {
    fn w(&self) -> u32 {
        self.bits.width()
    }

    /// Operand sizes for general instructions.
    fn size(&mut self) -> u32 {
        let sizes: &[u32] = if self.bits == Bits::Long64 {
            &[8, 16, 32, 64, 64]
        } else if self.bits.width() == 16 {
            &[8, 16, 16, 32]
        } else {
            &[8, 16, 32, 32]
        };
        sizes[self.rng.below(sizes.len() as u64) as usize]
    }

    fn nregs(&self) -> usize {
        self.bits.gprs()
    }

    /// A register of `size` bits; `dest` excludes the stack pointer and the base.
    fn reg(&mut self, size: u32, dest: bool) -> Register {
        loop {
            let r = if size == 8 {
                if self.bits == Bits::Long64 {
                    R8_64[self.rng.below(16) as usize]
                } else {
                    R8_LEGACY[self.rng.below(8) as usize]
                }
            } else {
                gpr(size, self.rng.below(self.nregs() as u64) as usize)
            };
            let full = r.full_register();
            let bp = self.protect_bp && full == Register::RBP;
            if !dest || (full != Register::RSP && full != self.base.full_register() && !bp) {
                return r;
            }
        }
    }

    /// A `[base + disp]` operand for an access of `len` bytes inside the data area.
    fn mem(&mut self, len: u64) -> MemoryOperand {
        let lo = DATA as i64 - self.base_val as i64;
        let hi = (DATA + DATA_SIZE as u64 - len) as i64 - self.base_val as i64;
        let mut disp = self.rng.range(lo, hi);
        if self.rng.chance(1, 2) {
            disp &= !(len.min(8) as i64 - 1);
            if disp < lo {
                disp += len.min(8) as i64;
            }
        }
        MemoryOperand::with_base_displ(self.base, disp)
    }

    fn emit(&mut self, i: &Instruction) -> R<()> {
        if self.excluded.contains(&i.mnemonic()) {
            return None;
        }
        let mut e = Encoder::new(self.w());
        let ip = CODE + self.code.len() as u64;
        e.encode(i, ip).ok()?;
        let b = e.take_buffer();
        // Room for the terminator (5 bytes).
        if self.code.len() + b.len() + 5 > CODE_SIZE {
            return None;
        }
        self.code.extend_from_slice(&b);
        Some(())
    }

    fn ins(&mut self, name: &str, ops: &[Op]) -> R<()> {
        let c = code(name)?;
        let i = build(c, ops)?;
        self.emit(&i)
    }

    /// `cmp r, r` (or imm): defines every status flag before a consumer.
    fn define_flags(&mut self) -> R<()> {
        let s = if self.bits == Bits::Long64 { 64 } else { 32 };
        let a = self.reg(s, false);
        if self.rng.chance(1, 2) {
            let b = self.reg(s, false);
            self.ins(&format!("Cmp_rm{s}_r{s}"), &[Op::R(a), Op::R(b)])
        } else {
            let imm = self.rng.edgy_u64() as i32;
            self.ins(&format!("Cmp_rm{s}_imm32"), &[Op::R(a), Op::I(imm as i64)])
        }
    }

    /// A random register or memory r/m operand of `size`.
    fn rm(&mut self, size: u32, dest: bool) -> Op {
        if self.rng.chance(1, 3) && !self.reg_only {
            Op::M(self.mem(u64::from(size / 8)))
        } else {
            Op::R(self.reg(size, dest))
        }
    }

    fn imm_for(&mut self, size: u32) -> i64 {
        let v = self.rng.edgy_u64();
        match size {
            8 => v as i8 as i64,
            16 => v as i16 as i64,
            _ => v as i32 as i64,
        }
    }

    fn group(&mut self, fam: Fam) -> R<()> {
        let s = self.size();
        let b = self.bits;
        match fam {
            Fam::Alu => {
                let ops = [
                    "Add", "Or", "Adc", "Sbb", "And", "Sub", "Xor", "Cmp", "Test",
                ];
                let op = ops[self.rng.below(ops.len() as u64) as usize];
                if matches!(op, "Adc" | "Sbb") {
                    self.define_flags()?;
                }
                let dst = self.rm(s, true);
                match self.rng.below(3) {
                    0 if op != "Test" && !self.reg_only => {
                        let r = self.reg(s, true);
                        let src = Op::M(self.mem(u64::from(s / 8)));
                        self.ins(&format!("{op}_r{s}_rm{s}"), &[Op::R(r), src])
                    }
                    1 => {
                        let r = self.reg(s, false);
                        self.ins(&format!("{op}_rm{s}_r{s}"), &[dst, Op::R(r)])
                    }
                    _ => {
                        let isz = if s == 64 { 32 } else { s };
                        if s > 8 && op != "Test" && self.rng.chance(1, 2) {
                            let imm = self.imm_for(8);
                            self.ins(&format!("{op}_rm{s}_imm8"), &[dst, Op::I(imm)])
                        } else {
                            let imm = self.imm_for(isz);
                            self.ins(&format!("{op}_rm{s}_imm{isz}"), &[dst, Op::I(imm)])
                        }
                    }
                }
            }
            Fam::Unary => {
                let ops = ["Inc", "Dec", "Neg", "Not"];
                let op = ops[self.rng.below(4) as usize];
                let dst = self.rm(s, true);
                self.ins(&format!("{op}_rm{s}"), &[dst])
            }
            Fam::Shift => {
                let ops = ["Rol", "Ror", "Rcl", "Rcr", "Shl", "Shr", "Sar"];
                let op = ops[self.rng.below(7) as usize];
                if matches!(op, "Rcl" | "Rcr") {
                    self.define_flags()?;
                }
                let dst = self.rm(s, true);
                match self.rng.below(3) {
                    0 => self.ins(&format!("{op}_rm{s}_1"), &[dst, Op::I(1)]),
                    1 => {
                        let c = self.rng.below(70) as i64;
                        self.ins(&format!("{op}_rm{s}_imm8"), &[dst, Op::I(c)])
                    }
                    _ => {
                        let c = self.rng.below(70) as i64;
                        self.ins("Mov_r8_imm8", &[Op::R(Register::CL), Op::I(c)])?;
                        let dst = if matches!(dst, Op::R(r) if r.full_register() == Register::RCX) {
                            Op::M(self.mem(u64::from(s / 8)))
                        } else {
                            dst
                        };
                        self.ins(&format!("{op}_rm{s}_CL"), &[dst, Op::R(Register::CL)])
                    }
                }
            }
            Fam::DoubleShift => {
                let s = if s == 8 { 32 } else { s };
                let op = if self.rng.chance(1, 2) {
                    "Shld"
                } else {
                    "Shrd"
                };
                let dst = self.rm(s, true);
                let src = self.reg(s, false);
                // A 16-bit count above 16 leaves the result undefined (SDM vol. 2B, SHLD).
                let maxc = if s == 16 { 17 } else { 70 };
                let c = self.rng.below(maxc) as i64;
                if self.rng.chance(1, 2) {
                    self.ins(
                        &format!("{op}_rm{s}_r{s}_imm8"),
                        &[dst, Op::R(src), Op::I(c)],
                    )
                } else {
                    if matches!(dst, Op::R(r) if r.full_register() == Register::RCX)
                        || src.full_register() == Register::RCX
                    {
                        return None;
                    }
                    self.ins("Mov_r8_imm8", &[Op::R(Register::CL), Op::I(c)])?;
                    self.ins(
                        &format!("{op}_rm{s}_r{s}_CL"),
                        &[dst, Op::R(src), Op::R(Register::CL)],
                    )
                }
            }
            Fam::MulDiv => {
                let ops = ["Mul", "Imul", "Div", "Idiv", "Imul2", "Imul3"];
                let op = ops[self.rng.below(6) as usize];
                // RAX/RDX are written: the base is never RAX/RDX.
                match op {
                    "Imul2" if s > 8 => {
                        let r = self.reg(s, true);
                        let src = self.rm(s, false);
                        self.ins(&format!("Imul_r{s}_rm{s}"), &[Op::R(r), src])
                    }
                    "Imul3" if s > 8 => {
                        let r = self.reg(s, true);
                        let src = self.rm(s, false);
                        let isz = if s == 64 { 32 } else { s };
                        let imm = self.imm_for(isz);
                        self.ins(
                            &format!("Imul_r{s}_rm{s}_imm{isz}"),
                            &[Op::R(r), src, Op::I(imm)],
                        )
                    }
                    "Imul2" | "Imul3" => None,
                    _ => {
                        let src = self.rm(s, false);
                        if matches!(op, "Div" | "Idiv") && self.rng.chance(3, 4) {
                            // Mostly avoid #DE: a small high half, a non-zero divisor.
                            let hi = if s == 8 { Register::AH } else { gpr(s, 2) };
                            let v = self.rng.below(3) as i64;
                            self.ins(
                                &format!("Mov_r{s}_imm{}", if s == 64 { 64 } else { s }),
                                &[Op::R(hi), Op::I(v)],
                            )?;
                            if let Op::R(r) = src {
                                let f = r.full_register();
                                if f != Register::RAX
                                    && f != Register::RDX
                                    && f != Register::RSP
                                    && f != self.base.full_register()
                                {
                                    self.ins(&format!("Or_rm{s}_imm8"), &[src, Op::I(0x40)])?;
                                }
                            }
                        }
                        self.ins(&format!("{op}_rm{s}"), &[src])
                    }
                }
            }
            Fam::Move => match self.rng.below(6) {
                0 => {
                    let r = self.reg(s, true);
                    let v = if s == 64 {
                        self.rng.edgy_u64() as i64
                    } else {
                        self.imm_for(s)
                    };
                    self.ins(&format!("Mov_r{s}_imm{s}"), &[Op::R(r), Op::I(v)])
                }
                1 => {
                    let r = self.reg(s, true);
                    let src = self.rm(s, false);
                    self.ins(&format!("Mov_r{s}_rm{s}"), &[Op::R(r), src])
                }
                2 => {
                    let m = Op::M(self.mem(u64::from(s / 8)));
                    let r = self.reg(s, false);
                    self.ins(&format!("Mov_rm{s}_r{s}"), &[m, Op::R(r)])
                }
                3 => {
                    let ds = if b == Bits::Long64 && self.rng.chance(1, 3) {
                        64
                    } else if self.rng.chance(1, 2) {
                        32
                    } else {
                        16
                    };
                    let ss = if ds == 16 || self.rng.chance(1, 2) {
                        8
                    } else {
                        16
                    };
                    let op = if self.rng.chance(1, 2) {
                        "Movzx"
                    } else {
                        "Movsx"
                    };
                    let r = self.reg(ds, true);
                    let src = self.rm(ss, false);
                    self.ins(&format!("{op}_r{ds}_rm{ss}"), &[Op::R(r), src])
                }
                4 => {
                    let s = if s == 8 { 16 } else { s };
                    let r = self.reg(s, true);
                    let m = self.mem(8);
                    self.ins(&format!("Lea_r{s}_m"), &[Op::R(r), Op::M(m)])
                }
                _ => {
                    if b == Bits::Long64 && self.rng.chance(1, 2) {
                        let r = self.reg(64, true);
                        let src = self.rm(32, false);
                        self.ins("Movsxd_r64_rm32", &[Op::R(r), src])
                    } else {
                        let s = if s == 8 { 32 } else { s };
                        let s = if s == 16 { 32 } else { s };
                        let r = self.reg(s, true);
                        self.ins(&format!("Bswap_r{s}"), &[Op::R(r)])
                    }
                }
            },
            Fam::Exchange => {
                let op = ["Xchg", "Xadd", "Cmpxchg"][self.rng.below(3) as usize];
                let mut dst = self.rm(s, true);
                if op == "Cmpxchg" && s == 32 && b == Bits::Long64 {
                    // KVM's emulator writes a 32-bit register destination back on a
                    // failed compare (clearing bits 63:32); the CPU leaves it alone.
                    dst = Op::M(self.mem(4));
                }
                let r = self.reg(s, true);
                self.ins(&format!("{op}_rm{s}_r{s}"), &[dst, Op::R(r)])
            }
            Fam::Flags => {
                let all = [
                    "Clc", "Stc", "Cmc", "Cld", "Std", "Lahf", "Sahf", "Cli", "Sti",
                ];
                let op = all[self.rng.below(all.len() as u64) as usize];
                if matches!(op, "Cmc" | "Lahf") {
                    self.define_flags()?;
                }
                self.ins(op, &[])
            }
            Fam::CondMove => {
                self.define_flags()?;
                let cc = CC[self.rng.below(16) as usize];
                if s == 8 || self.rng.chance(1, 2) {
                    let dst = self.rm(8, true);
                    self.ins(&format!("Set{cc}_rm8"), &[dst])
                } else {
                    let r = self.reg(s, true);
                    let src = self.rm(s, false);
                    self.ins(&format!("Cmov{cc}_r{s}_rm{s}"), &[Op::R(r), src])
                }
            }
            Fam::Stack => self.stack(),
            Fam::String => self.string(),
            Fam::Convert => {
                let all: &[&str] = if b == Bits::Long64 {
                    &["Cbw", "Cwde", "Cdqe", "Cwd", "Cdq", "Cqo"]
                } else {
                    &["Cbw", "Cwde", "Cwd", "Cdq"]
                };
                let op = all[self.rng.below(all.len() as u64) as usize];
                self.ins(op, &[])
            }
            Fam::Bcd => {
                if b == Bits::Long64 {
                    return None;
                }
                self.define_flags()?;
                match self.rng.below(6) {
                    0 => self.ins("Daa", &[]),
                    1 => self.ins("Das", &[]),
                    2 => self.ins("Aaa", &[]),
                    3 => self.ins("Aas", &[]),
                    4 => {
                        let imm = if self.rng.chance(1, 8) {
                            0
                        } else {
                            1 + self.rng.below(20)
                        };
                        self.ins("Aam_imm8", &[Op::I(imm as i64)])?;
                        // KVM's emulator sets SF/ZF/PF from AX or EAX, not AL (SDM
                        // vol. 2A, AAM "Flags Affected"): redefine them.
                        self.define_flags()
                    }
                    _ => {
                        let imm = self.rng.below(20) as i64;
                        self.ins("Aad_imm8", &[Op::I(imm)])?;
                        self.define_flags()
                    }
                }
            }
            Fam::BitTest => {
                let s = if s == 8 { 16 } else { s };
                let op = ["Bt", "Bts", "Btr", "Btc"][self.rng.below(4) as usize];
                if self.rng.chance(1, 2) {
                    let dst = self.rm(s, true);
                    let imm = self.rng.below(256) as i64;
                    self.ins(&format!("{op}_rm{s}_imm8"), &[dst, Op::I(imm)])
                } else {
                    // Register bit base only: a memory base with a register offset
                    // reaches outside the data area.
                    let dst = self.reg(s, true);
                    let r = self.reg(s, false);
                    self.ins(&format!("{op}_rm{s}_r{s}"), &[Op::R(dst), Op::R(r)])
                }
            }
            Fam::Branch => {
                self.define_flags()?;
                let cc = CC[self.rng.below(16) as usize];
                // Generate the skipped instruction first, then splice the Jcc in front.
                let at = self.code.len();
                let f = [Fam::Alu, Fam::Unary, Fam::Move][self.rng.below(3) as usize];
                self.group(f)?;
                let skipped = self.code.split_off(at);
                let suffix = match b {
                    Bits::Real16 | Bits::Prot16 => 16,
                    Bits::Prot32 => 32,
                    Bits::Long64 => 64,
                };
                let c = code(&format!("J{cc}_rel8_{suffix}"))?;
                let jcc_len = 2u64;
                let target = CODE + (at + skipped.len()) as u64 + jcc_len;
                let i = Instruction::with_branch(c, target).ok()?;
                self.emit(&i)?;
                if self.code.len() + skipped.len() + 5 > CODE_SIZE {
                    return None;
                }
                self.code.extend_from_slice(&skipped);
                Some(())
            }
            Fam::Fault => match self.rng.below(5) {
                0 => self.ins("Ud2", &[]),
                1 => self.ins("Int3", &[]),
                2 if b != Bits::Long64 => {
                    // INTO traps when OF = 1 (#OF, SDM vol. 2A, INT n/INTO).
                    self.define_flags()?;
                    self.ins("Into", &[])
                }
                3 => {
                    // Division by zero.
                    let r = self.reg(s, true);
                    if matches!(r.full_register(), Register::RAX | Register::RDX) {
                        return None;
                    }
                    self.ins(&format!("Xor_rm{s}_r{s}"), &[Op::R(r), Op::R(r)])?;
                    let op = if self.rng.chance(1, 2) { "Div" } else { "Idiv" };
                    self.ins(&format!("{op}_rm{s}"), &[Op::R(r)])
                }
                _ if b == Bits::Long64 => {
                    // A non-canonical address: #GP(0) (SDM vol. 3, 3.3.7.1).
                    let r = self.reg(64, true);
                    self.ins(
                        "Mov_r64_imm64",
                        &[Op::R(r), Op::I(0x8000_0000_0000_0000u64 as i64)],
                    )?;
                    let d = self.reg(32, true);
                    let m = MemoryOperand::with_base_displ(r, 0);
                    self.ins("Mov_r32_rm32", &[Op::R(d), Op::M(m)])
                }
                _ => {
                    // BOUND: #BR when the index is outside the bounds in the data area.
                    let s = if s == 32 { 32 } else { 16 };
                    let r = self.reg(s, false);
                    let m = self.mem(u64::from(s / 4));
                    let name = if s == 32 {
                        "Bound_r32_m3232"
                    } else {
                        "Bound_r16_m1616"
                    };
                    self.ins(name, &[Op::R(r), Op::M(m)])
                }
            },
            Fam::System => self.system(),
            Fam::CrWrite => self.cr_write(),
            Fam::DescTable => self.desc_table(),
            Fam::NewInsn => self.new_insn(),
        }
    }

    /// `op` displaced by `k` bytes.
    fn at(m: MemoryOperand, k: i64) -> MemoryOperand {
        MemoryOperand::with_base_displ(m.base, m.displacement + k)
    }

    /// `mov r, crN; <modify> r; mov crN, r` (MOV to/from control registers, SDM vol.
    /// 2B; the checks of vol. 3, 2.5 and 4.10.1), CLTS, LMSW, CR2 and CR8 writes.
    fn cr_write(&mut self) -> R<()> {
        let b = self.bits;
        let long = b == Bits::Long64;
        let s = if long { 64 } else { 32 };
        let xor = format!("Xor_rm{s}_imm32");
        match self.rng.below(8) {
            0 | 1 => {
                let r = self.reg(s, true);
                self.ins(&format!("Mov_r{s}_cr"), &[Op::R(r), Op::R(Register::CR0)])?;
                match self.rng.below(10) {
                    // PG = 0 in IA-32e mode: #GP(0) (SDM vol. 2B, MOV CR "Protected
                    // Mode Exceptions").
                    0 if long => self.ins("Btr_rm64_imm8", &[Op::R(r), Op::I(31)])?,
                    // NW = 1 with CD = 0: #GP(0) (unless CD is set).
                    2 => self.ins(&xor, &[Op::R(r), Op::I(cr0b::NW as i64)])?,
                    _ => {
                        let mut mask = 0;
                        while mask == 0 {
                            for bit in CR0_TOGGLE {
                                if self.rng.chance(1, 3) {
                                    mask |= bit;
                                }
                            }
                        }
                        self.ins(&xor, &[Op::R(r), Op::I(mask as i64)])?
                    }
                }
                self.ins(&format!("Mov_cr_r{s}"), &[Op::R(Register::CR0), Op::R(r)])
            }
            2 | 3 => {
                let r = self.reg(s, true);
                self.ins(&format!("Mov_r{s}_cr"), &[Op::R(r), Op::R(Register::CR4)])?;
                let mut mask = 0;
                match self.rng.below(10) {
                    // Reserved bits: #GP(0).
                    0 => mask = 1 << (28 + self.rng.below(3)),
                    // LA57 changed in IA-32e mode, PAE cleared there: #GP(0) (vol.
                    // 2B, MOV CR); PCIDE set outside IA-32e mode: #GP(0) (vol. 3, 4.10.1).
                    1 if long => {
                        mask = if self.rng.chance(1, 2) {
                            cr4b::LA57
                        } else {
                            cr4b::PAE
                        }
                    }
                    1 => mask = cr4b::PCIDE,
                    _ => {
                        while mask == 0 {
                            for bit in CR4_TOGGLE {
                                if self.rng.chance(1, 3) {
                                    mask |= bit;
                                }
                            }
                            if !long && self.rng.chance(1, 4) {
                                mask |= cr4b::PAE;
                            }
                        }
                    }
                }
                // A write keeping OSXSAVE set is a model difference (the emulator's
                // model has no XSAVE, so the bit is reserved there): clear it.
                if self.cr4 & cr4b::OSXSAVE != 0 {
                    mask |= cr4b::OSXSAVE;
                }
                self.ins(&xor, &[Op::R(r), Op::I(mask as i64)])?;
                self.ins(&format!("Mov_cr_r{s}"), &[Op::R(Register::CR4), Op::R(r)])?;
                self.cr4 ^= mask;
                Some(())
            }
            4 => {
                self.ins("Clts", &[])?;
                if self.rng.chance(1, 2) {
                    let r = self.reg(s, true);
                    self.ins(&format!("Mov_r{s}_cr"), &[Op::R(r), Op::R(Register::CR0)])?;
                }
                Some(())
            }
            5 => {
                // LMSW loads MP, EM, TS and can set PE, never clear it (SDM vol. 2A,
                // LMSW): PE stays 0 in real mode.
                let mut v = self.rng.next_u64() & 0xffff;
                if b == Bits::Real16 {
                    v &= !cr0b::PE;
                }
                if self.rng.chance(1, 2) && !self.reg_only {
                    let m = self.mem(2);
                    self.ins("Mov_rm16_imm16", &[Op::M(m), Op::I(v as i16 as i64)])?;
                    self.ins("Lmsw_rm16", &[Op::M(m)])
                } else {
                    let r = self.reg(16, true);
                    self.ins("Mov_r16_imm16", &[Op::R(r), Op::I(v as i16 as i64)])?;
                    self.ins("Lmsw_rm16", &[Op::R(r)])
                }
            }
            6 => {
                let r = self.reg(s, true);
                let v = self.rng.edgy_u64() & b.gpr_mask();
                let imm = if long { 64 } else { 32 };
                self.ins(&format!("Mov_r{s}_imm{imm}"), &[Op::R(r), Op::I(v as i64)])?;
                self.ins(&format!("Mov_cr_r{s}"), &[Op::R(Register::CR2), Op::R(r)])?;
                let d = self.reg(s, true);
                self.ins(&format!("Mov_r{s}_cr"), &[Op::R(d), Op::R(Register::CR2)])
            }
            _ if long => {
                // CR8 = TPR[7:4]; bits 63:4 reserved: #GP(0) (SDM vol. 3, 10.8.6.6).
                let r = self.reg(64, true);
                let v = if self.rng.chance(1, 5) {
                    16 + self.rng.below(1000)
                } else {
                    self.rng.below(16)
                };
                self.ins("Mov_r64_imm64", &[Op::R(r), Op::I(v as i64)])?;
                self.ins("Mov_cr_r64", &[Op::R(Register::CR8), Op::R(r)])?;
                let d = self.reg(64, true);
                self.ins("Mov_r64_cr", &[Op::R(d), Op::R(Register::CR8)])
            }
            _ => {
                // CR3 with paging off: any 32-bit value (SDM vol. 3, 4.1.1).
                if b == Bits::Real16 && self.rng.chance(1, 2) {
                    return None;
                }
                let r = self.reg(32, true);
                let v = self.rng.edgy_u64() as u32;
                self.ins("Mov_r32_imm32", &[Op::R(r), Op::I(i64::from(v as i32))])?;
                self.ins("Mov_cr_r32", &[Op::R(Register::CR3), Op::R(r)])
            }
        }
    }

    /// LGDT/LIDT of an image the snippet writes into the data area (then SGDT/SIDT),
    /// LLDT/SLDT and LTR/STR on the GDT's prepared selectors (SDM vol. 2A/2B).
    fn desc_table(&mut self) -> R<()> {
        let b = self.bits;
        match self.rng.below(4) {
            0 | 1 => {
                let gdt = self.rng.chance(1, 2);
                let (base, limit) = if gdt {
                    (layout::GDT, u64::from(layout::GDT_LIMIT))
                } else {
                    let (base, t) = layout::interrupt_table(b, &[0; layout::VECTORS as usize]);
                    (base, t.len() as u64 - 1)
                };
                // 16-bit operand size: a 24-bit base (bits 31:24 of the image ignored).
                let o16 = match b {
                    Bits::Real16 | Bits::Prot16 => self.rng.chance(2, 3),
                    Bits::Prot32 => self.rng.chance(1, 3),
                    Bits::Long64 => false,
                };
                let len = if b == Bits::Long64 { 10 } else { 6 };
                let m = self.mem(len);
                let lim = if self.rng.chance(1, 4) {
                    0xffff
                } else {
                    limit + self.rng.below(0x200)
                };
                self.ins("Mov_rm16_imm16", &[Op::M(m), Op::I(lim as i16 as i64)])?;
                let lo = if o16 {
                    base | (self.rng.below(256) << 24)
                } else {
                    base
                };
                self.ins(
                    "Mov_rm32_imm32",
                    &[Op::M(Self::at(m, 2)), Op::I(i64::from(lo as u32 as i32))],
                )?;
                if b == Bits::Long64 {
                    // A non-canonical base: #GP(0) (SDM vol. 2A, LGDT/LIDT).
                    let hi: u32 = if self.rng.chance(1, 6) {
                        0x8000_0000
                    } else {
                        0
                    };
                    self.ins(
                        "Mov_rm32_imm32",
                        &[Op::M(Self::at(m, 6)), Op::I(i64::from(hi as i32))],
                    )?;
                }
                let name = match (b, o16) {
                    (Bits::Long64, _) => "Lgdt_m1664",
                    (_, true) => "Lgdt_m1632_16",
                    _ => "Lgdt_m1632",
                };
                let name = if gdt {
                    name.to_string()
                } else {
                    name.replace("Lgdt", "Lidt")
                };
                self.ins(&name, &[Op::M(m)])?;
                if self.rng.chance(1, 2) {
                    let m2 = self.mem(len);
                    self.ins(&name.replace('L', "S"), &[Op::M(m2)])?;
                }
                Some(())
            }
            2 if b != Bits::Real16 => {
                // LLDT: null is fine, the LDT descriptor loads, a data descriptor,
                // a TSS, TI = 1 or a selector past the limit is #GP(selector), a
                // not-present LDT #NP(selector) (SDM vol. 2A, LLDT).
                let sels = [
                    0,
                    layout::LDT_SEL,
                    layout::LDT_SEL | 3,
                    layout::DATA2_SEL,
                    layout::TSS2_SEL,
                    layout::LDT_NP_SEL,
                    layout::LDT_SEL | 4,
                    0x200,
                ];
                let sel = sels[self.rng.below(sels.len() as u64) as usize];
                self.sel_op("Lldt_rm16", sel)?;
                if self.rng.chance(1, 2) {
                    let d = self.rm(16, true);
                    self.ins("Sldt_rm16", &[d])?;
                }
                Some(())
            }
            3 if b != Bits::Real16 => {
                // LTR: an available TSS loads and becomes busy; a busy TSS, null, a
                // non-TSS or a selector past the limit is #GP (SDM vol. 2A, LTR).
                let sels = [
                    layout::TSS2_SEL,
                    layout::TSS2_SEL,
                    layout::TSS_SEL,
                    0,
                    layout::DATA2_SEL,
                    layout::LDT_SEL,
                    0x200,
                ];
                let sel = sels[self.rng.below(sels.len() as u64) as usize];
                self.sel_op("Ltr_rm16", sel)?;
                if self.rng.chance(1, 2) {
                    let d = self.rm(16, true);
                    self.ins("Str_rm16", &[d])?;
                }
                Some(())
            }
            _ => None,
        }
    }

    /// `name` (LLDT/LTR) with `sel` in a register or in the data area.
    fn sel_op(&mut self, name: &str, sel: u16) -> R<()> {
        if self.rng.chance(1, 3) && !self.reg_only {
            let m = self.mem(2);
            self.ins("Mov_rm16_imm16", &[Op::M(m), Op::I(i64::from(sel as i16))])?;
            self.ins(name, &[Op::M(m)])
        } else {
            let r = self.reg(16, true);
            self.ins("Mov_r16_imm16", &[Op::R(r), Op::I(i64::from(sel as i16))])?;
            self.ins(name, &[Op::R(r)])
        }
    }

    /// RDPID, RDTSCP (the TSC it returns in EDX:EAX is overwritten: only ECX =
    /// IA32_TSC_AUX is compared), XGETBV/XSETBV, INVPCID; each only when the guest's
    /// CPUID has it.
    fn new_insn(&mut self) -> R<()> {
        let b = self.bits;
        let long = b == Bits::Long64;
        let f = self.features;
        match self.rng.below(5) {
            0 if f.rdpid => {
                let r = if long {
                    self.reg(64, true)
                } else {
                    self.reg(32, true)
                };
                let name = if long { "Rdpid_r64" } else { "Rdpid_r32" };
                self.ins(name, &[Op::R(r)])
            }
            1 if f.rdtscp => {
                self.ins("Rdtscp", &[])?;
                for r in [Register::EAX, Register::EDX] {
                    let v = self.rng.edgy_u64() as u32;
                    self.ins("Mov_r32_imm32", &[Op::R(r), Op::I(i64::from(v as i32))])?;
                }
                Some(())
            }
            2 if f.xsave => {
                // XGETBV: #UD with CR4.OSXSAVE = 0, #GP(0) for ECX other than 0 (1
                // is a model difference, see the module docs).
                let c = if self.rng.chance(3, 4) {
                    0
                } else {
                    (self.rng.edgy_u64() as u32).max(2)
                };
                self.ins(
                    "Mov_r32_imm32",
                    &[Op::R(Register::ECX), Op::I(i64::from(c as i32))],
                )?;
                self.ins("Xgetbv", &[])
            }
            3 if f.xsave => {
                // XSETBV: XCR0 = x87 only is valid; 0, SSE without x87, AVX without SSE,
                // reserved bits, or ECX != 0 are #GP(0) (SDM vol. 2B, XSETBV).
                let vals: [u64; 6] = [1, 1, 0, 2, 5, 1 | 1 << 63];
                let v = vals[self.rng.below(6) as usize];
                let c = if self.rng.chance(7, 8) {
                    0
                } else {
                    1 + self.rng.below(100) as u32
                };
                for (r, x) in [
                    (Register::ECX, c),
                    (Register::EAX, v as u32),
                    (Register::EDX, (v >> 32) as u32),
                ] {
                    self.ins("Mov_r32_imm32", &[Op::R(r), Op::I(i64::from(x as i32))])?;
                }
                self.ins("Xsetbv", &[])
            }
            4 if f.invpcid && !self.reg_only => {
                // INVPCID descriptor: PCID in bits 11:0, bits 63:12 zero, the linear
                // address in bits 127:64 (SDM vol. 2A, INVPCID).
                let m = self.mem(16);
                let pcid = if self.rng.chance(2, 3) {
                    0
                } else {
                    self.rng.below(0x1000)
                };
                let rsvd: u64 = if self.rng.chance(1, 6) {
                    1 << (12 + self.rng.below(52))
                } else {
                    0
                };
                let addr = if self.rng.chance(1, 4) {
                    0x8000_0000_0000_1000u64
                } else {
                    self.rng.edgy_u64() & 0x7fff_ffff_ffff
                };
                let lo = pcid | rsvd;
                for (k, v) in [
                    (0, lo as u32),
                    (4, (lo >> 32) as u32),
                    (8, addr as u32),
                    (12, (addr >> 32) as u32),
                ] {
                    self.ins(
                        "Mov_rm32_imm32",
                        &[Op::M(Self::at(m, k)), Op::I(i64::from(v as i32))],
                    )?;
                }
                let typ = if self.rng.chance(7, 8) {
                    self.rng.below(4)
                } else {
                    4 + self.rng.below(0x1000)
                };
                let (r, name) = if long {
                    (self.reg(64, true), "Invpcid_r64_m128")
                } else {
                    (self.reg(32, true), "Invpcid_r32_m128")
                };
                let imm = if long { 64 } else { 32 };
                self.ins(
                    &format!("Mov_r{imm}_imm{imm}"),
                    &[Op::R(r), Op::I(typ as i64)],
                )?;
                self.ins(name, &[Op::R(r), Op::M(m)])
            }
            _ => None,
        }
    }

    fn stack(&mut self) -> R<()> {
        let w = self.w();
        // Push sizes: 16 or the mode's width (64-bit mode has no 32-bit pushes).
        let ps = if w == 64 {
            if self.rng.chance(1, 4) {
                16
            } else {
                64
            }
        } else if self.rng.chance(1, 3) {
            if w == 16 {
                32
            } else {
                16
            }
        } else {
            w
        };
        let n = u64::from(ps / 8);
        match self.rng.below(5) {
            0 | 1 if self.depth + n <= 48 => {
                self.depth += n;
                match self.rng.below(3) {
                    0 => {
                        let r = self.reg(ps, false);
                        self.ins(&format!("Push_r{ps}"), &[Op::R(r)])
                    }
                    1 => {
                        let m = self.mem(n);
                        self.ins(&format!("Push_rm{ps}"), &[Op::M(m)])
                    }
                    _ => {
                        let imm = self.imm_for(if ps == 16 { 16 } else { 32 });
                        let name = match ps {
                            16 => "Push_imm16",
                            32 => "Pushd_imm32",
                            _ => "Pushq_imm32",
                        };
                        self.ins(name, &[Op::I(imm)])
                    }
                }
            }
            2 if self.depth >= n => {
                self.depth -= n;
                if self.rng.chance(1, 3) {
                    let m = self.mem(n);
                    self.ins(&format!("Pop_rm{ps}"), &[Op::M(m)])
                } else {
                    let r = self.reg(ps, true);
                    self.ins(&format!("Pop_r{ps}"), &[Op::R(r)])
                }
            }
            3 => {
                // pushf; <alu>; popf restores the flags (and pushf reads them).
                self.define_flags()?;
                let (pf, pp) = match w {
                    16 => ("Pushf", "Popf"),
                    32 => ("Pushfd", "Popfd"),
                    _ => ("Pushfq", "Popfq"),
                };
                self.ins(pf, &[])?;
                self.depth += u64::from(w / 8);
                // The pushed image is left alone, so POPF never sets TF (or NT,
                // AC, IOPL). The emulator bug this once avoided (the single-step
                // #DB ignoring the intercept bitmap) is fixed and has a regression
                // test; letting memory operands rewrite the image is a next step.
                self.reg_only = true;
                let inner = self.group(Fam::Alu);
                self.reg_only = false;
                inner?;
                self.ins(pp, &[])?;
                self.depth -= u64::from(w / 8);
                Some(())
            }
            _ => {
                // enter n, 0 ... leave, when BP is not the base. Not with a 16-bit
                // operand size on a 32-bit stack (16-bit protected mode): KVM's
                // emulator pushes BP with the stack's size there, the CPU with the
                // operand size (SDM vol. 2A, ENTER "Operation").
                if self.base.full_register() == Register::RBP || self.bits == Bits::Prot16 {
                    return None;
                }
                let (e, l) = match w {
                    16 => ("Enterw_imm16_imm8", "Leavew"),
                    32 => ("Enterd_imm16_imm8", "Leaved"),
                    _ => ("Enterq_imm16_imm8", "Leaveq"),
                };
                let size = self.rng.below(3) as i64 * 8;
                if self.depth + u64::from(w / 8) + size as u64 > 56 {
                    return None;
                }
                self.ins(e, &[Op::I(size), Op::I(0)])?;
                self.protect_bp = true;
                let inner = self.group(Fam::Alu);
                self.protect_bp = false;
                inner?;
                self.ins(l, &[])
            }
        }
    }

    fn string(&mut self) -> R<()> {
        let w = self.w();
        let es = [8u32, 16, 32, 64][self.rng.below(if w == 64 { 4 } else { 3 }) as usize];
        let n = self.rng.below(9);
        let span = n * u64::from(es / 8);
        let df = self.rng.chance(1, 3);
        // Start so that `n` elements stay inside the data area either way.
        let pick = |rng: &mut Rng| {
            let lo = if df { span } else { 0 };
            let hi = DATA_SIZE as u64 - u64::from(es / 8) - if df { 0 } else { span };
            DATA + lo + rng.below(hi - lo + 1)
        };
        let (si, di) = (pick(self.rng), pick(self.rng));
        let aw = if w == 64 { 64 } else { 32 };
        let imm = if aw == 64 { 64 } else { 32 };
        self.ins(if df { "Std" } else { "Cld" }, &[])?;
        self.ins(
            &format!("Mov_r{aw}_imm{imm}"),
            &[Op::R(gpr(aw, 6)), Op::I(si as i64)],
        )?;
        self.ins(
            &format!("Mov_r{aw}_imm{imm}"),
            &[Op::R(gpr(aw, 7)), Op::I(di as i64)],
        )?;
        self.ins(
            &format!("Mov_r{aw}_imm{imm}"),
            &[Op::R(gpr(aw, 1)), Op::I(n as i64)],
        )?;
        let op = self.rng.below(5);
        let rep = match (op, self.rng.below(3)) {
            (_, 0) => RepPrefixKind::None,
            (3 | 4, 1) => RepPrefixKind::Repne,
            _ => RepPrefixKind::Repe,
        };
        let asz = w;
        let seg = Register::None;
        let i = match (op, es) {
            (0, 8) => Instruction::with_movsb(asz, seg, rep),
            (0, 16) => Instruction::with_movsw(asz, seg, rep),
            (0, 32) => Instruction::with_movsd(asz, seg, rep),
            (0, _) => Instruction::with_movsq(asz, seg, rep),
            (1, 8) => Instruction::with_stosb(asz, rep),
            (1, 16) => Instruction::with_stosw(asz, rep),
            (1, 32) => Instruction::with_stosd(asz, rep),
            (1, _) => Instruction::with_stosq(asz, rep),
            (2, 8) => Instruction::with_lodsb(asz, seg, rep),
            (2, 16) => Instruction::with_lodsw(asz, seg, rep),
            (2, 32) => Instruction::with_lodsd(asz, seg, rep),
            (2, _) => Instruction::with_lodsq(asz, seg, rep),
            (3, 8) => Instruction::with_cmpsb(asz, seg, rep),
            (3, 16) => Instruction::with_cmpsw(asz, seg, rep),
            (3, 32) => Instruction::with_cmpsd(asz, seg, rep),
            (3, _) => Instruction::with_cmpsq(asz, seg, rep),
            (_, 8) => Instruction::with_scasb(asz, rep),
            (_, 16) => Instruction::with_scasw(asz, rep),
            (_, 32) => Instruction::with_scasd(asz, rep),
            (_, _) => Instruction::with_scasq(asz, rep),
        }
        .ok()?;
        self.emit(&i)
    }

    fn system(&mut self) -> R<()> {
        let b = self.bits;
        let s = if b == Bits::Long64 { 64 } else { 32 };
        match self.rng.below(6) {
            0 => {
                let cr = [Register::CR0, Register::CR2, Register::CR3, Register::CR4]
                    [self.rng.below(4) as usize];
                let r = self.reg(s, true);
                self.ins(&format!("Mov_r{s}_cr"), &[Op::R(r), Op::R(cr)])
            }
            1 => {
                let dst = self.rm(16, true);
                self.ins("Smsw_rm16", &[dst])
            }
            2 => {
                let (name, len) = match b {
                    Bits::Real16 | Bits::Prot16 => ("Sgdt_m1632_16", 6),
                    Bits::Prot32 => ("Sgdt_m1632", 6),
                    Bits::Long64 => ("Sgdt_m1664", 10),
                };
                let m = self.mem(len);
                let name = if self.rng.chance(1, 2) {
                    name.replace("Sgdt", "Sidt")
                } else {
                    name.to_string()
                };
                self.ins(&name, &[Op::M(m)])
            }
            3 if b != Bits::Real16 => {
                let dst = self.rm(16, true);
                if self.rng.chance(1, 2) {
                    self.ins("Str_rm16", &[dst])
                } else {
                    self.ins("Sldt_rm16", &[dst])
                }
            }
            4 if b != Bits::Real16 => {
                // LAR/LSL/VERR/VERW on a selector of the GDT (or past it).
                let sel =
                    [0u16, 0x08, 0x10, 0x18, 0x20, 0x28, 0x33, 0x0b][self.rng.below(8) as usize];
                let r = self.reg(16, true);
                self.ins("Mov_r16_imm16", &[Op::R(r), Op::I(i64::from(sel))])?;
                match self.rng.below(4) {
                    0 => {
                        let d = self.reg(32, true);
                        self.ins("Lar_r32_r32m16", &[Op::R(d), Op::R(gpr(32, r.number()))])
                    }
                    1 => {
                        let d = self.reg(32, true);
                        self.ins("Lsl_r32_r32m16", &[Op::R(d), Op::R(gpr(32, r.number()))])
                    }
                    2 => self.ins("Verr_rm16", &[Op::R(r)]),
                    _ => self.ins("Verw_rm16", &[Op::R(r)]),
                }
            }
            _ => {
                let m = self.mem(1);
                self.ins("Invlpg_m", &[Op::M(m)])
            }
        }
    }
}

/// An operand for [`build`].
#[derive(Clone, Copy, Debug)]
enum Op {
    R(Register),
    I(i64),
    M(MemoryOperand),
}

/// An instruction of `c` with `ops` (iced-x86 checks the operand kinds and that
/// immediates fit).
fn build(c: Code, ops: &[Op]) -> Option<Instruction> {
    use Op::{I, M, R};
    let i32_of = |v: i64| i32::try_from(v).ok();
    let r = match *ops {
        [] => Ok(Instruction::with(c)),
        [R(a)] => Instruction::with1(c, a),
        [M(a)] => Instruction::with1(c, a),
        [I(a)] => Instruction::with1(c, i32_of(a)?),
        [R(a), R(b)] => Instruction::with2(c, a, b),
        [R(a), M(b)] => Instruction::with2(c, a, b),
        [M(a), R(b)] => Instruction::with2(c, a, b),
        [R(a), I(b)] => match i32_of(b) {
            Some(v) => Instruction::with2(c, a, v),
            None => Instruction::with2(c, a, b),
        },
        [M(a), I(b)] => Instruction::with2(c, a, i32_of(b)?),
        [I(a), I(b)] => Instruction::with2(c, i32_of(a)?, i32_of(b)?),
        [R(a), R(b), R(d)] => Instruction::with3(c, a, b, d),
        [M(a), R(b), R(d)] => Instruction::with3(c, a, b, d),
        [R(a), R(b), I(d)] => Instruction::with3(c, a, b, i32_of(d)?),
        [R(a), M(b), I(d)] => Instruction::with3(c, a, b, i32_of(d)?),
        [M(a), R(b), I(d)] => Instruction::with3(c, a, b, i32_of(d)?),
        _ => return None,
    };
    r.ok()
}

/// Generates case `index` of `seed` for `bits`, leaving out `excluded` mnemonics and
/// instructions `features` lacks.
pub fn case_for(
    seed: u64,
    index: u64,
    bits: Bits,
    excluded: &[Mnemonic],
    features: &GuestFeatures,
) -> KCase {
    let mut rng = Rng::for_case(seed ^ (bits as u64 + 1).wrapping_mul(0x9e37_79b9), index);
    let bases: &[Register] = match bits {
        Bits::Real16 | Bits::Prot16 => &[Register::BX, Register::BP],
        Bits::Prot32 => &[Register::EBX, Register::EBP],
        Bits::Long64 => &[
            Register::RBX,
            Register::RBP,
            Register::R12,
            Register::R13,
            Register::R14,
            Register::R15,
        ],
    };
    let base = bases[rng.below(bases.len() as u64) as usize];
    let base_val = DATA + 0x20 + rng.below(0xc0);
    let mut gpr = [0u64; 16];
    for g in gpr.iter_mut() {
        *g = rng.edgy_u64() & bits.gpr_mask();
    }
    gpr[base.full_register() as usize - Register::RAX as usize] = base_val;
    let mut sp = DATA + 0xb0 + rng.below(0x30);
    if rng.chance(7, 8) {
        sp &= !7;
    }
    gpr[4] = sp;
    let rflags = (rng.next_u64() & hyperplug_oracle::case::rflags::STATUS)
        | if rng.chance(1, 4) {
            hyperplug_oracle::case::rflags::DF
        } else {
            0
        };
    let data: Vec<u8> = (0..DATA_SIZE / 8)
        .flat_map(|_| rng.edgy_u64().to_le_bytes())
        .collect();
    // Initial control registers: the mode's, often with x87/alignment/WP controls
    // and harmless CR4 bits changed, OSXSAVE when the guest has XSAVE.
    let (mut cr0, _, mut cr4, _) = layout::control_regs(bits);
    if rng.chance(1, 2) {
        for bit in CR0_TOGGLE {
            if bit != cr0b::CD && rng.chance(1, 4) {
                cr0 ^= bit;
            }
        }
    }
    if rng.chance(1, 2) {
        for bit in CR4_TOGGLE {
            if rng.chance(1, 4) {
                cr4 |= bit;
            }
        }
    }
    if features.xsave && rng.chance(2, 3) {
        cr4 |= cr4b::OSXSAVE;
    }
    let cr2 = if rng.chance(1, 2) {
        rng.edgy_u64() & bits.gpr_mask()
    } else {
        0
    };
    let mut g = Gen {
        rng: &mut rng,
        bits,
        base,
        base_val,
        depth: 0,
        code: Vec::new(),
        excluded,
        protect_bp: false,
        reg_only: false,
        features: *features,
        cr4,
    };
    let weights: Vec<u32> = FAMS.iter().map(|(_, w)| *w).collect();
    let groups = 1 + g.rng.below(6);
    for _ in 0..groups {
        for _attempt in 0..6 {
            let fam = FAMS[g.rng.weighted(&weights)].0;
            let at = g.code.len();
            let depth = g.depth;
            if g.group(fam).is_some() {
                break;
            }
            // Undo a partly emitted group.
            g.code.truncate(at);
            g.depth = depth;
        }
    }
    let code = g.code;
    KCase {
        bits,
        code,
        gpr,
        rflags,
        data,
        cr0,
        cr4,
        cr2,
    }
}

/// Encodes `insns` (iced [`Code`] names with operands) for `bits` at [`CODE`].
fn encode(bits: Bits, insns: &[(&str, Vec<Op>)]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for (name, ops) in insns {
        let i = build(code(name)?, ops)?;
        let mut e = Encoder::new(bits.width());
        e.encode(&i, CODE + out.len() as u64).ok()?;
        out.extend_from_slice(&e.take_buffer());
    }
    Some(out)
}

/// Probe cases: one short snippet per instruction this machine's KVM may be unable to
/// emulate at CPL 0 (its host kernel emulates all CPL-0 code here), in the form the
/// generator uses. A probe that ends in KVM_EXIT_INTERNAL_ERROR is the measured reason
/// to leave its mnemonic out of that mode's cases (each such case would cost a VM and
/// count only as skipped). `features` as for [`case_for`].
pub fn probes(bits: Bits, features: &GuestFeatures) -> Vec<(Mnemonic, KCase)> {
    use Op::{I, M, R};
    let w = bits.width();
    let legacy = bits != Bits::Long64;
    let prot = bits != Bits::Real16;
    let base = match bits {
        Bits::Real16 | Bits::Prot16 => Register::BX,
        Bits::Prot32 => Register::EBX,
        Bits::Long64 => Register::RBX,
    };
    let m = MemoryOperand::with_base_displ(base, 0);
    let ax = gpr(if w == 16 { 16 } else { 32 }, 0);
    let r32 = if w == 64 {
        Register::RAX
    } else {
        Register::EAX
    };
    let mut list: Vec<Probe> = Vec::new();
    let of = hyperplug_oracle::case::rflags::OF;
    if legacy {
        for n in ["Daa", "Das", "Aaa", "Aas"] {
            list.push((Mnemonic::Daa, vec![(n, vec![])], 0));
        }
        list.push((Mnemonic::Aam, vec![("Aam_imm8", vec![I(10)])], 0));
        list.push((Mnemonic::Aad, vec![("Aad_imm8", vec![I(10)])], 0));
        let bound = if w == 32 {
            "Bound_r32_m3232"
        } else {
            "Bound_r16_m1616"
        };
        // In bounds (AX = 0 against [0, 0]) and out of bounds (#BR).
        list.push((Mnemonic::Bound, vec![(bound, vec![R(ax), M(m)])], 0));
        list.push((
            Mnemonic::Bound,
            vec![
                (
                    if w == 32 {
                        "Mov_r32_imm32"
                    } else {
                        "Mov_r16_imm16"
                    },
                    vec![R(ax), I(5)],
                ),
                (bound, vec![R(ax), M(m)]),
            ],
            0,
        ));
        list.push((Mnemonic::Into, vec![("Into", vec![])], of));
    }
    list.push((Mnemonic::Int3, vec![("Int3", vec![])], 0));
    if prot {
        let cx = [("Mov_r16_imm16", vec![R(Register::CX), I(0x10)])];
        for (mn, name) in [
            (Mnemonic::Lar, "Lar_r32_r32m16"),
            (Mnemonic::Lsl, "Lsl_r32_r32m16"),
        ] {
            let mut v = cx.to_vec();
            v.push((name, vec![R(Register::EAX), R(Register::ECX)]));
            list.push((mn, v, 0));
        }
        for (mn, name) in [(Mnemonic::Verr, "Verr_rm16"), (Mnemonic::Verw, "Verw_rm16")] {
            let mut v = cx.to_vec();
            v.push((name, vec![R(Register::CX)]));
            list.push((mn, v, 0));
        }
        let mut v = vec![(
            "Mov_r16_imm16",
            vec![R(Register::CX), I(i64::from(layout::LDT_SEL))],
        )];
        v.push(("Lldt_rm16", vec![R(Register::CX)]));
        list.push((Mnemonic::Lldt, v, 0));
        let mut v = vec![(
            "Mov_r16_imm16",
            vec![R(Register::CX), I(i64::from(layout::TSS2_SEL))],
        )];
        v.push(("Ltr_rm16", vec![R(Register::CX)]));
        list.push((Mnemonic::Ltr, v, 0));
    }
    // SGDT then LGDT of the same image.
    let (sgdt, lgdt) = match bits {
        Bits::Long64 => ("Sgdt_m1664", "Lgdt_m1664"),
        Bits::Prot32 => ("Sgdt_m1632", "Lgdt_m1632"),
        _ => ("Sgdt_m1632_16", "Lgdt_m1632_16"),
    };
    list.push((
        Mnemonic::Lgdt,
        vec![(sgdt, vec![M(m)]), (lgdt, vec![M(m)])],
        0,
    ));
    list.push((Mnemonic::Clts, vec![("Clts", vec![])], 0));
    list.push((
        Mnemonic::Lmsw,
        vec![("Lmsw_rm16", vec![R(Register::CX)])],
        0,
    ));
    if features.rdpid {
        let name = if w == 64 { "Rdpid_r64" } else { "Rdpid_r32" };
        list.push((Mnemonic::Rdpid, vec![(name, vec![R(r32)])], 0));
    }
    if features.rdtscp {
        list.push((Mnemonic::Rdtscp, vec![("Rdtscp", vec![])], 0));
    }
    if features.xsave {
        let zero_cx = ("Mov_r32_imm32", vec![R(Register::ECX), I(0)]);
        list.push((
            Mnemonic::Xgetbv,
            vec![zero_cx.clone(), ("Xgetbv", vec![])],
            0,
        ));
        list.push((
            Mnemonic::Xsetbv,
            vec![
                zero_cx,
                ("Mov_r32_imm32", vec![R(Register::EDX), I(0)]),
                ("Mov_r32_imm32", vec![R(Register::EAX), I(1)]),
                ("Xsetbv", vec![]),
            ],
            0,
        ));
    }
    if features.invpcid {
        let name = if w == 64 {
            "Invpcid_r64_m128"
        } else {
            "Invpcid_r32_m128"
        };
        list.push((
            Mnemonic::Invpcid,
            vec![
                ("Mov_r32_imm32", vec![R(Register::EAX), I(2)]),
                (name, vec![R(r32), M(m)]),
            ],
            0,
        ));
    }
    let (cr0, _, mut cr4, _) = layout::control_regs(bits);
    if features.xsave {
        cr4 |= cr4b::OSXSAVE;
    }
    list.into_iter()
        .filter_map(|(mn, insns, fl)| {
            let code = encode(bits, &insns)?;
            let mn = insns
                .last()
                .and_then(|(n, _)| code_mnemonic(n))
                .unwrap_or(mn);
            let mut gpr = [0u64; 16];
            gpr[3] = DATA + 0x40;
            gpr[4] = DATA + 0xc0;
            let mut c = KCase::new(bits, code, gpr, fl, vec![0; DATA_SIZE]);
            c.cr0 = cr0;
            c.cr4 = cr4;
            Some((mn, c))
        })
        .collect()
}

/// A probe: the mnemonic, its instructions, the initial RFLAGS.
type Probe = (Mnemonic, Vec<(&'static str, Vec<Op>)>, u64);

/// The mnemonic of the iced [`Code`] named `name`.
fn code_mnemonic(name: &str) -> Option<Mnemonic> {
    code(name).map(|c| c.mnemonic())
}

/// The snippet's instructions, one line each (`offset: Code`).
pub fn disassemble(case: &KCase) -> Vec<String> {
    let mut d = Decoder::with_ip(case.bits.width(), &case.code, CODE, DecoderOptions::NONE);
    d.iter()
        .map(|i| format!("{:#x}: {:?}", i.ip(), i.code()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_table_is_contiguous() {
        assert_eq!(gpr(16, 3), Register::BX);
        assert_eq!(gpr(32, 7), Register::EDI);
        assert_eq!(gpr(64, 15), Register::R15);
        assert_eq!(gpr(32, 12), Register::R12D);
    }

    #[test]
    fn cases_are_deterministic_and_decode() {
        let all = GuestFeatures {
            xsave: true,
            rdtscp: true,
            rdpid: true,
            invpcid: true,
        };
        for bits in Bits::ALL {
            let mut nonempty = 0;
            for i in 0..300 {
                let a = case_for(1, i, bits, &[], &all);
                assert_eq!(a, case_for(1, i, bits, &[], &all));
                assert!(a.code.len() + 5 <= CODE_SIZE);
                let mut d = Decoder::with_ip(bits.width(), &a.code, CODE, DecoderOptions::NONE);
                for ins in d.iter() {
                    assert!(!ins.is_invalid(), "{bits} case {i}: {:02x?}", a.code);
                }
                nonempty += usize::from(!a.code.is_empty());
            }
            assert!(nonempty > 250, "{bits}: {nonempty}");
        }
    }
}
