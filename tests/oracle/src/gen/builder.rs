//! Assembles generated instruction groups into a snippet, tracking which status flags may
//! be undefined at every instruction and keeping flag consumers away from them.

use crate::case::{gpr, rflags, CODE_ADDR, DATA_ADDR};
use crate::cpu::Features;
use crate::error::OracleError;
use crate::flags::{flag_effect, from_iced};
use crate::gen::ops::{self, reg, Rm, HIGH8};
use crate::rng::Rng;
use iced_x86::{
    BlockEncoder, BlockEncoderOptions, Code, Encoder, Instruction, InstructionBlock, MemoryOperand,
    Mnemonic, OpKind, Register,
};

/// A label inside the snippet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Label(usize);

/// One step of a group.
#[derive(Clone, Debug)]
pub(crate) enum GOp {
    /// An instruction; the count (shift/rotate count or REP count) refines its flag effect.
    Ins(Instruction, Option<u64>),
    /// A near branch (`code` is a rel8/rel32 branch code) to a label.
    Branch(Code, Label),
    /// `lea r64, [rip + label]`.
    LeaLabel(Register, Label),
    /// Binds a forward label to the next instruction.
    Bind(Label),
    /// Binds a backward label (loop head) to the next instruction; the value is the
    /// union of the flags the loop body may leave undefined (they flow round the back edge).
    BindLoopHead(Label, u64),
}

/// Where an emitted instruction's branch target / RIP-relative label points.
#[derive(Clone, Copy, Debug)]
enum Fixup {
    None,
    Branch(Label),
    Lea(Label),
}

struct Item {
    instr: Instruction,
    fixup: Fixup,
    undef_before: u64,
}

/// Fake original IPs for BlockEncoder: far from the data area so no RIP-relative data
/// operand is ever mistaken for an instruction.
const FAKE_IP: u64 = 0x7000_0000_0000;

/// Per-offset possibly-undefined status flags (see [`crate::Case::undefined_flags`]).
pub(crate) type UndefTable = Vec<(u32, u64)>;

/// Snippet under construction.
pub(crate) struct Builder<'r> {
    /// The case's random stream.
    pub rng: &'r mut Rng,
    /// Extensions the snippet may use.
    pub feat: Features,
    /// GPR index of the data-area base register (never written).
    pub base: usize,
    /// Its value.
    pub base_val: u64,
    /// GPRs that must not be written (bit per index).
    forbid: u16,
    items: Vec<Item>,
    labels: Vec<Option<usize>>,
    label_undef: Vec<u64>,
    pending_bind: Vec<Label>,
    undef: u64,
    /// Fixer instructions inserted so far (statistics).
    pub fixers: usize,
    /// Number of top-level groups in this snippet.
    pub n_groups: usize,
    /// Index of the top-level group being generated.
    pub cur_group: usize,
    /// Forward labels and the top-level group they are bound to (`n_groups` = the end).
    fwd: Vec<(usize, Label)>,
}

impl<'r> Builder<'r> {
    /// Starts an empty snippet.
    pub(crate) fn new(rng: &'r mut Rng, feat: Features, base: usize, base_val: u64) -> Self {
        Builder {
            rng,
            feat,
            base,
            base_val,
            forbid: (1 << gpr::RSP) | (1 << base),
            items: Vec::new(),
            labels: Vec::new(),
            label_undef: Vec::new(),
            pending_bind: Vec::new(),
            undef: 0,
            fixers: 0,
            n_groups: 0,
            cur_group: 0,
            fwd: Vec::new(),
        }
    }

    /// Starts top-level group `g`, binding the forward labels that target it.
    pub(crate) fn start_group(&mut self, g: usize) -> Result<(), OracleError> {
        self.cur_group = g;
        let here: Vec<GOp> = self
            .fwd
            .iter()
            .filter(|(t, _)| *t == g)
            .map(|(_, l)| GOp::Bind(*l))
            .collect();
        self.fwd.retain(|(t, _)| *t != g);
        self.push_group(here)
    }

    /// A label bound to the start of a later top-level group (or the end), at most
    /// `max_ahead` groups ahead.
    pub(crate) fn fwd_label(&mut self, max_ahead: usize) -> Label {
        let l = self.label();
        let room = (self.n_groups - self.cur_group).clamp(1, max_ahead.max(1));
        let target = self.cur_group + 1 + self.rng.below(room as u64) as usize;
        self.fwd.push((target.min(self.n_groups), l));
        l
    }

