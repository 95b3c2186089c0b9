//! Instruction semantics, one file per family, and the dispatcher.
//!
//! Operands are reached through [`Ctx::read_op`] / [`Ctx::write_op`], which
//! understand every iced operand kind the integer ISA uses (registers,
//! memory with any addressing form, immediates).

mod arith;
mod atomic;
mod bcd;
mod bits;
mod control;
mod data;
mod desc;
mod flagops;
mod gates;
mod invpcid;
mod io;
mod logic;
mod misc;
pub mod shift;
pub use shift::{double_value, shift_value};
mod stack;
mod string;
mod syscall;
mod system;
mod xcr;

use crate::bus::Bus;
use crate::cpu::SegReg;
use crate::exception::{Exception, OpResult};
use crate::exec::Ctx;
use crate::flags::mask;
use iced_x86::{Mnemonic, OpKind, Register};

/// The mnemonics the engine executes (everything else raises #UD).
pub const SUPPORTED: &[Mnemonic] = &[
    // data.rs
    Mnemonic::Mov,
    Mnemonic::Movzx,
    Mnemonic::Movsx,
    Mnemonic::Movsxd,
    Mnemonic::Xchg,
    Mnemonic::Lea,
    Mnemonic::Cbw,
    Mnemonic::Cwde,
    Mnemonic::Cdqe,
    Mnemonic::Cwd,
    Mnemonic::Cdq,
    Mnemonic::Cqo,
    Mnemonic::Bswap,
    Mnemonic::Cmovo,
    Mnemonic::Cmovno,
    Mnemonic::Cmovb,
    Mnemonic::Cmovae,
    Mnemonic::Cmove,
    Mnemonic::Cmovne,
    Mnemonic::Cmovbe,
    Mnemonic::Cmova,
    Mnemonic::Cmovs,
    Mnemonic::Cmovns,
    Mnemonic::Cmovp,
    Mnemonic::Cmovnp,
    Mnemonic::Cmovl,
    Mnemonic::Cmovge,
    Mnemonic::Cmovle,
    Mnemonic::Cmovg,
    Mnemonic::Seto,
    Mnemonic::Setno,
    Mnemonic::Setb,
    Mnemonic::Setae,
    Mnemonic::Sete,
    Mnemonic::Setne,
    Mnemonic::Setbe,
    Mnemonic::Seta,
    Mnemonic::Sets,
    Mnemonic::Setns,
    Mnemonic::Setp,
    Mnemonic::Setnp,
    Mnemonic::Setl,
    Mnemonic::Setge,
    Mnemonic::Setle,
    Mnemonic::Setg,
    Mnemonic::Lahf,
    Mnemonic::Sahf,
    Mnemonic::Xlatb,
    // arith.rs
    Mnemonic::Add,
    Mnemonic::Adc,
    Mnemonic::Sub,
    Mnemonic::Sbb,
    Mnemonic::Cmp,
    Mnemonic::Inc,
    Mnemonic::Dec,
    Mnemonic::Neg,
    Mnemonic::Mul,
    Mnemonic::Imul,
    Mnemonic::Div,
    Mnemonic::Idiv,
    Mnemonic::Adcx,
    Mnemonic::Adox,
    // logic.rs
    Mnemonic::And,
    Mnemonic::Or,
    Mnemonic::Xor,
    Mnemonic::Not,
    Mnemonic::Test,
    // shift.rs
    Mnemonic::Shl,
    Mnemonic::Sal,
    Mnemonic::Shr,
    Mnemonic::Sar,
    Mnemonic::Rol,
    Mnemonic::Ror,
    Mnemonic::Rcl,
    Mnemonic::Rcr,
    Mnemonic::Shld,
    Mnemonic::Shrd,
    // stack.rs
    Mnemonic::Push,
    Mnemonic::Pop,
    Mnemonic::Pushf,
    Mnemonic::Pushfd,
    Mnemonic::Pushfq,
    Mnemonic::Popf,
    Mnemonic::Popfd,
    Mnemonic::Popfq,
    Mnemonic::Enter,
    Mnemonic::Leave,
    // control.rs
    Mnemonic::Jmp,
    Mnemonic::Call,
    Mnemonic::Ret,
    Mnemonic::Retf,
    Mnemonic::Jo,
    Mnemonic::Jno,
    Mnemonic::Jb,
    Mnemonic::Jae,
    Mnemonic::Je,
    Mnemonic::Jne,
    Mnemonic::Jbe,
    Mnemonic::Ja,
    Mnemonic::Js,
    Mnemonic::Jns,
    Mnemonic::Jp,
    Mnemonic::Jnp,
    Mnemonic::Jl,
    Mnemonic::Jge,
    Mnemonic::Jle,
    Mnemonic::Jg,
    Mnemonic::Loop,
    Mnemonic::Loope,
    Mnemonic::Loopne,
    Mnemonic::Jcxz,
    Mnemonic::Jecxz,
    Mnemonic::Jrcxz,
    Mnemonic::Int,
    Mnemonic::Int3,
    Mnemonic::Into,
    Mnemonic::Iret,
    Mnemonic::Iretd,
    Mnemonic::Iretq,
    // flagops.rs
    Mnemonic::Clc,
    Mnemonic::Stc,
    Mnemonic::Cmc,
    Mnemonic::Cld,
    Mnemonic::Std,
    Mnemonic::Cli,
    Mnemonic::Sti,
    // string.rs
    Mnemonic::Movsb,
    Mnemonic::Movsw,
    Mnemonic::Movsd,
    Mnemonic::Movsq,
    Mnemonic::Stosb,
    Mnemonic::Stosw,
    Mnemonic::Stosd,
    Mnemonic::Stosq,
    Mnemonic::Lodsb,
    Mnemonic::Lodsw,
    Mnemonic::Lodsd,
    Mnemonic::Lodsq,
    Mnemonic::Cmpsb,
    Mnemonic::Cmpsw,
    Mnemonic::Cmpsd,
    Mnemonic::Cmpsq,
    Mnemonic::Scasb,
    Mnemonic::Scasw,
    Mnemonic::Scasd,
    Mnemonic::Scasq,
    // system.rs
    Mnemonic::Hlt,
    Mnemonic::Cpuid,
    Mnemonic::Rdtsc,
    Mnemonic::Rdtscp,
    Mnemonic::Rdpid,
    Mnemonic::Xgetbv,
    Mnemonic::Xsetbv,
    Mnemonic::Nop,
    Mnemonic::Pause,
    Mnemonic::Ud2,
    Mnemonic::Lgdt,
    Mnemonic::Lidt,
    Mnemonic::Sgdt,
    Mnemonic::Sidt,
    Mnemonic::Rdmsr,
    Mnemonic::Wrmsr,
    Mnemonic::Invlpg,
    Mnemonic::Invpcid,
    Mnemonic::Wbinvd,
    Mnemonic::Invd,
    Mnemonic::Clts,
    Mnemonic::Smsw,
    Mnemonic::Lmsw,
    // io.rs
    Mnemonic::In,
    Mnemonic::Out,
    Mnemonic::Insb,
    Mnemonic::Insw,
    Mnemonic::Insd,
    Mnemonic::Outsb,
    Mnemonic::Outsw,
    Mnemonic::Outsd,
    // bits.rs
    Mnemonic::Bt,
    Mnemonic::Bts,
    Mnemonic::Btr,
    Mnemonic::Btc,
    Mnemonic::Bsf,
    Mnemonic::Bsr,
    Mnemonic::Popcnt,
    Mnemonic::Lzcnt,
    Mnemonic::Tzcnt,
    Mnemonic::Andn,
    Mnemonic::Bextr,
    Mnemonic::Blsi,
    Mnemonic::Blsmsk,
    Mnemonic::Blsr,
    Mnemonic::Bzhi,
    Mnemonic::Pdep,
    Mnemonic::Pext,
    Mnemonic::Mulx,
    Mnemonic::Rorx,
    Mnemonic::Sarx,
    Mnemonic::Shlx,
    Mnemonic::Shrx,
    // atomic.rs
    Mnemonic::Xadd,
    Mnemonic::Cmpxchg,
    Mnemonic::Cmpxchg8b,
    Mnemonic::Cmpxchg16b,
    // bcd.rs
    Mnemonic::Daa,
    Mnemonic::Das,
    Mnemonic::Aaa,
    Mnemonic::Aas,
    Mnemonic::Aam,
    Mnemonic::Aad,
    // misc.rs
    Mnemonic::Pusha,
    Mnemonic::Pushad,
    Mnemonic::Popa,
    Mnemonic::Popad,
    Mnemonic::Movbe,
    Mnemonic::Bound,
    // syscall.rs
    Mnemonic::Syscall,
    Mnemonic::Sysret,
    Mnemonic::Sysretq,
    Mnemonic::Sysenter,
    Mnemonic::Sysexit,
    Mnemonic::Sysexitq,
    // desc.rs
    Mnemonic::Lldt,
    Mnemonic::Sldt,
    Mnemonic::Ltr,
    Mnemonic::Str,
    Mnemonic::Lar,
    Mnemonic::Lsl,
    Mnemonic::Verr,
    Mnemonic::Verw,
    Mnemonic::Arpl,
    Mnemonic::Swapgs,
];

