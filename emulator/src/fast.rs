//! The fast path: pre-decoded forms of the hottest 64-bit instructions
//! (register ALU, MOV, Jcc/JMP/CALL/RET near, PUSH/POP r64, loads and
//! stores), executed straight from the decoded-instruction cache with the
//! micro-TLB, without the general path's snapshot, write buffer and operand
//! decoding.
//!
//! Every fast form has the same semantics as its general handler (the flag
//! helpers are shared), and a fast instruction changes nothing until every
//! check that could fault or stop it has passed: on anything unusual (a
//! micro-TLB or decode-cache miss, a non-canonical address, a page split, a
//! bus stop) it hands the instruction, untouched, to the general path, which
//! then raises the fault or the event exactly as before.
//!
//! The fast loop runs only while nothing it skips could matter: 64-bit
//! mode, RFLAGS.TF = 0, no interrupt shadow, no alignment checking; and
//! none of its instructions can change IF, the shadows, the halt state or
//! anything the interrupt checks between instructions read, so those checks
//! give the same answer at every boundary inside the loop.

use crate::block::Blocks;
use crate::bus::Bus;
use crate::cpu::{reg, Cpu, SegReg, CR0_AM};
use crate::exec::Engine;
use crate::flags;
use crate::lazy::{mask_of, Lazy};
use crate::mem::is_canonical;
use crate::ops::{gpr_loc, sreg_of};
use hyperplug_mmu::AccessKind;
use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};

/// A two-operand ALU operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum AluOp {
    Add,
    Or,
    Adc,
    Sbb,
    And,
    Sub,
    Xor,
    Cmp,
    Test,
}

/// A memory operand in 64-bit mode with a 64-bit address size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemRef {
    /// Base GPR, [`NO_REG`] or [`RIP_REG`].
    base: u8,
    /// Index GPR or [`NO_REG`].
    index: u8,
    scale: u8,
    /// FS or GS (their bases apply in 64-bit mode), else none.
    fs_gs: Option<SegReg>,
    disp: u64,
}

const NO_REG: u8 = 0xff;
const RIP_REG: u8 = 0xfe;

/// The pre-decoded fast form of an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fast {
    /// Not a fast form: the general path runs it.
    None,
    /// ALU op between two GPRs (low byte, word, dword, qword).
    AluRR {
        op: AluOp,
        dst: u8,
        src: u8,
        size: u8,
    },
    /// ALU op between a GPR and an immediate.
    AluRI {
        op: AluOp,
        dst: u8,
        imm: u64,
        size: u8,
    },
    /// INC/DEC of a GPR.
    IncDec { inc: bool, reg: u8, size: u8 },
    /// MOV between GPRs.
    MovRR { dst: u8, src: u8, size: u8 },
    /// MOV of an immediate to a GPR.
    MovRI { dst: u8, imm: u64, size: u8 },
    /// MOV GPR ← memory.
    Load { dst: u8, size: u8, m: MemRef },
    /// MOV memory ← GPR.
    Store { src: u8, size: u8, m: MemRef },
    /// Jcc rel (64-bit target).
    Jcc { cc: u8, rel: u64 },
    /// JMP rel.
    Jmp { rel: u64 },
    /// CALL rel (pushes 8 bytes).
    Call { rel: u64 },
    /// RET (near, 8 bytes, no immediate).
    Ret,
    /// PUSH r64.
    Push { reg: u8 },
    /// POP r64.
    Pop { reg: u8 },
    /// REP MOVS with a 64-bit address size.
    RepMovs { size: u8, src_seg: Option<SegReg> },
    /// REP STOS with a 64-bit address size.
    RepStos { size: u8 },
}

/// A GPR operand whose value sits in the low bits (no AH/CH/DH/BH): (index, size).
fn low_gpr(r: Register) -> Option<(u8, u8)> {
    match gpr_loc(r)? {
        (i, 0, sz) => Some((i as u8, sz)),
        _ => None,
    }
}

fn alu_op(m: Mnemonic) -> Option<AluOp> {
    Some(match m {
        Mnemonic::Add => AluOp::Add,
        Mnemonic::Or => AluOp::Or,
        Mnemonic::Adc => AluOp::Adc,
        Mnemonic::Sbb => AluOp::Sbb,
        Mnemonic::And => AluOp::And,
        Mnemonic::Sub => AluOp::Sub,
        Mnemonic::Xor => AluOp::Xor,
        Mnemonic::Cmp => AluOp::Cmp,
        Mnemonic::Test => AluOp::Test,
        _ => return None,
    })
}