    /// Whether GPR `i` may be written.
    pub(crate) fn writable(&self, i: usize) -> bool {
        self.forbid & (1 << (i & 15)) == 0
    }

    /// Additionally forbids writing GPR `i` (returns the previous mask for [`Self::restore_forbid`]).
    pub(crate) fn forbid(&mut self, i: usize) -> u16 {
        let old = self.forbid;
        self.forbid |= 1 << (i & 15);
        old
    }

    /// Restores a forbid mask saved by [`Self::forbid`].
    pub(crate) fn restore_forbid(&mut self, old: u16) {
        self.forbid = old;
    }

    /// A new, unbound label.
    pub(crate) fn label(&mut self) -> Label {
        self.labels.push(None);
        self.label_undef.push(0);
        Label(self.labels.len() - 1)
    }

    /// A random writable GPR index, or None if all are forbidden.
    pub(crate) fn wreg_index(&mut self) -> Option<usize> {
        let free: Vec<usize> = (0..16).filter(|i| self.writable(*i)).collect();
        self.rng.pick(&free).copied()
    }

    /// A random writable register of `size` bits (8-bit may be AH..BH).
    pub(crate) fn wreg(&mut self, size: u32) -> Option<Register> {
        if size == 8 && self.rng.chance(1, 6) {
            let i = self.rng.below(4) as usize;
            if self.writable(i) {
                return Some(HIGH8[i]);
            }
        }
        self.wreg_index().map(|i| reg(i, size))
    }

    /// A random register of `size` bits to read (any GPR).
    pub(crate) fn rreg(&mut self, size: u32) -> Register {
        if size == 8 && self.rng.chance(1, 6) {
            return HIGH8[self.rng.below(4) as usize];
        }
        reg(self.rng.below(16) as usize, size)
    }

    /// A data-area memory operand for an access of up to 16 bytes, plus any instruction
    /// that must run first to bound an index register.
    pub(crate) fn mem(&mut self) -> (MemoryOperand, Vec<GOp>) {
        let mut pre = Vec::new();
        let disp = self.disp();
        let m = match self.rng.below(10) {
            // [rip + abs] (the code and data pages are within 2 GiB).
            0 => MemoryOperand::with_base_displ(
                Register::RIP,
                (DATA_ADDR + 0x1000 + self.rng.below(0x6000)) as i64,
            ),
            // [rsp + disp]: the stack lives in the data area's top half.
            1 => MemoryOperand::with_base_displ(Register::RSP, self.rng.range(-0x100, 0x100)),
            // [base32 + disp] with a 67h address-size prefix (the base fits in 32 bits).
            2 => MemoryOperand::with_base_displ(reg(self.base, 32), disp),
            // [base + index*scale + disp] with the index bounded first.
            3 | 4 => match self.wreg_index() {
                Some(ix) if ix != gpr::RSP => {
                    let and = ops::i_rm_imm("And_rm32_imm32", Rm::Reg(reg(ix, 32)), 0x1FF);
                    if let Ok(and) = and {
                        pre.push(GOp::Ins(and, None));
                    }
                    let scale = [1u32, 2, 4, 8][self.rng.below(4) as usize];
                    MemoryOperand::with_base_index_scale_displ_size(
                        reg(self.base, 64),
                        reg(ix, 64),
                        scale,
                        disp,
                        1,
                    )
                }
                _ => MemoryOperand::with_base_displ(reg(self.base, 64), disp),
            },
            _ => MemoryOperand::with_base_displ(reg(self.base, 64), disp),
        };
        (m, pre)
    }

    /// A displacement for `[base + disp]`, biased to 0 and to the disp8 range.
    pub(crate) fn disp(&mut self) -> i64 {
        match self.rng.below(4) {
            0 => 0,
            1 => self.rng.range(-128, 127),
            _ => self.rng.range(-0x1000, 0x1000),
        }
    }

    /// A register-or-memory operand to write (`size` bits), with any setup instructions.
    pub(crate) fn wrm(&mut self, size: u32) -> Option<(Rm, Vec<GOp>)> {
        if self.rng.chance(2, 5) {
            let (m, pre) = self.mem();
            return Some((Rm::Mem(m), pre));
        }
        self.wreg(size).map(|r| (Rm::Reg(r), Vec::new()))
    }