/// Executes the instruction in `cx`.
pub(crate) fn dispatch<B: Bus>(cx: &mut Ctx<'_, B>) -> OpResult {
    use Mnemonic as M;
    let m = cx.insn.mnemonic();
    match m {
        M::Mov => data::mov(cx),
        M::Movzx | M::Movsx | M::Movsxd => data::movx(cx, m != M::Movzx),
        M::Xchg => data::xchg(cx),
        M::Lea => data::lea(cx),
        M::Cbw | M::Cwde | M::Cdqe => data::cbw(cx),
        M::Cwd | M::Cdq | M::Cqo => data::cwd(cx),
        M::Bswap => data::bswap(cx),
        M::Lahf => data::lahf(cx),
        M::Sahf => data::sahf(cx),
        M::Xlatb => data::xlat(cx),
        M::Add | M::Adc | M::Sub | M::Sbb | M::Cmp => arith::addsub(cx, m),
        M::Inc | M::Dec => arith::incdec(cx, m == M::Inc),
        M::Neg => arith::neg(cx),
        M::Mul => arith::mul(cx),
        M::Imul => arith::imul(cx),
        M::Div | M::Idiv => arith::div(cx, m == M::Idiv),
        M::Adcx | M::Adox => arith::adx(cx, m == M::Adox),
        M::And | M::Or | M::Xor | M::Test => logic::binop(cx, m),
        M::Not => logic::not(cx),
        M::Shl | M::Sal | M::Shr | M::Sar | M::Rol | M::Ror | M::Rcl | M::Rcr => {
            shift::shift(cx, m)
        }
        M::Shld | M::Shrd => shift::double(cx, m == M::Shld),
        M::Push => stack::push_op(cx),
        M::Pop => stack::pop_op(cx),
        M::Pushf | M::Pushfd | M::Pushfq => stack::pushf(cx),
        M::Popf | M::Popfd | M::Popfq => stack::popf(cx),
        M::Enter => stack::enter(cx),
        M::Leave => stack::leave(cx),
        M::Jmp => control::jmp(cx),
        M::Call => control::call(cx),
        M::Ret => control::ret(cx),
        M::Retf => control::retf(cx),
        M::Loop | M::Loope | M::Loopne => control::loop_(cx, m),
        M::Jcxz | M::Jecxz | M::Jrcxz => control::jcxz(cx),
        M::Int | M::Int3 | M::Into => control::int(cx, m),
        M::Iret | M::Iretd | M::Iretq => control::iret(cx),
        M::Clc | M::Stc | M::Cmc | M::Cld | M::Std | M::Cli | M::Sti => flagops::flagop(cx, m),
        M::Movsb
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
        | M::Scasq => string::string(cx, m),
        M::In | M::Out | M::Insb | M::Insw | M::Insd | M::Outsb | M::Outsw | M::Outsd => {
            io::io(cx, m)
        }
        M::Bt | M::Bts | M::Btr | M::Btc => bits::bt(cx, m),
        M::Bsf | M::Bsr => bits::bsf_bsr(cx, m == M::Bsr),
        M::Popcnt => bits::popcnt(cx),
        M::Lzcnt | M::Tzcnt => bits::lzcnt_tzcnt(cx, m == M::Lzcnt),
        M::Andn
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
        | M::Shrx => bits::bmi(cx, m),
        M::Xadd => atomic::xadd(cx),
        M::Cmpxchg => atomic::cmpxchg(cx),
        M::Cmpxchg8b | M::Cmpxchg16b => atomic::cmpxchg_wide(cx, m),
        M::Daa | M::Das | M::Aaa | M::Aas | M::Aam | M::Aad => bcd::bcd(cx, m),
        M::Pusha | M::Pushad => misc::pusha(cx, m),
        M::Popa | M::Popad => misc::popa(cx, m),
        M::Movbe => misc::movbe(cx),
        M::Invpcid => invpcid::invpcid(cx),
        M::Xgetbv => xcr::xgetbv(cx),
        M::Xsetbv => xcr::xsetbv(cx),
        M::Bound => misc::bound(cx),
        M::Syscall => syscall::syscall(cx),
        M::Sysret | M::Sysretq => syscall::sysret(cx, m),
        M::Sysenter => syscall::sysenter(cx),
        M::Sysexit | M::Sysexitq => syscall::sysexit(cx, m),
        M::Lldt
        | M::Sldt
        | M::Ltr
        | M::Str
        | M::Lar
        | M::Lsl
        | M::Verr
        | M::Verw
        | M::Arpl
        | M::Swapgs => desc::desc(cx, m),
        _ => {
            if cx.insn.is_jcc_short_or_near() {
                return control::jcc(cx);
            }
            if let Some(cc) = cmov_cc(m) {
                return data::cmov(cx, cc);
            }
            if let Some(cc) = setcc_cc(m) {
                return data::setcc(cx, cc);
            }
            system::system(cx, m)
        }
    }
}