fn is_imm(k: OpKind) -> bool {
    matches!(
        k,
        OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

fn mem_ref(i: &Instruction, asz: u8) -> Option<MemRef> {
    if asz != 8 {
        return None;
    }
    let reg_index = |r: Register| -> Option<u8> {
        match r {
            Register::None => Some(NO_REG),
            Register::RIP => Some(RIP_REG),
            _ => match gpr_loc(r)? {
                (n, 0, 8) => Some(n as u8),
                _ => None,
            },
        }
    };
    let base = reg_index(i.memory_base())?;
    let index = reg_index(i.memory_index())?;
    if index == RIP_REG {
        return None;
    }
    let fs_gs = match sreg_of(i.memory_segment()) {
        Some(s @ (SegReg::Fs | SegReg::Gs)) => Some(s),
        Some(_) => None,
        None => return None,
    };
    Some(MemRef {
        base,
        index,
        scale: i.memory_index_scale() as u8,
        fs_gs,
        disp: i.memory_displacement64(),
    })
}

/// The fast form of `i` (decoded at `bitness` with address size `asz`).
pub(crate) fn classify(i: &Instruction, bitness: u32, asz: u8) -> Fast {
    if bitness != 64 || crate::exec::is_locked(i) {
        return Fast::None;
    }
    classify64(i, asz).unwrap_or(Fast::None)
}

fn classify64(i: &Instruction, asz: u8) -> Option<Fast> {
    let m = i.mnemonic();
    if let Some(op) = alu_op(m) {
        if i.op_count() != 2 || i.op0_kind() != OpKind::Register {
            return None;
        }
        let (dst, size) = low_gpr(i.op0_register())?;
        return match i.op1_kind() {
            OpKind::Register => {
                let (src, s2) = low_gpr(i.op1_register())?;
                (s2 == size).then_some(Fast::AluRR { op, dst, src, size })
            }
            k if is_imm(k) => Some(Fast::AluRI {
                op,
                dst,
                imm: i.immediate(1),
                size,
            }),
            _ => None,
        };
    }
    match m {
        Mnemonic::Inc | Mnemonic::Dec if i.op0_kind() == OpKind::Register => {
            let (reg, size) = low_gpr(i.op0_register())?;
            Some(Fast::IncDec {
                inc: m == Mnemonic::Inc,
                reg,
                size,
            })
        }
        Mnemonic::Mov => match (i.op0_kind(), i.op1_kind()) {
            (OpKind::Register, OpKind::Register) => {
                let (dst, size) = low_gpr(i.op0_register())?;
                let (src, s2) = low_gpr(i.op1_register())?;
                (s2 == size).then_some(Fast::MovRR { dst, src, size })
            }
            (OpKind::Register, k) if is_imm(k) => {
                let (dst, size) = low_gpr(i.op0_register())?;
                Some(Fast::MovRI {
                    dst,
                    imm: i.immediate(1),
                    size,
                })
            }
            (OpKind::Register, OpKind::Memory) => {
                let (dst, size) = low_gpr(i.op0_register())?;
                (i.memory_size().size() == usize::from(size)).then_some(())?;
                Some(Fast::Load {
                    dst,
                    size,
                    m: mem_ref(i, asz)?,
                })
            }
            (OpKind::Memory, OpKind::Register) => {
                let (src, size) = low_gpr(i.op1_register())?;
                (i.memory_size().size() == usize::from(size)).then_some(())?;
                Some(Fast::Store {
                    src,
                    size,
                    m: mem_ref(i, asz)?,
                })
            }
            _ => None,
        },
        _ if i.is_jcc_short_or_near() && i.op0_kind() == OpKind::NearBranch64 => Some(Fast::Jcc {
            cc: (i.condition_code() as u8).wrapping_sub(1),
            rel: i.near_branch_target(),
        }),
        Mnemonic::Jmp if i.op0_kind() == OpKind::NearBranch64 => Some(Fast::Jmp {
            rel: i.near_branch_target(),
        }),
        Mnemonic::Call if i.op0_kind() == OpKind::NearBranch64 => Some(Fast::Call {
            rel: i.near_branch_target(),
        }),
        _ => match i.code() {
            Code::Retnq => Some(Fast::Ret),
            Code::Push_r64 => Some(Fast::Push {
                reg: low_gpr(i.op0_register())?.0,
            }),
            Code::Pop_r64 => Some(Fast::Pop {
                reg: low_gpr(i.op0_register())?.0,
            }),
            Code::Movsb_m8_m8 | Code::Movsw_m16_m16 | Code::Movsd_m32_m32 | Code::Movsq_m64_m64
                if i.has_rep_prefix() && asz == 8 =>
            {
                let src_seg = match sreg_of(i.memory_segment()) {
                    Some(s @ (SegReg::Fs | SegReg::Gs)) => Some(s),
                    Some(_) => None,
                    None => return None,
                };
                Some(Fast::RepMovs {
                    size: i.memory_size().size() as u8,
                    src_seg,
                })
            }
            Code::Stosb_m8_AL | Code::Stosw_m16_AX | Code::Stosd_m32_EAX | Code::Stosq_m64_RAX
                if i.has_rep_prefix() && asz == 8 =>
            {
                Some(Fast::RepStos {
                    size: i.memory_size().size() as u8,
                })
            }
            _ => None,
        },
    }
}

/// Whether the general handler of `i` leaves the paging context, CPL,
/// segment state and TLB alone (so the micro-TLB stays valid across it).
pub(crate) fn is_safe(i: &Instruction) -> bool {
    use Mnemonic as M;
    let m = i.mnemonic();
    let plain_regs = (0..i.op_count()).all(|n| {
        i.op_kind(n) != OpKind::Register
            || gpr_loc(i.op_register(n)).is_some()
            || (m == M::Push && sreg_of(i.op_register(n)).is_some())
    });
    if !plain_regs {
        return false;
    }
    match m {
        M::Jmp | M::Call => {
            !(i.is_jmp_far()
                || i.is_jmp_far_indirect()
                || i.is_call_far()
                || i.is_call_far_indirect())
        }
        M::Mov
        | M::Movzx
        | M::Movsx
        | M::Movsxd
        | M::Xchg
        | M::Lea
        | M::Cbw
        | M::Cwde
        | M::Cdqe
        | M::Cwd
        | M::Cdq
        | M::Cqo
        | M::Bswap
        | M::Lahf
        | M::Sahf
        | M::Xlatb
        | M::Add
        | M::Adc
        | M::Sub
        | M::Sbb
        | M::Cmp
        | M::Inc
        | M::Dec
        | M::Neg
        | M::Mul
        | M::Imul
        | M::Div
        | M::Idiv
        | M::And
        | M::Or
        | M::Xor
        | M::Not
        | M::Test
        | M::Shl
        | M::Sal
        | M::Shr
        | M::Sar
        | M::Rol
        | M::Ror
        | M::Rcl
        | M::Rcr
        | M::Shld
        | M::Shrd
        | M::Push
        | M::Pop
        | M::Pushf
        | M::Pushfd
        | M::Pushfq
        | M::Enter
        | M::Leave
        | M::Ret
        | M::Loop
        | M::Loope
        | M::Loopne
        | M::Jcxz
        | M::Jecxz
        | M::Jrcxz
        | M::Clc
        | M::Stc
        | M::Cmc
        | M::Cld
        | M::Std
        | M::Movsb
        | M::Movsw
        | M::Movsd
        | M::Movsq
        | M::Stosb
        | M::Stosw
        | M::Stosd
        | M::Stosq
        | M::Lodsb
        | M::Lodsw
        | M::Lodsd
        | M::Lodsq
        | M::Cmpsb
        | M::Cmpsw
        | M::Cmpsd
        | M::Cmpsq
        | M::Scasb
        | M::Scasw
        | M::Scasd
        | M::Scasq
        | M::Bt
        | M::Bts
        | M::Btr
        | M::Btc
        | M::Bsf
        | M::Bsr
        | M::Popcnt
        | M::Lzcnt
        | M::Tzcnt
        | M::Andn
        | M::Bextr
        | M::Blsi
        | M::Blsmsk
        | M::Blsr
        | M::Bzhi
        | M::Pdep
        | M::Pext
        | M::Mulx
        | M::Rorx
        | M::Sarx
        | M::Shlx
        | M::Shrx
        | M::Xadd
        | M::Cmpxchg
        | M::Cmpxchg8b
        | M::Cmpxchg16b
        | M::Daa
        | M::Das
        | M::Aaa
        | M::Aas
        | M::Aam
        | M::Aad
        | M::Pusha
        | M::Pushad
        | M::Popa
        | M::Popad
        | M::Movbe
        | M::Nop => true,
        _ => i.is_jcc_short_or_near(),
    }
}

/// Writes `v` into the low `size` bytes of `g` (8/16-bit merge, 32-bit
/// zero-extension; SDM vol. 1, 3.4.1.1).
#[inline(always)]
fn put(g: &mut u64, size: u8, v: u64) {
    let m = mask_of(size);
    // Sizes 1 and 2 keep the upper bits; 4 and 8 replace the whole register.
    let keep = !m & u64::from(size < 4).wrapping_neg();
    *g = (*g & keep) | (v & m);
}

/// A register-only fast form with its operation, size and operand
/// roles fixed at block-build time: `(cpu, flags, a, b, imm)`, where `a`
/// and `b` are GPR indices and `imm` an immediate, as the form needs. It
/// cannot fail; the caller advances RIP.
pub(crate) type RegFn = fn(&mut Cpu, &mut Lazy, u8, u8, u64);

/// [`AluOp`] by discriminant (for const generics).
const ALU_OPS: [AluOp; 9] = [
    AluOp::Add,
    AluOp::Or,
    AluOp::Adc,
    AluOp::Sbb,
    AluOp::And,
    AluOp::Sub,
    AluOp::Xor,
    AluOp::Cmp,
    AluOp::Test,
];

fn alu_rr<const OP: u8, const S: u8>(cpu: &mut Cpu, lz: &mut Lazy, dst: u8, src: u8, _: u64) {
    let b = cpu.gpr[usize::from(src)];
    alu_to(cpu, lz, ALU_OPS[OP as usize], dst, b, S);
}

fn alu_ri<const OP: u8, const S: u8>(cpu: &mut Cpu, lz: &mut Lazy, dst: u8, _: u8, imm: u64) {
    alu_to(cpu, lz, ALU_OPS[OP as usize], dst, imm, S);
}

fn incdec<const INC: bool, const S: u8>(cpu: &mut Cpu, lz: &mut Lazy, r: u8, _: u8, _: u64) {
    let a = cpu.gpr[usize::from(r)];
    let res = lz.incdec(cpu, a, INC, S);
    put(&mut cpu.gpr[usize::from(r)], S, res);
}

fn mov_rr<const S: u8>(cpu: &mut Cpu, _: &mut Lazy, dst: u8, src: u8, _: u64) {
    let v = cpu.gpr[usize::from(src)];
    put(&mut cpu.gpr[usize::from(dst)], S, v);
}

fn mov_ri<const S: u8>(cpu: &mut Cpu, _: &mut Lazy, dst: u8, _: u8, imm: u64) {
    put(&mut cpu.gpr[usize::from(dst)], S, imm);
}

/// Picks the instance of a handler generic over its size `S` (1, 2, 4, 8).
macro_rules! sized {
    ($size:expr, $f:ident $(, $c:expr)*) => {
        match $size {
            8 => $f::<$($c,)* 8> as RegFn,
            4 => $f::<$($c,)* 4>,
            2 => $f::<$($c,)* 2>,
            _ => $f::<$($c,)* 1>,
        }
    };
}

fn alu_fn<const OP: u8>(size: u8, rr: bool) -> RegFn {
    if rr {
        sized!(size, alu_rr, OP)
    } else {
        sized!(size, alu_ri, OP)
    }
}

/// The specialised handler of a register-only fast form and its operands
/// `(a, b, imm)`, or `None` for the other forms.
pub(crate) fn reg_fn(f: &Fast) -> Option<(RegFn, u8, u8, u64)> {
    let alu = |op: AluOp, size: u8, rr: bool| match op {
        AluOp::Add => alu_fn::<0>(size, rr),
        AluOp::Or => alu_fn::<1>(size, rr),
        AluOp::Adc => alu_fn::<2>(size, rr),
        AluOp::Sbb => alu_fn::<3>(size, rr),
        AluOp::And => alu_fn::<4>(size, rr),
        AluOp::Sub => alu_fn::<5>(size, rr),
        AluOp::Xor => alu_fn::<6>(size, rr),
        AluOp::Cmp => alu_fn::<7>(size, rr),
        AluOp::Test => alu_fn::<8>(size, rr),
    };
    Some(match *f {
        Fast::AluRR { op, dst, src, size } => (alu(op, size, true), dst, src, 0),
        Fast::AluRI { op, dst, imm, size } => (alu(op, size, false), dst, 0, imm),
        Fast::IncDec {
            inc: true,
            reg,
            size,
        } => (sized!(size, incdec, true), reg, 0, 0),
        Fast::IncDec {
            inc: false,
            reg,
            size,
        } => (sized!(size, incdec, false), reg, 0, 0),
        Fast::MovRR { dst, src, size } => (sized!(size, mov_rr), dst, src, 0),
        Fast::MovRI { dst, imm, size } => (sized!(size, mov_ri), dst, 0, imm),
        _ => return None,
    })
}

/// What stopped the fast loop.
pub(crate) enum FastStop {
    /// The next instruction needs the general path.
    Slow,
    /// The budget is used up.
    Budget,
}

/// Inputs of the fast loop that stay constant inside it.
struct Env {
    cpl: u8,
    la57: bool,
}

impl Env {
    #[inline(always)]
    fn canonical(&self, a: u64, size: u64) -> bool {
        is_canonical(a, self.la57) && is_canonical(a.wrapping_add(size - 1), self.la57)
    }
}

impl Engine {
    /// Whether the fast loop may run on `cpu` now.
    #[inline]
    pub(crate) fn fast_ok(cpu: &Cpu) -> bool {
        cpu.rflags & flags::TF == 0
            && cpu.dr[7] & crate::debugreg::DR7_ENABLES == 0
            && !cpu.sti_shadow
            && !cpu.ss_shadow
            && !cpu.halted
            && !cpu.a20_masked
            && cpu.mode() == crate::cpu::Mode::Long64
            && !(cpu.cr0 & CR0_AM != 0 && cpu.rflags & flags::AC != 0 && cpu.cpl() == 3)
    }

    /// Runs fast instructions while `steps < budget`, counting them; RFLAGS
    /// is up to date when it returns.
    pub(crate) fn run_fast<B: Bus>(
        &mut self,
        cpu: &mut Cpu,
        bus: &mut B,
        budget: u64,
        steps: &mut u64,
        retired: &mut u64,
    ) -> FastStop {
        // RF is cleared at the start of the next instruction (SDM vol. 3,
        // 17.3.1.1); with no breakpoint enabled nothing else reads it first.
        cpu.rflags &= !flags::RF;
        let mut lz = Lazy::NONE;
        let mut blocks = std::mem::take(&mut self.blocks);
        let (stop, st, rt) =
            self.fast_loop(cpu, bus, budget, (*steps, *retired), &mut lz, &mut blocks);
        *steps = st;
        *retired = rt;
        self.blocks = blocks;
        lz.materialize(cpu);
        stop
    }

    #[inline(always)]
    fn fast_loop<B: Bus>(
        &mut self,
        cpu: &mut Cpu,
        bus: &mut B,
        budget: u64,
        (mut st, mut rt): (u64, u64),
        lz: &mut Lazy,
        blocks: &mut Blocks,
    ) -> (FastStop, u64, u64) {
        let env = Env {
            cpl: cpu.cpl(),
            la57: cpu.cr4 & (1 << 12) != 0,
        };
        // The code page the loop is on (linear page, guest-physical page),
        // valid while the micro-TLB keeps the epoch it was looked up in.
        let mut code_lin = u64::MAX;
        let mut code_gpa = 0;
        let mut code_epoch = 0;
        let stop = 'run: loop {
            if st >= budget {
                break 'run FastStop::Budget;
            }
            if self.st.tracker.generation() != self.code_seen {
                // Another vCPU or the host wrote guest memory: drop stale
                // decodes (and with them the blocks built from them).
                self.sync_code_writes();
            }
            self.st.utlb.sync(&self.st.tracker);
            let rip = cpu.rip;
            let gpa = if rip >> 12 == code_lin && self.st.utlb.epoch() == code_epoch {
                code_gpa | (rip & 0xfff)
            } else {
                let Some(g) = self
                    .st
                    .utlb
                    .lookup(AccessKind::Execute, rip, false, env.cpl)
                else {
                    break 'run FastStop::Slow;
                };
                code_lin = rip >> 12;
                code_gpa = g & !0xfff;
                code_epoch = self.st.utlb.epoch();
                g
            };
            if let Some(bi) = blocks.find(gpa, &self.dcache) {
                let b = &blocks.slots[bi];
                let n = u64::from(b.n).min(budget - st) as usize;
                // Instructions of the block retired so far.
                let mut k = 0u64;
                for op in &b.ops[..n] {
                    if let Some(f) = op.reg {
                        f(cpu, lz, op.a, op.b, op.imm);
                        cpu.rip = cpu.rip.wrapping_add(u64::from(op.len));
                        k += 1;
                        continue;
                    }
                    if !self.exec_fast(cpu, bus, &env, lz, &op.fast, op.len) {
                        st += k;
                        rt += k;
                        break 'run FastStop::Slow;
                    }
                    k += 1;
                    // A write to cached code or to a paging structure: fetch
                    // and translate the rest again.
                    if op.writes
                        && (self.dcache.generation != b.generation
                            || self.st.utlb.is_stale(&self.st.tracker))
                    {
                        st += k;
                        rt += k;
                        continue 'run;
                    }
                }
                st += k;
                rt += k;
                continue;
            }
            let Some(d) = self.dcache.get(gpa, 64) else {
                break 'run FastStop::Slow;
            };
            let (fast, len) = (d.fast, u64::from(d.len));
            let next = rip.wrapping_add(len);
            if let Fast::RepMovs { .. } | Fast::RepStos { .. } = fast {
                match self.rep_bulk(cpu, bus, &env, fast, next, budget - st) {
                    Some((n, done)) => {
                        st += n;
                        rt += u64::from(done);
                        continue;
                    }
                    None => break 'run FastStop::Slow,
                }
            }
            if !self.exec_fast(cpu, bus, &env, lz, &fast, len as u8) {
                break 'run FastStop::Slow;
            }
            st += 1;
            rt += 1;
        };
        (stop, st, rt)
    }

    #[inline(always)]
    fn mem_lin(cpu: &Cpu, m: &MemRef, rip: u64, size: u8) -> Option<u64> {
        let g = &cpu.gpr;
        let mut a = m.disp;
        if m.base == RIP_REG {
            a = a.wrapping_add(rip);
        } else if m.base != NO_REG {
            a = a.wrapping_add(g[usize::from(m.base)]);
        }
        if m.index != NO_REG {
            a = a.wrapping_add(g[usize::from(m.index)].wrapping_mul(u64::from(m.scale)));
        }
        if let Some(s) = m.fs_gs {
            a = a.wrapping_add(cpu.seg[s as usize].base);
        }
        let size = u64::from(size);
        // Canonical-ness is checked by the micro-TLB lookup that follows: it
        // only holds canonical pages, and the access stays in one page.
        ((a & 0xfff) + size <= 4096).then_some(a)
    }

    /// Reads `size` bytes at page-contained `lin` (canonical if the
    /// micro-TLB has it).
    #[inline(always)]
    fn fast_read<B: Bus>(&self, bus: &mut B, env: &Env, lin: u64, size: u8) -> Option<u64> {
        let gpa = self.st.utlb.lookup(AccessKind::Read, lin, false, env.cpl)?;
        let mut b = [0u8; 8];
        bus.read_phys(gpa, &mut b[..usize::from(size)]).ok()?;
        Some(u64::from_le_bytes(b))
    }

    /// The guest-physical address of a write of `size` bytes at `lin`, if
    /// the micro-TLB has it and the bus accepts it.
    #[inline(always)]
    fn fast_write_check<B: Bus>(&self, bus: &mut B, env: &Env, lin: u64, size: u8) -> Option<u64> {
        let gpa = self
            .st
            .utlb
            .lookup(AccessKind::Write, lin, false, env.cpl)?;
        bus.check_write(gpa, usize::from(size)).ok()?;
        Some(gpa)
    }

    /// Writes after [`Engine::fast_write_check`], as `commit` does.
    #[inline(always)]
    fn fast_write<B: Bus>(&mut self, bus: &mut B, gpa: u64, size: u8, v: u64) -> bool {
        let n = usize::from(size);
        if bus.write_phys(gpa, &v.to_le_bytes()[..n]).is_err() {
            return false;
        }
        self.dcache.on_write(gpa, u64::from(size));
        self.st.tracker.on_guest_write(gpa, u64::from(size));
        true
    }

    /// Executes one fast instruction; `false` (with nothing changed) if it
    /// needs the general path.
    #[inline(always)]
    fn exec_fast<B: Bus>(
        &mut self,
        cpu: &mut Cpu,
        bus: &mut B,
        env: &Env,
        lz: &mut Lazy,
        fast: &Fast,
        len: u8,
    ) -> bool {
        let rip = cpu.rip;
        let next = rip.wrapping_add(u64::from(len));
        // Register forms run with the size as a constant (`by_size!`), so
        // the masks fold away.
        macro_rules! by_size {
            ($size:expr, $S:ident => $e:expr) => {
                match $size {
                    8 => {
                        const $S: u8 = 8;
                        $e
                    }
                    4 => {
                        const $S: u8 = 4;
                        $e
                    }
                    2 => {
                        const $S: u8 = 2;
                        $e
                    }
                    _ => {
                        const $S: u8 = 1;
                        $e
                    }
                }
            };
        }
        match *fast {
            Fast::AluRR { op, dst, src, size } => {
                let b = cpu.gpr[usize::from(src)];
                by_size!(size, S => alu_to(cpu, lz, op, dst, b, S));
            }
            Fast::AluRI { op, dst, imm, size } => {
                by_size!(size, S => alu_to(cpu, lz, op, dst, imm, S))
            }
            Fast::IncDec { inc, reg, size } => {
                let a = cpu.gpr[usize::from(reg)];
                by_size!(size, S => {
                    let res = lz.incdec(cpu, a, inc, S);
                    put(&mut cpu.gpr[usize::from(reg)], S, res);
                });
            }
            Fast::MovRR { dst, src, size } => {
                let v = cpu.gpr[usize::from(src)];
                by_size!(size, S => put(&mut cpu.gpr[usize::from(dst)], S, v));
            }
            Fast::MovRI { dst, imm, size } => {
                by_size!(size, S => put(&mut cpu.gpr[usize::from(dst)], S, imm))
            }
            Fast::Load { dst, size, m } => by_size!(size, S => {
                let Some(lin) = Self::mem_lin(cpu, &m, rip, S) else {
                    return false;
                };
                let Some(v) = self.fast_read(bus, env, lin, S) else {
                    return false;
                };
                put(&mut cpu.gpr[usize::from(dst)], S, v);
            }),
            Fast::Store { src, size, m } => by_size!(size, S => {
                let Some(lin) = Self::mem_lin(cpu, &m, rip, S) else {
                    return false;
                };
                let Some(gpa) = self.fast_write_check(bus, env, lin, S) else {
                    return false;
                };
                let v = cpu.gpr[usize::from(src)];
                if !self.fast_write(bus, gpa, S, v) {
                    return false;
                }
            }),
            Fast::Jcc { cc, rel } => {
                if lz.cond(cpu, cc) {
                    let t = rip.wrapping_add(rel);
                    if !is_canonical(t, env.la57) {
                        return false;
                    }
                    cpu.rip = t;
                    return true;
                }
            }
            Fast::Jmp { rel } => {
                let t = rip.wrapping_add(rel);
                if !is_canonical(t, env.la57) {
                    return false;
                }
                cpu.rip = t;
                return true;
            }
            Fast::Call { rel } => {
                let t = rip.wrapping_add(rel);
                let sp = cpu.gpr[reg::RSP].wrapping_sub(8);
                if !is_canonical(t, env.la57) || sp & 0xfff > 4088 {
                    return false;
                }
                let Some(gpa) = self.fast_write_check(bus, env, sp, 8) else {
                    return false;
                };
                if !self.fast_write(bus, gpa, 8, next) {
                    return false;
                }
                cpu.gpr[reg::RSP] = sp;
                cpu.rip = t;
                return true;
            }
            Fast::Ret => {
                let sp = cpu.gpr[reg::RSP];
                if sp & 0xfff > 4088 {
                    return false;
                }
                let Some(t) = self.fast_read(bus, env, sp, 8) else {
                    return false;
                };
                if !is_canonical(t, env.la57) {
                    return false;
                }
                cpu.gpr[reg::RSP] = sp.wrapping_add(8);
                cpu.rip = t;
                return true;
            }
            Fast::Push { reg: r } => {
                let sp = cpu.gpr[reg::RSP].wrapping_sub(8);
                if sp & 0xfff > 4088 {
                    return false;
                }
                let Some(gpa) = self.fast_write_check(bus, env, sp, 8) else {
                    return false;
                };
                let v = cpu.gpr[usize::from(r)];
                if !self.fast_write(bus, gpa, 8, v) {
                    return false;
                }
                cpu.gpr[reg::RSP] = sp;
            }
            Fast::Pop { reg: r } => {
                let sp = cpu.gpr[reg::RSP];
                if sp & 0xfff > 4088 {
                    return false;
                }
                let Some(v) = self.fast_read(bus, env, sp, 8) else {
                    return false;
                };
                // RSP is incremented before the destination is written (POP RSP).
                cpu.gpr[reg::RSP] = sp.wrapping_add(8);
                cpu.gpr[usize::from(r)] = v;
            }
            Fast::None | Fast::RepMovs { .. } | Fast::RepStos { .. } => return false,
        }
        cpu.rip = next;
        true
    }

    /// A run of iterations of REP MOVS/STOS (DF = 0) within one source and
    /// one destination page, at most `left` of them: `Some((iterations,
    /// finished))`, or `None` (nothing done) when the general path must run
    /// the next iteration. Each iteration is one step, as in the general path.
    fn rep_bulk<B: Bus>(
        &mut self,
        cpu: &mut Cpu,
        bus: &mut B,
        env: &Env,
        fast: Fast,
        next: u64,
        left: u64,
    ) -> Option<(u64, bool)> {
        let (size, src_seg) = match fast {
            Fast::RepMovs { size, src_seg } => (size, Some(src_seg)),
            Fast::RepStos { size } => (size, None),
            _ => return None,
        };
        let count = cpu.gpr[reg::RCX];
        if count == 0 || cpu.rflags & flags::DF != 0 {
            return None;
        }
        let sz = u64::from(size);
        let di = cpu.gpr[reg::RDI];
        let room = |a: u64| (4096 - (a & 0xfff)) / sz;
        let mut n = count.min(left).min(room(di));
        let si = cpu.gpr[reg::RSI];
        let src_lin = match src_seg {
            Some(s) => {
                let lin = si.wrapping_add(s.map_or(0, |s| cpu.seg[s as usize].base));
                n = n.min(room(lin));
                Some(lin)
            }
            None => None,
        };
        if n == 0 {
            return None;
        }
        let bytes = n * sz;
        if !env.canonical(di, bytes) {
            return None;
        }
        let dst = self.st.utlb.lookup(AccessKind::Write, di, false, env.cpl)?;
        // A write to cached code or to a paging structure may change what
        // the following iterations fetch or translate: step through those.
        if self.dcache.may_hold_page(dst >> 12) || self.st.tracker.is_tracked(dst >> 12) {
            return None;
        }
        let mut buf = [0u8; 4096];
        let data = &mut buf[..bytes as usize];
        match src_lin {
            Some(lin) => {
                if !env.canonical(lin, bytes) {
                    return None;
                }
                let src = self.st.utlb.lookup(AccessKind::Read, lin, false, env.cpl)?;
                // Overlap with the destination ahead of the source: each
                // iteration would read what an earlier one wrote.
                if dst > src && dst < src + bytes {
                    return None;
                }
                bus.read_phys(src, data).ok()?;
            }
            None => {
                let v = cpu.gpr[reg::RAX].to_le_bytes();
                fill_pattern(data, &v, size);
            }
        }
        bus.check_write(dst, data.len()).ok()?;
        bus.write_phys(dst, data).ok()?;
        self.dcache.on_write(dst, bytes);
        self.st.tracker.on_guest_write(dst, bytes);
        cpu.gpr[reg::RDI] = di.wrapping_add(bytes);
        if src_lin.is_some() {
            cpu.gpr[reg::RSI] = si.wrapping_add(bytes);
        }
        let c = count - n;
        cpu.gpr[reg::RCX] = c;
        if c == 0 {
            cpu.rip = next;
            cpu.rflags &= !flags::RF;
        } else {
            // RF = 1 between iterations, as in the general path (SDM vol. 3, 17.3.1.1).
            cpu.rflags |= flags::RF;
        }
        Some((n, c == 0))
    }
}

/// Fills `data` with copies of the low `size` (1, 2, 4, 8) bytes of `v`,
/// with the element size as a constant, so the fill is a memset or a plain
/// store loop rather than a copy call per element.
fn fill_pattern(data: &mut [u8], v: &[u8; 8], size: u8) {
    fn fill<const S: usize>(data: &mut [u8], v: &[u8; 8]) {
        for c in data.chunks_exact_mut(S) {
            c.copy_from_slice(&v[..S]);
        }
    }
    match size {
        1 => data.fill(v[0]),
        2 => fill::<2>(data, v),
        4 => fill::<4>(data, v),
        _ => fill::<8>(data, v),
    }
}

/// Applies ALU `op` with source `b` to GPR `dst`, flags pending in `lz`.
#[inline(always)]
fn alu_to(cpu: &mut Cpu, lz: &mut Lazy, op: AluOp, dst: u8, b: u64, size: u8) {
    let d = usize::from(dst);
    let a = cpu.gpr[d];
    let m = mask_of(size);
    let res = match op {
        AluOp::Add => lz.add(a, b, false, size),
        AluOp::Adc => {
            let c = lz.cf(cpu);
            lz.add(a, b, c, size)
        }
        AluOp::Sub => lz.sub(a, b, false, size),
        AluOp::Sbb => {
            let c = lz.cf(cpu);
            lz.sub(a, b, c, size)
        }
        AluOp::Cmp => {
            lz.sub(a, b, false, size);
            return;
        }
        AluOp::Test => {
            lz.logic(a & b & m, size);
            return;
        }
        AluOp::Or => {
            let r = (a | b) & m;
            lz.logic(r, size);
            r
        }
        AluOp::Xor => {
            let r = (a ^ b) & m;
            lz.logic(r, size);
            r
        }
        AluOp::And => {
            let r = a & b & m;
            lz.logic(r, size);
            r
        }
    };
    put(&mut cpu.gpr[d], size, res);
}

#[cfg(test)]
mod tests {
    use super::fill_pattern;

    /// The specialised fill equals an element-by-element copy for every size.
    #[test]
    fn fill_pattern_matches_naive_copy() {
        let v = 0x8877_6655_4433_2211u64.to_le_bytes();
        for size in [1u8, 2, 4, 8] {
            for len in [0usize, 8, 64, 4096] {
                let mut got = vec![0u8; len];
                fill_pattern(&mut got, &v, size);
                let mut want = vec![0u8; len];
                for (i, b) in want.iter_mut().enumerate() {
                    *b = v[i % usize::from(size)];
                }
                assert_eq!(got, want, "size {size} len {len}");
            }
        }
    }
}