    /// A register-or-memory operand to read (`size` bits), with any setup instructions.
    pub(crate) fn rrm(&mut self, size: u32) -> (Rm, Vec<GOp>) {
        if self.rng.chance(2, 5) {
            let (m, pre) = self.mem();
            return (Rm::Mem(m), pre);
        }
        (Rm::Reg(self.rreg(size)), Vec::new())
    }

    /// Appends a group atomically: every instruction must encode on its own, else the
    /// group is rejected and nothing is emitted.
    pub(crate) fn push_group(&mut self, group: Vec<GOp>) -> Result<(), OracleError> {
        let mut enc = Encoder::new(64);
        for op in &group {
            if let GOp::Ins(i, _) = op {
                enc.encode(i, CODE_ADDR)
                    .map_err(|e| OracleError::Encode(format!("{:?}: {e}", i.code())))?;
            }
        }
        for op in group {
            match op {
                GOp::Ins(i, count) => self.emit(i, count, Fixup::None)?,
                GOp::Branch(code, l) => {
                    let i = Instruction::with_branch(code, FAKE_IP)
                        .map_err(|e| OracleError::Encode(e.to_string()))?;
                    self.emit(i, None, Fixup::Branch(l))?;
                }
                GOp::LeaLabel(r, l) => {
                    // An indirect call/jmp through `r` may reach the label with
                    // the flags as they are here.
                    if let Some(u) = self.label_undef.get_mut(l.0) {
                        *u |= self.undef;
                    }
                    let m = MemoryOperand::with_base_displ(Register::RIP, FAKE_IP as i64);
                    let i = Instruction::with2(Code::Lea_r64_m, r, m)
                        .map_err(|e| OracleError::Encode(e.to_string()))?;
                    self.emit(i, None, Fixup::Lea(l))?;
                }
                GOp::Bind(l) => {
                    self.undef |= self.label_undef.get(l.0).copied().unwrap_or(0);
                    self.pending_bind.push(l);
                }
                GOp::BindLoopHead(l, body_undef) => {
                    // Flag state at the head: from before the loop, or from the body's end,
                    // which is (before & !written) | undefined, within before | undefined.
                    self.undef |= body_undef;
                    self.pending_bind.push(l);
                }
            }
        }
        Ok(())
    }

    /// Emits one instruction, first inserting a flag-defining `cmp` if it reads a flag that
    /// may be undefined.
    fn emit(
        &mut self,
        i: Instruction,
        count: Option<u64>,
        fixup: Fixup,
    ) -> Result<(), OracleError> {
        let reads = from_iced(i.rflags_read()) & rflags::STATUS;
        if reads & self.undef != 0 {
            let fixer = self.fixer(reads)?;
            self.emit_raw(fixer, None, Fixup::None);
            self.fixers += 1;
        }
        if let Fixup::Branch(l) = fixup {
            if let Some(slot) = self.label_undef.get_mut(l.0) {
                *slot |= self.undef;
            }
        }
        self.emit_raw(i, count, fixup);
        Ok(())
    }

    fn emit_raw(&mut self, i: Instruction, count: Option<u64>, fixup: Fixup) {
        let index = self.items.len();
        for l in self.pending_bind.drain(..) {
            if let Some(slot) = self.labels.get_mut(l.0) {
                *slot = Some(index);
            }
        }
        let undef_before = self.undef;
        let size = operand_size(&i);
        let mut effect = flag_effect(i.mnemonic(), size, count);
        if is_rep_compare(&i) && count.is_none() {
            // REP CMPS/SCAS with an unknown count may not compare at all.
            effect.written = 0;
        } else if is_rep_compare(&i) && count == Some(0) {
            effect = Default::default();
        }
        self.undef = effect.apply(self.undef);
        self.items.push(Item {
            instr: i,
            fixup,
            undef_before,
        });
    }