fn cmov_cc(m: Mnemonic) -> Option<u8> {
    use Mnemonic as M;
    let t = [
        M::Cmovo,
        M::Cmovno,
        M::Cmovb,
        M::Cmovae,
        M::Cmove,
        M::Cmovne,
        M::Cmovbe,
        M::Cmova,
        M::Cmovs,
        M::Cmovns,
        M::Cmovp,
        M::Cmovnp,
        M::Cmovl,
        M::Cmovge,
        M::Cmovle,
        M::Cmovg,
    ];
    t.iter().position(|&x| x == m).map(|p| p as u8)
}

fn setcc_cc(m: Mnemonic) -> Option<u8> {
    use Mnemonic as M;
    let t = [
        M::Seto,
        M::Setno,
        M::Setb,
        M::Setae,
        M::Sete,
        M::Setne,
        M::Setbe,
        M::Seta,
        M::Sets,
        M::Setns,
        M::Setp,
        M::Setnp,
        M::Setl,
        M::Setge,
        M::Setle,
        M::Setg,
    ];
    t.iter().position(|&x| x == m).map(|p| p as u8)
}

/// Where a GPR operand lives: (index, byte shift 0 or 8, size in bytes).
#[inline]
pub(crate) fn gpr_loc(r: Register) -> Option<(usize, u32, u8)> {
    let n = r as usize;
    Some(match n {
        1..=4 => (n - 1, 0, 1),
        5..=8 => (n - 5, 8, 1),
        9..=20 => (n - 5, 0, 1),
        21..=36 => (n - 21, 0, 2),
        37..=52 => (n - 37, 0, 4),
        53..=68 => (n - 53, 0, 8),
        _ => return None,
    })
}

