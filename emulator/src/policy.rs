//! The intercept policy (what must stop execution before it happens) and the
//! events the engine returns.
//!
//! The software VMX and SVM backends translate their control structures into
//! an [`InterceptPolicy`]: VMX's exception bitmap, I/O bitmaps A/B (or
//! "unconditional I/O exiting" = every port set), MSR bitmaps, CR0/CR4
//! guest/host masks (approximated per register), CR3/CR8 load/store exiting,
//! MOV-DR exiting and the primary/secondary processor-based controls (SDM
//! vol. 3, 25.6); SVM's intercept vectors, IOPM and MSRPM (APM vol. 2, 15.9-15.11,
//! Appendix B). An intercept is reported *before* the instruction has any
//! effect, after the checks the manuals say take priority over the exit
//! (e.g. CPL checks for privileged instructions, SDM vol. 3, 26.1.1).

use hyperplug_mmu::{AccessKind, NestedFault};

bitflags::bitflags! {
    /// Instruction intercepts both vendors can request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct InsnIntercepts: u32 {
        /// HLT.
        const HLT = 1 << 0;
        /// CPUID.
        const CPUID = 1 << 1;
        /// RDTSC.
        const RDTSC = 1 << 2;
        /// RDTSCP.
        const RDTSCP = 1 << 3;
        /// RDPMC.
        const RDPMC = 1 << 4;
        /// INVLPG.
        const INVLPG = 1 << 5;
        /// MWAIT.
        const MWAIT = 1 << 6;
        /// MONITOR.
        const MONITOR = 1 << 7;
        /// PAUSE.
        const PAUSE = 1 << 8;
        /// INVD.
        const INVD = 1 << 9;
        /// WBINVD.
        const WBINVD = 1 << 10;
        /// XSETBV.
        const XSETBV = 1 << 11;
        /// LGDT/LIDT/SGDT/SIDT/LLDT/SLDT/LTR/STR.
        const DESC_TABLE = 1 << 12;
        /// INT n (software interrupts, INT3, INTO).
        const INTN = 1 << 13;
        /// IRET.
        const IRET = 1 << 14;
        /// INVPCID.
        const INVPCID = 1 << 15;
    }
}

/// A bitmap over every I/O port.
#[derive(Clone, PartialEq, Eq)]
pub struct PortBitmap(Box<[u64; 1024]>);

impl std::fmt::Debug for PortBitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PortBitmap({} set)",
            self.0.iter().map(|w| w.count_ones()).sum::<u32>()
        )
    }
}

impl Default for PortBitmap {
    fn default() -> Self {
        Self(Box::new([0; 1024]))
    }
}

impl PortBitmap {
    /// Every port set (unconditional I/O exiting).
    pub fn all() -> Self {
        Self(Box::new([u64::MAX; 1024]))
    }
    /// Sets or clears `port`.
    pub fn set(&mut self, port: u16, on: bool) {
        let (w, b) = (usize::from(port) / 64, port % 64);
        if on {
            self.0[w] |= 1 << b;
        } else {
            self.0[w] &= !(1 << b);
        }
    }
    /// Whether `port` is set.
    pub fn get(&self, port: u16) -> bool {
        self.0[usize::from(port) / 64] >> (port % 64) & 1 != 0
    }
    /// Whether any of the `size` ports starting at `port` is set (an access
    /// touching an intercepted port is intercepted; ports wrap at 0xffff, and
    /// SDM 25.6.4 says a wrapping access is intercepted unconditionally).
    pub fn any(&self, port: u16, size: u8) -> bool {
        let end = u32::from(port) + u32::from(size);
        if end > 0x1_0000 {
            return true;
        }
        (u32::from(port)..end).any(|p| self.get(p as u16))
    }
}

/// An MSR bitmap over the three ranges the vendors' bitmaps cover
/// (0-0x1fff, 0xc0000000-0xc0001fff, 0xc0010000-0xc0011fff), plus one flag
/// for every MSR outside them (both vendors intercept those unconditionally).
#[derive(Clone, PartialEq, Eq)]
pub struct MsrBitmap {
    bits: Box<[u64; 384]>,
    /// Intercept every MSR outside the three ranges.
    pub others: bool,
}

impl std::fmt::Debug for MsrBitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MsrBitmap(others={})", self.others)
    }
}