    /// A `cmp`/`clc`/`stc` that defines the flags in `reads`.
    fn fixer(&mut self, reads: u64) -> Result<Instruction, OracleError> {
        if reads & !rflags::CF == 0 && self.rng.chance(1, 2) {
            return ops::i0(if self.rng.chance(1, 2) { "Clc" } else { "Stc" });
        }
        let size = [8u32, 16, 32, 64][self.rng.below(4) as usize];
        let a = reg(self.rng.below(16) as usize, size);
        if self.rng.chance(1, 2) {
            let b = reg(self.rng.below(16) as usize, size);
            ops::i_rm_r(&format!("Cmp_rm{size}_r{size}"), Rm::Reg(a), b)
        } else {
            let imm = self.rng.range(-128, 127);
            let name = if size == 8 {
                "Cmp_rm8_imm8".to_string()
            } else {
                format!("Cmp_rm{size}_imm8")
            };
            ops::i_rm_imm(&name, Rm::Reg(a), imm)
        }
    }

    /// Encodes the snippet at [`CODE_ADDR`]; returns the bytes and the per-offset
    /// undefined-flag table (ending with the end of the snippet).
    pub(crate) fn finish(mut self) -> Result<(Vec<u8>, UndefTable), OracleError> {
        if !self.pending_bind.is_empty() || self.labels.iter().any(|l| l.is_none()) {
            // Forward branches to the end need an instruction to land on.
            let unbound: Vec<Label> = (0..self.labels.len())
                .filter(|i| self.labels[*i].is_none())
                .map(Label)
                .filter(|l| !self.pending_bind.contains(l))
                .collect();
            for l in unbound {
                self.undef |= self.label_undef[l.0];
                self.pending_bind.push(l);
            }
            let nop = ops::i0("Nopd")?;
            self.emit_raw(nop, None, Fixup::None);
        }
        let mut instrs = Vec::with_capacity(self.items.len());
        for (idx, it) in self.items.iter().enumerate() {
            let mut i = it.instr;
            i.set_ip(FAKE_IP + 0x10 + idx as u64);
            let target = |l: Label| -> Result<u64, OracleError> {
                self.labels
                    .get(l.0)
                    .copied()
                    .flatten()
                    .map(|t| FAKE_IP + 0x10 + t as u64)
                    .ok_or_else(|| OracleError::Encode("unbound label".into()))
            };
            match it.fixup {
                Fixup::None => {}
                Fixup::Branch(l) => i.set_near_branch64(target(l)?),
                Fixup::Lea(l) => i.set_memory_displacement64(target(l)?),
            }
            instrs.push(i);
        }
        let block = InstructionBlock::new(&instrs, CODE_ADDR);
        let res = BlockEncoder::encode(
            64,
            block,
            BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
        )
        .map_err(|e| OracleError::Encode(e.to_string()))?;
        let mut table = Vec::with_capacity(self.items.len() + 1);
        for (it, off) in self.items.iter().zip(res.new_instruction_offsets.iter()) {
            if *off != u32::MAX {
                table.push((*off, it.undef_before));
            }
        }
        let len = res.code_buffer.len() as u32;
        table.push((len, self.undef));
        table.sort_by_key(|e| e.0);
        table.dedup_by_key(|e| e.0);
        Ok((res.code_buffer, table))
    }

    /// Number of instructions emitted so far.
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

/// Operand size in bits of an instruction's first operand (64 when it has none).
pub(crate) fn operand_size(i: &Instruction) -> u32 {
    if i.op_count() == 0 {
        return match i.mnemonic() {
            Mnemonic::Cmpsb | Mnemonic::Scasb => 8,
            Mnemonic::Cmpsw | Mnemonic::Scasw => 16,
            Mnemonic::Cmpsd | Mnemonic::Scasd => 32,
            _ => 64,
        };
    }
    match i.op0_kind() {
        OpKind::Register => i.op0_register().size() as u32 * 8,
        OpKind::Memory => (i.memory_size().size() as u32 * 8).max(8),
        _ => 64,
    }
}

fn is_rep_compare(i: &Instruction) -> bool {
    matches!(
        i.mnemonic(),
        Mnemonic::Cmpsb
            | Mnemonic::Cmpsw
            | Mnemonic::Cmpsd
            | Mnemonic::Cmpsq
            | Mnemonic::Scasb
            | Mnemonic::Scasw
            | Mnemonic::Scasd
            | Mnemonic::Scasq
    ) && (i.has_repe_prefix() || i.has_repne_prefix())
}
