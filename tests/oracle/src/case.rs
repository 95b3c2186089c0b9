//! Test case and outcome types shared by the oracle, the generator and the comparer.

use std::fmt;

/// User address of the snippet's code page (mapped RWX in the child).
pub const CODE_ADDR: u64 = 0x1000_0000;
/// Size of the code page; a snippet plus its `int3` terminator must fit.
pub const CODE_SIZE: usize = 0x1000;
/// User address of the data area (mapped RW in the child).
pub const DATA_ADDR: u64 = 0x2000_0000;
/// Size of the data area (64 KiB).
pub const DATA_SIZE: usize = 0x1_0000;
/// An address that is never mapped in the child (for #PF tests).
pub const UNMAPPED_ADDR: u64 = 0x3000_0000;

/// Index of a general-purpose register in [`Regs::gpr`], in the x86 encoding order
/// (SDM vol. 2A, 2.1.5 table 2-2: rAX=0 ... rDI=7, R8..R15 = 8..15).
pub mod gpr {
    /// RAX.
    pub const RAX: usize = 0;
    /// RCX.
    pub const RCX: usize = 1;
    /// RDX.
    pub const RDX: usize = 2;
    /// RBX.
    pub const RBX: usize = 3;
    /// RSP.
    pub const RSP: usize = 4;
    /// RBP.
    pub const RBP: usize = 5;
    /// RSI.
    pub const RSI: usize = 6;
    /// RDI.
    pub const RDI: usize = 7;
    /// R8 (R9..R15 follow as 9..15).
    pub const R8: usize = 8;
    /// Register names in index order.
    pub const NAMES: [&str; 16] = [
        "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15",
    ];
}

/// RFLAGS bits (SDM vol. 1, 3.4.3, figure 3-8).
pub mod rflags {
    /// Carry flag (bit 0).
    pub const CF: u64 = 1 << 0;
    /// Reserved bit 1, always 1.
    pub const FIXED1: u64 = 1 << 1;
    /// Parity flag (bit 2).
    pub const PF: u64 = 1 << 2;
    /// Auxiliary carry flag (bit 4).
    pub const AF: u64 = 1 << 4;
    /// Zero flag (bit 6).
    pub const ZF: u64 = 1 << 6;
    /// Sign flag (bit 7).
    pub const SF: u64 = 1 << 7;
    /// Trap flag (bit 8).
    pub const TF: u64 = 1 << 8;
    /// Interrupt enable flag (bit 9).
    pub const IF: u64 = 1 << 9;
    /// Direction flag (bit 10).
    pub const DF: u64 = 1 << 10;
    /// Overflow flag (bit 11).
    pub const OF: u64 = 1 << 11;
    /// Nested task (bit 14).
    pub const NT: u64 = 1 << 14;
    /// Resume flag (bit 16).
    pub const RF: u64 = 1 << 16;
    /// Alignment check (bit 18).
    pub const AC: u64 = 1 << 18;
    /// CPUID-available flag (bit 21).
    pub const ID: u64 = 1 << 21;
    /// The six status flags (SDM vol. 1, 3.4.3.1).
    pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
    /// Flags a case may set initially: status flags and DF.
    pub const SETTABLE: u64 = STATUS | DF;
    /// Flags a user-mode snippet can observe and change and the comparer compares
    /// (status flags, DF, and the user-writable AC/ID/NT bits of POPF).
    pub const COMPARED: u64 = STATUS | DF | AC | ID | NT;

    /// Short text form of the status flags and DF, e.g. `"CF ZF DF"`.
    pub fn describe(v: u64) -> String {
        const NAMES: [(u64, &str); 10] = [
            (CF, "CF"),
            (PF, "PF"),
            (AF, "AF"),
            (ZF, "ZF"),
            (SF, "SF"),
            (TF, "TF"),
            (IF, "IF"),
            (DF, "DF"),
            (OF, "OF"),
            (RF, "RF"),
        ];
        let names: Vec<&str> = NAMES
            .iter()
            .filter(|(bit, _)| v & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(" ")
        }
    }
}