impl Default for MsrBitmap {
    fn default() -> Self {
        Self {
            bits: Box::new([0; 384]),
            others: false,
        }
    }
}

impl MsrBitmap {
    fn index(msr: u32) -> Option<usize> {
        let (base, off) = match msr {
            0..=0x1fff => (0, msr),
            0xc000_0000..=0xc000_1fff => (0x2000, msr - 0xc000_0000),
            0xc001_0000..=0xc001_1fff => (0x4000, msr - 0xc001_0000),
            _ => return None,
        };
        Some((base + off) as usize)
    }
    /// Sets or clears `msr` (ignored outside the ranges).
    pub fn set(&mut self, msr: u32, on: bool) {
        if let Some(i) = Self::index(msr) {
            if on {
                self.bits[i / 64] |= 1 << (i % 64);
            } else {
                self.bits[i / 64] &= !(1 << (i % 64));
            }
        }
    }
    /// Whether an access to `msr` is intercepted.
    pub fn get(&self, msr: u32) -> bool {
        match Self::index(msr) {
            Some(i) => self.bits[i / 64] >> (i % 64) & 1 != 0,
            None => self.others,
        }
    }
}

/// What must stop execution. `Default` intercepts nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterceptPolicy {
    /// Exception bitmap: bit n intercepts vector n.
    pub exceptions: u32,
    /// Port I/O intercepts.
    pub io: PortBitmap,
    /// RDMSR intercepts.
    pub msr_read: MsrBitmap,
    /// WRMSR intercepts.
    pub msr_write: MsrBitmap,
    /// MOV from CRn: bit n.
    pub cr_read: u16,
    /// MOV to CRn (and CLTS/LMSW for CR0): bit n.
    pub cr_write: u16,
    /// MOV from DRn: bit n.
    pub dr_read: u8,
    /// MOV to DRn: bit n.
    pub dr_write: u8,
    /// Instruction intercepts.
    pub insns: InsnIntercepts,
    /// Stop at the first boundary where an external interrupt could be taken
    /// (RFLAGS.IF = 1, no interrupt shadow).
    pub interrupt_window: bool,
}

/// A descriptor-table instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum DescTableInsn {
    Lgdt,
    Lidt,
    Sgdt,
    Sidt,
    Lldt,
    Sldt,
    Ltr,
    Str,
}

/// The details of an intercept, as either vendor needs to encode its exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterceptKind {
    /// IN/OUT/INS/OUTS.
    Io {
        /// Port.
        port: u16,
        /// Access size in bytes (1, 2, 4).
        size: u8,
        /// IN/INS.
        input: bool,
        /// INS/OUTS.
        string: bool,
        /// REP prefix.
        rep: bool,
        /// Address size in bytes of a string instruction (2, 4, 8).
        addr_size: u8,
        /// Segment register of OUTS's source (INS always uses ES).
        seg: u8,
        /// Immediate-port form (IN/OUT imm8).
        imm: bool,
        /// Value to write for OUT (0 for IN or string forms).
        value: u32,
    },
    /// MOV from CRn to GPR `gpr`.
    CrRead {
        /// Control register number.
        cr: u8,
        /// Destination GPR (encoding order).
        gpr: u8,
    },
    /// MOV to CRn (also CLTS and LMSW on CR0).
    CrWrite {
        /// Control register number.
        cr: u8,
        /// Source GPR (encoding order); `None` for CLTS/LMSW.
        gpr: Option<u8>,
        /// The value being written.
        value: u64,
        /// CLTS (true) / LMSW (value carries the source).
        clts: bool,
        /// LMSW.
        lmsw: bool,
    },
    /// MOV from DRn.
    DrRead {
        /// Debug register number.
        dr: u8,
        /// Destination GPR.
        gpr: u8,
    },
    /// MOV to DRn.
    DrWrite {
        /// Debug register number.
        dr: u8,
        /// Source GPR.
        gpr: u8,
    },
    /// An exception in the exception bitmap (state as at the faulting instruction).
    Exception {
        /// Vector.
        vector: u8,
        /// Error code, if it has one.
        error_code: Option<u32>,
        /// #PF: the linear address (CR2 is NOT yet written, as VMX/SVM exits leave it).
        address: Option<u64>,
        /// #PF: the access kind that faulted.
        access: Option<AccessKind>,
    },
    /// RDMSR of `msr`.
    MsrRead {
        /// MSR number (ECX).
        msr: u32,
    },
    /// WRMSR of `value` to `msr`.
    MsrWrite {
        /// MSR number (ECX).
        msr: u32,
        /// EDX:EAX.
        value: u64,
    },
    /// HLT.
    Hlt,
    /// CPUID with EAX = `leaf`, ECX = `subleaf`.
    Cpuid {
        /// EAX.
        leaf: u32,
        /// ECX.
        subleaf: u32,
    },
    /// RDTSC.
    Rdtsc,
    /// RDTSCP.
    Rdtscp,
    /// RDPMC.
    Rdpmc,
    /// INVLPG of `linear`.
    Invlpg {
        /// The linear address operand.
        linear: u64,
    },
    /// MWAIT.
    Mwait,
    /// MONITOR.
    Monitor,
    /// PAUSE.
    Pause,
    /// INVD.
    Invd,
    /// WBINVD.
    Wbinvd,
    /// XSETBV.
    Xsetbv,
    /// A descriptor-table instruction.
    DescTable(DescTableInsn),
    /// INT n / INT3 / INTO with vector.
    IntN {
        /// Vector.
        vector: u8,
    },
    /// IRET.
    Iret,
    /// INVPCID (after its #UD and CPL checks, before its memory operand:
    /// SDM vol. 3, 26.1.1 "Relative Priority of Faults and VM Exits").
    Invpcid,
    /// The interrupt window is open.
    InterruptWindow,
}

