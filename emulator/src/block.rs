//! Blocks of fast instructions: runs of consecutive cached 64-bit
//! instructions with a fast form, in one page, ending at the first control
//! transfer (included) or at the first instruction without a fast form
//! (excluded). The fast loop runs a block without looking each
//! instruction up again.
//!
//! A block is only a list of decoded-cache entries, so it is valid exactly
//! as long as they are: it records the decode cache's generation, which
//! changes whenever cached instructions are dropped (self-modifying code,
//! flushes). After every instruction that writes memory the fast loop
//! checks that neither that generation nor the page-table write tracker's
//! moved, and otherwise leaves the block, so that what follows is fetched
//! and translated again.

use crate::decode::DecodeCache;
use crate::fast::{reg_fn, Fast, RegFn};

/// Most instructions in one block.
pub(crate) const BLOCK_MAX: usize = 16;
/// Blocks kept (direct-mapped by guest-physical address, a power of two).
const SLOTS: usize = 256;

/// One instruction of a block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockOp {
    /// Its fast form.
    pub(crate) fast: Fast,
    /// Its length.
    pub(crate) len: u8,
    /// It writes memory: the fast loop checks, after it, that the write
    /// left cached code and translations alone before going on.
    pub(crate) writes: bool,
    /// The specialised handler of a register-only form (then `fast` is
    /// not consulted), with its operands `a`, `b`, `imm` (see [`RegFn`]).
    pub(crate) reg: Option<RegFn>,
    pub(crate) a: u8,
    pub(crate) b: u8,
    pub(crate) imm: u64,
}

/// A block.
#[derive(Clone, Copy)]
pub(crate) struct Block {
    tag: u64,
    /// The decode cache's generation it was built in.
    pub(crate) generation: u64,
    /// Number of instructions.
    pub(crate) n: u8,
    /// The instructions.
    pub(crate) ops: [BlockOp; BLOCK_MAX],
}

const EMPTY: Block = Block {
    tag: u64::MAX,
    generation: 0,
    n: 0,
    ops: [BlockOp {
        fast: Fast::None,
        len: 0,
        writes: false,
        reg: None,
        a: 0,
        b: 0,
        imm: 0,
    }; BLOCK_MAX],
};

/// The block cache.
#[derive(Default)]
pub(crate) struct Blocks {
    pub(crate) slots: Box<[Block]>,
}

#[inline]
fn index(gpa: u64) -> usize {
    ((gpa ^ (gpa >> 12)) as usize) & (SLOTS - 1)
}

/// Whether `f` ends a block (a control transfer).
fn ends_block(f: &Fast) -> bool {
    matches!(
        f,
        Fast::Jcc { .. } | Fast::Jmp { .. } | Fast::Call { .. } | Fast::Ret
    )
}

/// Whether `f` writes memory.
fn writes(f: &Fast) -> bool {
    matches!(
        f,
        Fast::Store { .. } | Fast::Push { .. } | Fast::Call { .. }
    )
}

impl Blocks {
    /// An empty cache.
    pub(crate) fn new() -> Self {
        Self {
            slots: vec![EMPTY; SLOTS].into_boxed_slice(),
        }
    }

    /// The slot of the valid block starting at `gpa`, building it from
    /// the decode cache if needed; `None` if no fast instruction starts there.
    #[inline]
    pub(crate) fn find(&mut self, gpa: u64, dc: &DecodeCache) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let i = index(gpa);
        let b = &self.slots[i];
        if b.tag == gpa && b.generation == dc.generation {
            return Some(i);
        }
        self.build(i, gpa, dc)
    }

    #[cold]
    fn build(&mut self, i: usize, gpa: u64, dc: &DecodeCache) -> Option<usize> {
        let first = dc.peek(gpa, 64)?;
        if matches!(
            first.fast,
            Fast::None | Fast::RepMovs { .. } | Fast::RepStos { .. }
        ) {
            return None;
        }
        let mut b = EMPTY;
        let mut g = gpa;
        while usize::from(b.n) < BLOCK_MAX && g >> 12 == gpa >> 12 {
            let Some(d) = dc.peek(g, 64) else { break };
            if matches!(
                d.fast,
                Fast::None | Fast::RepMovs { .. } | Fast::RepStos { .. }
            ) {
                break;
            }
            let (reg, ra, rb, imm) = match reg_fn(&d.fast) {
                Some((f, ra, rb, imm)) => (Some(f), ra, rb, imm),
                None => (None, 0, 0, 0),
            };
            b.ops[usize::from(b.n)] = BlockOp {
                fast: d.fast,
                len: d.len,
                writes: writes(&d.fast),
                reg,
                a: ra,
                b: rb,
                imm,
            };
            b.n += 1;
            if ends_block(&d.fast) {
                break;
            }
            g += u64::from(d.len);
        }
        if b.n == 0 {
            return None;
        }
        b.tag = gpa;
        b.generation = dc.generation;
        self.slots[i] = b;
        Some(i)
    }
}