/// Segment register of an iced register.
pub(crate) fn sreg_of(r: Register) -> Option<SegReg> {
    let n = r as usize;
    if (Register::ES as usize..=Register::GS as usize).contains(&n) {
        SegReg::from_index(n - Register::ES as usize)
    } else {
        None
    }
}

impl<B: Bus> Ctx<'_, B> {
    /// Reads a GPR (any width) or segment selector.
    #[inline]
    pub(crate) fn reg(&self, r: Register) -> u64 {
        if let Some((i, sh, sz)) = gpr_loc(r) {
            return (self.cpu.gpr[i] >> sh) & mask(sz);
        }
        if let Some(s) = sreg_of(r) {
            return u64::from(self.cpu.seg[s as usize].selector);
        }
        0
    }

    /// Writes a GPR: 8/16-bit writes merge, 32-bit writes zero-extend
    /// (SDM vol. 1, 3.4.1.1).
    #[inline]
    pub(crate) fn set_reg(&mut self, r: Register, v: u64) {
        if let Some((i, sh, sz)) = gpr_loc(r) {
            let g = &mut self.cpu.gpr[i];
            *g = match sz {
                4 => v & 0xffff_ffff,
                8 => v,
                _ => (*g & !(mask(sz) << sh)) | ((v & mask(sz)) << sh),
            };
        }
    }

    /// Writes `v` into the low `size` bytes of GPR `i` with the same rules.
    #[inline]
    pub(crate) fn set_gpr(&mut self, i: usize, size: u8, v: u64) {
        let g = &mut self.cpu.gpr[i];
        *g = match size {
            4 => v & 0xffff_ffff,
            8 => v,
            _ => (*g & !mask(size)) | (v & mask(size)),
        };
    }

    /// Effective address (offset) of the instruction's memory operand,
    /// truncated to the address size (SDM vol. 1, 3.7.5).
    #[inline]
    pub(crate) fn ea(&self) -> u64 {
        let i = &self.insn;
        let base = i.memory_base();
        let mut a = i.memory_displacement64();
        if base == Register::RIP || base == Register::EIP {
            a = a.wrapping_add(self.rip);
        } else if base != Register::None {
            a = a.wrapping_add(self.reg(base));
        }
        let idx = i.memory_index();
        if idx != Register::None {
            a = a.wrapping_add(
                self.reg(idx)
                    .wrapping_mul(u64::from(i.memory_index_scale())),
            );
        }
        a & mask(self.asz)
    }

    /// Segment of the memory operand (default or override).
    #[inline]
    pub(crate) fn mseg(&self) -> SegReg {
        sreg_of(self.insn.memory_segment()).unwrap_or(SegReg::Ds)
    }

    /// Size in bytes of operand `n`.
    #[inline]
    pub(crate) fn op_size(&self, n: u32) -> u8 {
        match self.insn.op_kind(n) {
            OpKind::Register => self.insn.op_register(n).size() as u8,
            OpKind::Memory => self.insn.memory_size().size() as u8,
            OpKind::Immediate8 | OpKind::Immediate8_2nd => 1,
            OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
            OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
            _ => 8,
        }
    }

    /// Reads operand `n` (immediates sign-extended as encoded).
    #[inline]
    pub(crate) fn read_op(&mut self, n: u32) -> OpResult<u64> {
        match self.insn.op_kind(n) {
            OpKind::Register => Ok(self.reg(self.insn.op_register(n))),
            OpKind::Memory => {
                let size = self.insn.memory_size().size() as u8;
                if size > 8 || size == 0 {
                    return Err(Exception::ud().into());
                }
                self.read_mem(self.mseg(), self.ea(), size)
            }
            _ => Ok(self.insn.immediate(n)),
        }
    }

    /// Writes operand `n` (register or memory).
    #[inline]
    pub(crate) fn write_op(&mut self, n: u32, v: u64) -> OpResult {
        match self.insn.op_kind(n) {
            OpKind::Register => {
                self.set_reg(self.insn.op_register(n), v);
                Ok(())
            }
            OpKind::Memory => {
                let size = self.insn.memory_size().size() as u8;
                if size > 8 || size == 0 {
                    return Err(Exception::ud().into());
                }
                self.write_mem(self.mseg(), self.ea(), size, v)
            }
            _ => Err(Exception::ud().into()),
        }
    }

    /// Reads operand 0 for a read-modify-write, checking it is writable first
    /// (a read-only page faults with a write error code, as hardware does).
    #[inline]
    pub(crate) fn read_rmw(&mut self, n: u32) -> OpResult<u64> {
        if self.insn.op_kind(n) == OpKind::Memory {
            let size = self.insn.memory_size().size() as u8;
            if size > 8 || size == 0 {
                return Err(Exception::ud().into());
            }
            self.probe_write(self.mseg(), self.ea(), size)?;
        }
        self.read_op(n)
    }

    /// Whether operand `n` is memory.
    #[inline]
    pub(crate) fn is_mem(&self, n: u32) -> bool {
        self.insn.op_kind(n) == OpKind::Memory
    }
}