/// An intercept with the instruction it happened at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intercept {
    /// The details.
    pub kind: InterceptKind,
    /// RIP of the instruction (not yet executed).
    pub rip: u64,
    /// Instruction length (0 when not at an instruction, e.g. interrupt window).
    pub insn_len: u8,
    /// The instruction bytes (first `insn_len` valid).
    pub insn_bytes: [u8; 15],
}

/// Why [`crate::Engine::execute`] returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The step budget is used up.
    Budget,
    /// HLT executed (RIP is after it; `Cpu::halted` is set).
    Hlt,
    /// Triple fault: the processor shut down (SDM vol. 3, 6.15).
    Shutdown,
    /// An intercept in the policy.
    Intercept(Intercept),
    /// An MMIO access the caller must complete (the instruction has not executed).
    Mmio {
        /// Guest-physical address.
        gpa: u64,
        /// Size in bytes.
        size: u8,
        /// The data of a write (first `size` bytes), `None` for a read.
        write: Option<[u8; 16]>,
    },
    /// A port access the caller must complete (the instruction has not executed).
    Io {
        /// Port.
        port: u16,
        /// Size in bytes.
        size: u8,
        /// The value of an OUT, `None` for IN.
        write: Option<u32>,
    },
    /// A second-level fault on a guest-physical access.
    Nested(NestedFault),
    /// A paging-structure entry lies outside RAM (hardware would read the
    /// bus; we stop instead): the guest-physical address.
    TableUnbacked(u64),
    /// The CPU is halted and no interrupt is pending (nothing executed).
    Halted,
}

/// What [`crate::Engine::execute`] returns: why it stopped, and how much ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Why it stopped.
    pub kind: EventKind,
    /// Instructions retired (a REP string instruction counts once, when it completes).
    pub retired: u64,
    /// Steps used from the budget (instructions plus REP iterations that did
    /// not complete their instruction).
    pub steps: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_bitmap() {
        let mut p = PortBitmap::default();
        p.set(0x3f8, true);
        assert!(p.get(0x3f8));
        assert!(!p.get(0x3f9));
        assert!(p.any(0x3f7, 2));
        assert!(!p.any(0x3f9, 4));
        assert!(p.any(0xffff, 2), "wrapping access");
        p.set(0x3f8, false);
        assert!(!p.get(0x3f8));
        assert!(PortBitmap::all().get(0));
    }

    #[test]
    fn msr_bitmap() {
        let mut m = MsrBitmap::default();
        for msr in [0x10, 0x1fff, 0xc000_0080, 0xc001_1fff] {
            assert!(!m.get(msr));
            m.set(msr, true);
            assert!(m.get(msr), "{msr:#x}");
        }
        assert!(!m.get(0x11));
        assert!(!m.get(0x4000_0000));
        m.others = true;
        assert!(m.get(0x4000_0000));
    }
}