/// User-visible register state: 16 GPRs, RIP and RFLAGS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Regs {
    /// GPRs indexed by [`gpr`] constants.
    pub gpr: [u64; 16],
    /// Instruction pointer.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
}

/// One differential test case: a snippet of 64-bit code and the initial user state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// Machine code, loaded at [`CODE_ADDR`]; the oracle appends an `int3` terminator.
    pub code: Vec<u8>,
    /// Initial registers; `regs.rip` is normally [`CODE_ADDR`]; only
    /// [`rflags::SETTABLE`] bits of `regs.rflags` are used (IF is forced on, TF off).
    pub regs: Regs,
    /// Initial data-area contents (at most [`DATA_SIZE`] bytes; the rest is zero).
    pub data: Vec<u8>,
    /// Status flags that may be architecturally undefined before the instruction at
    /// each code offset (sorted by offset; the last entry is the end of the snippet).
    /// The comparer masks these at the outcome's RIP; empty means "none known".
    pub undefined_flags: Vec<(u32, u64)>,
}

impl Case {
    /// Address of the `int3` terminator the oracle appends (= RIP when the case completes).
    pub fn end_rip(&self) -> u64 {
        CODE_ADDR + self.code.len() as u64
    }

    /// Status flags possibly undefined when execution stops at `rip` (before the
    /// instruction there runs); all status flags if `rip` is not an instruction boundary.
    pub fn undefined_flags_at(&self, rip: u64) -> u64 {
        let Some(off) = rip.checked_sub(CODE_ADDR) else {
            return rflags::STATUS;
        };
        self.undefined_flags
            .iter()
            .find(|(o, _)| u64::from(*o) == off)
            .map_or(rflags::STATUS, |(_, m)| *m)
    }
}

/// An x86 exception raised by the snippet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    /// Vector (SDM vol. 3A, 6.3.1 table 6-1): #DE 0, #DB 1, #BP 3, #OF 4, #BR 5,
    /// #UD 6, #NP 11, #SS 12, #GP 13, #PF 14, #AC 17.
    pub vector: u8,
    /// Whether the vector pushes an error code (SDM vol. 3A table 6-1 "Error Code").
    pub error_code_known: bool,
    /// The error code (0 when not known).
    pub error_code: u64,
    /// CR2 for #PF, else 0.
    pub fault_addr: u64,
}

impl Exception {
    /// Mnemonic of the vector, e.g. `"#GP"`.
    pub fn name(&self) -> &'static str {
        vector_name(self.vector)
    }
}

/// Mnemonic of an exception vector (SDM vol. 3A table 6-1).
pub fn vector_name(vector: u8) -> &'static str {
    match vector {
        0 => "#DE",
        1 => "#DB",
        2 => "NMI",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        18 => "#MC",
        19 => "#XM",
        21 => "#CP",
        _ => "#??",
    }
}

/// Whether an exception vector delivers an error code (SDM vol. 3A, 6.3.1 table 6-1).
pub fn vector_has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21)
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if self.error_code_known {
            write!(f, "({:#x})", self.error_code)?;
        }
        if self.vector == 14 {
            write!(f, " addr={:#x}", self.fault_addr)?;
        }
        Ok(())
    }
}

/// What a case did on the oracle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Final registers. On completion `rip` is [`Case::end_rip`]; on an exception it is
    /// the RIP the CPU saved: the faulting instruction for faults, the next one for
    /// traps (#BP, #OF, single-step #DB).
    pub regs: Regs,
    /// Final data-area contents ([`DATA_SIZE`] bytes).
    pub data: Vec<u8>,
    /// The exception that stopped the snippet, if any.
    pub exception: Option<Exception>,
}

impl Outcome {
    /// Final RFLAGS restricted to `mask` (the comparer passes
    /// `COMPARED & !case.undefined_flags_at(rip)`).
    pub fn masked_rflags(&self, mask: u64) -> u64 {
        self.regs.rflags & mask
    }

    /// Short label for histograms: `"completed"` or the exception mnemonic.
    pub fn kind(&self) -> &'static str {
        match &self.exception {
            None => "completed",
            Some(e) => e.name(),
        }
    }
}
