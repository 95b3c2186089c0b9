//! The architectural state the emulator executes on, and its conversion to
//! and from the ABI's [`CpuState`].

use hyperplug_mmu::PagingContext;
use hyperplug_plugin_api::state::{CpuState, DTable, MsrEntry, Regs, Segment, Sregs};

/// GPR indices in ModRM/REX encoding order (SDM vol. 2, 2.1.5 Table 2-2).
pub mod reg {
    #![allow(missing_docs)]
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
}

/// Segment registers in encoding order (SDM vol. 2, 3.1.1.3: ES=0, CS=1, SS=2, DS=3, FS=4, GS=5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum SegReg {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
}

impl SegReg {
    /// From an encoding number 0-5.
    pub fn from_index(i: usize) -> Option<Self> {
        Some(match i {
            0 => Self::Es,
            1 => Self::Cs,
            2 => Self::Ss,
            3 => Self::Ds,
            4 => Self::Fs,
            5 => Self::Gs,
            _ => return None,
        })
    }
}

/// A segment register: visible selector and hidden descriptor cache
/// (SDM vol. 3, 3.4.3 "Segment Registers"). The limit is byte-granular
/// (already expanded by G). Access-right fields follow the descriptor
/// (SDM vol. 3, 3.4.5, Figure 3-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seg {
    /// Visible selector.
    pub selector: u16,
    /// Base address.
    pub base: u64,
    /// Byte-granular limit.
    pub limit: u32,
    /// 4-bit type field.
    pub typ: u8,
    /// S: 1 = code/data, 0 = system.
    pub s: bool,
    /// Descriptor privilege level.
    pub dpl: u8,
    /// Present.
    pub present: bool,
    /// Available for software.
    pub avl: bool,
    /// L: 64-bit code segment.
    pub l: bool,
    /// D/B: default operation size / big.
    pub db: bool,
    /// G: granularity (informational; `limit` is already expanded).
    pub g: bool,
    /// Unusable (a null selector loaded in protected mode; VMX's "unusable" bit).
    pub unusable: bool,
}

impl Seg {
    /// A real-mode segment for `selector`: base = selector × 16, limit 0xffff,
    /// read/write data (SDM vol. 3, 20.1.1 and 9.1.4).
    pub fn real(selector: u16, code: bool) -> Self {
        Self {
            selector,
            base: u64::from(selector) << 4,
            limit: 0xffff,
            typ: if code { 0xb } else { 0x3 },
            s: true,
            present: true,
            ..Self::default()
        }
    }

    /// Code segment (type bit 3 set, S = 1).
    pub fn is_code(&self) -> bool {
        self.s && self.typ & 8 != 0
    }

    /// Expand-down data segment (SDM vol. 3, 3.4.5.1, Table 3-1).
    pub fn is_expand_down(&self) -> bool {
        self.s && self.typ & 0xc == 0x4
    }

    /// Writable data segment.
    pub fn is_writable(&self) -> bool {
        self.s && self.typ & 0xa == 0x2
    }

    /// Readable (any data segment, or a code segment with R = 1).
    pub fn is_readable(&self) -> bool {
        self.s && (self.typ & 8 == 0 || self.typ & 2 != 0)
    }

    fn from_abi(s: &Segment) -> Self {
        Self {
            selector: s.selector,
            base: s.base,
            limit: s.limit,
            typ: s.type_ & 0xf,
            s: s.s != 0,
            dpl: s.dpl & 3,
            present: s.present != 0,
            avl: s.avl != 0,
            l: s.l != 0,
            db: s.db != 0,
            g: s.g != 0,
            unusable: s.unusable != 0,
        }
    }

    fn to_abi(self) -> Segment {
        Segment {
            base: self.base,
            limit: self.limit,
            selector: self.selector,
            type_: self.typ,
            present: u8::from(self.present),
            dpl: self.dpl,
            db: u8::from(self.db),
            s: u8::from(self.s),
            l: u8::from(self.l),
            g: u8::from(self.g),
            avl: u8::from(self.avl),
            unusable: u8::from(self.unusable),
            padding: 0,
        }
    }
}

/// A descriptor-table register (GDTR or IDTR), SDM vol. 3, 2.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DtReg {
    /// Linear base address.
    pub base: u64,
    /// Limit in bytes.
    pub limit: u16,
}

/// The execution mode (SDM vol. 3, 2.2 and Figure 2-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// CR0.PE = 0.
    Real,
    /// Virtual-8086 mode (RFLAGS.VM = 1 in protected mode).
    V86,
    /// Protected mode, 16-bit code segment.
    Protected16,
    /// Protected mode, 32-bit code segment.
    Protected32,
    /// IA-32e compatibility mode, 16-bit code segment.
    Compat16,
    /// IA-32e compatibility mode, 32-bit code segment.
    Compat32,
    /// 64-bit mode (EFER.LMA = 1, CS.L = 1).
    Long64,
}

impl Mode {
    /// Code bitness (default operand/address size): 16, 32 or 64.
    pub fn bitness(self) -> u32 {
        match self {
            Mode::Real | Mode::V86 | Mode::Protected16 | Mode::Compat16 => 16,
            Mode::Protected32 | Mode::Compat32 => 32,
            Mode::Long64 => 64,
        }
    }

    /// Whether segmentation is in protected-mode form (descriptors, limits, rights).
    pub fn is_protected(self) -> bool {
        !matches!(self, Mode::Real | Mode::V86)
    }
}

/// MSR numbers the integer ISA needs (SDM vol. 4, Table 2-2).
pub mod msr {
    #![allow(missing_docs)]
    pub const TSC: u32 = 0x10;
    pub const APIC_BASE: u32 = 0x1b;
    pub const SYSENTER_CS: u32 = 0x174;
    pub const SYSENTER_ESP: u32 = 0x175;
    pub const SYSENTER_EIP: u32 = 0x176;
    pub const PAT: u32 = 0x277;
    pub const EFER: u32 = 0xc000_0080;
    pub const STAR: u32 = 0xc000_0081;
    pub const LSTAR: u32 = 0xc000_0082;
    pub const CSTAR: u32 = 0xc000_0083;
    pub const SFMASK: u32 = 0xc000_0084;
    pub const FS_BASE: u32 = 0xc000_0100;
    pub const GS_BASE: u32 = 0xc000_0101;
    pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
    pub const TSC_AUX: u32 = 0xc000_0103;
}

/// The MSR values kept by the emulator (FS/GS base live in the segment caches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Msrs {
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub tsc: u64,
    pub tsc_aux: u64,
    pub pat: u64,
}

impl Default for Msrs {
    /// Power-up values; IA32_PAT resets to 0x0007040600070406 (SDM vol. 3, 13.12.4).
    fn default() -> Self {
        Self {
            star: 0,
            lstar: 0,
            cstar: 0,
            sfmask: 0,
            kernel_gs_base: 0,
            sysenter_cs: 0,
            sysenter_esp: 0,
            sysenter_eip: 0,
            tsc: 0,
            tsc_aux: 0,
            pat: 0x0007_0406_0007_0406,
        }
    }
}

/// An event waiting for delivery at the next instruction boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingEvent {
    /// Vector.
    pub vector: u8,
    /// Error code, when the vector pushes one.
    pub error_code: Option<u32>,
}

/// The full architectural state of one logical processor as the emulator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    /// GPRs in encoding order (see [`reg`]).
    pub gpr: [u64; 16],
    /// Instruction pointer.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// ES, CS, SS, DS, FS, GS (indexed by [`SegReg`]).
    pub seg: [Seg; 6],
    /// LDTR.
    pub ldtr: Seg,
    /// Task register.
    pub tr: Seg,
    /// GDTR.
    pub gdtr: DtReg,
    /// IDTR.
    pub idtr: DtReg,
    /// CR0.
    pub cr0: u64,
    /// CR2 (page-fault linear address).
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8 (task-priority register).
    pub cr8: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// IA32_APIC_BASE (kept, not interpreted).
    pub apic_base: u64,
    /// DR0-DR3, DR6, DR7 at indices 0-3, 6, 7.
    pub dr: [u64; 8],
    /// Other MSRs.
    pub msrs: Msrs,
    /// XCR0.
    pub xcr0: u64,
    /// Interrupt shadow after STI (SDM vol. 3, 6.8.3; KVM bit 2).
    pub sti_shadow: bool,
    /// Interrupt shadow after MOV SS / POP SS (SDM vol. 3, 6.8.3; KVM bit 1).
    pub ss_shadow: bool,
    /// In the HLT state.
    pub halted: bool,
    /// An exception to deliver before the next instruction.
    pub pending_exception: Option<PendingEvent>,
    /// An external interrupt to deliver when RFLAGS.IF = 1 and no shadow.
    pub pending_interrupt: Option<u8>,
    /// NMI pending.
    pub nmi_pending: bool,
    /// NMIs are blocked: one was delivered and no IRET has run since (SDM
    /// vol. 3, 6.7.1 "Handling Multiple NMIs").
    pub nmi_blocked: bool,
    /// MAXPHYADDR for reserved-bit checks.
    pub maxphyaddr: u8,
    /// A20M# asserted (the PC's "A20 gate" closed): physical-address bit 20
    /// reads as 0, so real-mode addresses wrap at 1 MiB as on an 8086
    /// (SDM vol. 3, 21.1.1 "Address Translation in Real-Address Mode";
    /// 8.7.13.4 "A20M# pin"). Off (the gate open) by default.
    pub a20_masked: bool,
}

/// RFLAGS bit 1 (reserved, always 1).
const RFLAGS_FIXED: u64 = 2;

impl Default for Cpu {
    /// The state after RESET, except that CS is 0 / base 0 (SDM vol. 3, 10.1.1 Table 10-1).
    fn default() -> Self {
        let data = Seg::real(0, false);
        let mut seg = [data; 6];
        seg[SegReg::Cs as usize] = Seg::real(0, true);
        Self {
            gpr: [0; 16],
            rip: 0,
            rflags: RFLAGS_FIXED,
            seg,
            ldtr: Seg {
                typ: 2,
                present: true,
                limit: 0xffff,
                ..Seg::default()
            },
            tr: Seg {
                typ: 3,
                present: true,
                limit: 0xffff,
                ..Seg::default()
            },
            gdtr: DtReg {
                base: 0,
                limit: 0xffff,
            },
            idtr: DtReg {
                base: 0,
                limit: 0xffff,
            },
            cr0: 0x6000_0010,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            apic_base: 0xfee0_0900,
            dr: [0, 0, 0, 0, 0, 0, 0xffff_0ff0, 0x400],
            msrs: Msrs::default(),
            xcr0: 1,
            sti_shadow: false,
            ss_shadow: false,
            halted: false,
            pending_exception: None,
            pending_interrupt: None,
            nmi_pending: false,
            nmi_blocked: false,
            maxphyaddr: 52,
            a20_masked: false,
        }
    }
}

/// CR0.PE.
pub const CR0_PE: u64 = 1;
/// CR0.AM.
pub const CR0_AM: u64 = 1 << 18;
/// CR4.VME: virtual-8086 mode extensions (SDM vol. 3, 20.3).
pub const CR4_VME: u64 = 1;
/// CR4.PVI: protected-mode virtual interrupts (SDM vol. 3, 20.4).
pub const CR4_PVI: u64 = 1 << 1;
/// EFER.LMA.
pub const EFER_LMA: u64 = 1 << 10;
/// RFLAGS.VM.
pub const RFLAGS_VM: u64 = 1 << 17;

impl Cpu {
    /// The current execution mode.
    #[inline]
    pub fn mode(&self) -> Mode {
        if self.cr0 & CR0_PE == 0 {
            return Mode::Real;
        }
        let cs = &self.seg[SegReg::Cs as usize];
        if self.efer & EFER_LMA != 0 {
            if cs.l {
                Mode::Long64
            } else if cs.db {
                Mode::Compat32
            } else {
                Mode::Compat16
            }
        } else if self.rflags & RFLAGS_VM != 0 {
            Mode::V86
        } else if cs.db {
            Mode::Protected32
        } else {
            Mode::Protected16
        }
    }

    /// Current privilege level: CS.RPL in protected mode (SDM vol. 3, 5.5),
    /// 0 in real mode, 3 in virtual-8086 mode. We use SS.DPL, which equals
    /// CPL in every state reached architecturally and is what VMX saves.
    #[inline]
    pub fn cpl(&self) -> u8 {
        match self.mode() {
            Mode::Real => 0,
            Mode::V86 => 3,
            _ => self.seg[SegReg::Ss as usize].dpl,
        }
    }

    /// Default address size in bytes for the current mode (2, 4, 8).
    pub fn address_size(&self) -> u8 {
        (self.mode().bitness() / 8) as u8
    }

    /// Default operand size in bytes (2 or 4; 64-bit mode defaults to 4).
    pub fn operand_size(&self) -> u8 {
        if self.mode().bitness() == 16 {
            2
        } else {
            4
        }
    }

    /// Segment register `s`.
    #[inline]
    pub fn seg(&self, s: SegReg) -> &Seg {
        &self.seg[s as usize]
    }

    /// The paging context for the MMU.
    #[inline]
    pub fn paging(&self) -> PagingContext {
        PagingContext {
            cr0: self.cr0,
            cr3: self.cr3,
            cr4: self.cr4,
            efer: self.efer,
            rflags_ac: self.rflags & (1 << 18) != 0,
            pkru: 0,
            maxphyaddr: self.maxphyaddr,
        }
    }

    /// Builds a `Cpu` from the ABI state. MSRs not listed stay at reset values;
    /// KVM's shadow bits become the STI / MOV SS shadows.
    pub fn from_state(s: &CpuState) -> Self {
        let r = &s.regs;
        let sr = &s.sregs;
        let mut cpu = Cpu {
            gpr: [
                r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11,
                r.r12, r.r13, r.r14, r.r15,
            ],
            rip: r.rip,
            rflags: r.rflags | RFLAGS_FIXED,
            seg: [
                Seg::from_abi(&sr.es),
                Seg::from_abi(&sr.cs),
                Seg::from_abi(&sr.ss),
                Seg::from_abi(&sr.ds),
                Seg::from_abi(&sr.fs),
                Seg::from_abi(&sr.gs),
            ],
            ldtr: Seg::from_abi(&sr.ldt),
            tr: Seg::from_abi(&sr.tr),
            gdtr: DtReg {
                base: sr.gdt.base,
                limit: sr.gdt.limit,
            },
            idtr: DtReg {
                base: sr.idt.base,
                limit: sr.idt.limit,
            },
            cr0: sr.cr0,
            cr2: sr.cr2,
            cr3: sr.cr3,
            cr4: sr.cr4,
            cr8: sr.cr8,
            efer: sr.efer,
            apic_base: sr.apic_base,
            ..Cpu::default()
        };
        for m in s.msrs.iter() {
            cpu.set_msr_raw(m.index, m.data);
        }
        cpu.apply_events(&s.events);
        let first_set = sr
            .interrupt_bitmap
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| (i * 64) as u32 + w.trailing_zeros());
        if cpu.pending_interrupt.is_none() {
            cpu.pending_interrupt = first_set.map(|v| v as u8);
        }
        cpu
    }

    /// Replaces the general registers, RIP and RFLAGS (nothing else).
    pub fn apply_regs(&mut self, r: &hyperplug_plugin_api::state::Regs) {
        self.gpr = [
            r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi, r.r8, r.r9, r.r10, r.r11,
            r.r12, r.r13, r.r14, r.r15,
        ];
        self.rip = r.rip;
        self.rflags = r.rflags | RFLAGS_FIXED;
    }

    /// Replaces the pending and injected events and the interrupt shadows
    /// (`kvm_vcpu_events`); a #PF payload becomes CR2 now, as its delivery
    /// is the next thing the engine does.
    pub fn apply_events(&mut self, ev: &hyperplug_plugin_api::state::VcpuEvents) {
        let cpu = self;
        cpu.pending_exception = None;
        cpu.pending_interrupt = None;
        cpu.ss_shadow = ev.interrupt.shadow & 1 != 0;
        cpu.sti_shadow = ev.interrupt.shadow & 2 != 0;
        if ev.exception.pending != 0 || ev.exception.injected != 0 {
            cpu.pending_exception = Some(PendingEvent {
                vector: ev.exception.nr,
                error_code: (ev.exception.has_error_code != 0).then_some(ev.exception.error_code),
            });
            // A #PF payload is the CR2 its delivery establishes (the
            // `kvm_vcpu_events` convention); delivery is the next thing the
            // engine does, so CR2 can take it now.
            if ev.exception.nr == 14 && ev.exception_has_payload != 0 {
                cpu.cr2 = ev.exception_payload;
            }
        }
        if ev.interrupt.injected != 0 {
            cpu.pending_interrupt = Some(ev.interrupt.nr);
        }
        cpu.nmi_pending = ev.nmi.pending != 0 || ev.nmi.injected != 0;
        cpu.nmi_blocked = ev.nmi.masked != 0;
    }

    /// The MSRs kept by the emulator, as ABI entries.
    pub fn msr_entries(&self) -> Vec<MsrEntry> {
        const LIST: [u32; 11] = [
            msr::STAR,
            msr::LSTAR,
            msr::CSTAR,
            msr::SFMASK,
            msr::KERNEL_GS_BASE,
            msr::SYSENTER_CS,
            msr::SYSENTER_ESP,
            msr::SYSENTER_EIP,
            msr::TSC,
            msr::TSC_AUX,
            msr::PAT,
        ];
        LIST.iter()
            .filter_map(|&index| {
                self.msr_raw(index).map(|data| MsrEntry {
                    index,
                    reserved: 0,
                    data,
                })
            })
            .collect()
    }

    /// Reads a kept MSR without checks (`None` if the emulator does not keep it).
    pub fn msr_raw(&self, index: u32) -> Option<u64> {
        let m = &self.msrs;
        Some(match index {
            msr::STAR => m.star,
            msr::LSTAR => m.lstar,
            msr::CSTAR => m.cstar,
            msr::SFMASK => m.sfmask,
            msr::KERNEL_GS_BASE => m.kernel_gs_base,
            msr::SYSENTER_CS => m.sysenter_cs,
            msr::SYSENTER_ESP => m.sysenter_esp,
            msr::SYSENTER_EIP => m.sysenter_eip,
            msr::TSC => m.tsc,
            msr::TSC_AUX => m.tsc_aux,
            msr::PAT => m.pat,
            msr::EFER => self.efer,
            msr::APIC_BASE => self.apic_base,
            msr::FS_BASE => self.seg[SegReg::Fs as usize].base,
            msr::GS_BASE => self.seg[SegReg::Gs as usize].base,
            _ => return None,
        })
    }

    /// Writes a kept MSR without checks; returns whether the emulator keeps it.
    pub fn set_msr_raw(&mut self, index: u32, v: u64) -> bool {
        let m = &mut self.msrs;
        match index {
            msr::STAR => m.star = v,
            msr::LSTAR => m.lstar = v,
            msr::CSTAR => m.cstar = v,
            msr::SFMASK => m.sfmask = v,
            msr::KERNEL_GS_BASE => m.kernel_gs_base = v,
            msr::SYSENTER_CS => m.sysenter_cs = v,
            msr::SYSENTER_ESP => m.sysenter_esp = v,
            msr::SYSENTER_EIP => m.sysenter_eip = v,
            msr::TSC => m.tsc = v,
            msr::TSC_AUX => m.tsc_aux = v,
            msr::PAT => m.pat = v,
            msr::EFER => self.efer = v,
            msr::APIC_BASE => self.apic_base = v,
            msr::FS_BASE => self.seg[SegReg::Fs as usize].base = v,
            msr::GS_BASE => self.seg[SegReg::Gs as usize].base = v,
            _ => return false,
        }
        true
    }

    /// Converts to the ABI state (FPU and XSAVE areas at their defaults).
    pub fn to_state(&self) -> CpuState {
        let g = &self.gpr;
        let regs = Regs {
            rax: g[0],
            rcx: g[1],
            rdx: g[2],
            rbx: g[3],
            rsp: g[4],
            rbp: g[5],
            rsi: g[6],
            rdi: g[7],
            r8: g[8],
            r9: g[9],
            r10: g[10],
            r11: g[11],
            r12: g[12],
            r13: g[13],
            r14: g[14],
            r15: g[15],
            rip: self.rip,
            rflags: self.rflags,
        };
        let dt = |d: DtReg| DTable {
            base: d.base,
            limit: d.limit,
            padding: [0; 3],
        };
        let sregs = Sregs {
            es: self.seg[0].to_abi(),
            cs: self.seg[1].to_abi(),
            ss: self.seg[2].to_abi(),
            ds: self.seg[3].to_abi(),
            fs: self.seg[4].to_abi(),
            gs: self.seg[5].to_abi(),
            tr: self.tr.to_abi(),
            ldt: self.ldtr.to_abi(),
            gdt: dt(self.gdtr),
            idt: dt(self.idtr),
            cr0: self.cr0,
            cr2: self.cr2,
            cr3: self.cr3,
            cr4: self.cr4,
            cr8: self.cr8,
            efer: self.efer,
            apic_base: self.apic_base,
            interrupt_bitmap: [0; 4],
        };
        let mut st = CpuState {
            regs,
            sregs,
            msrs: self.msr_entries().into(),
            ..CpuState::default()
        };
        let ev = &mut st.events;
        ev.interrupt.shadow = u8::from(self.ss_shadow) | (u8::from(self.sti_shadow) << 1);
        if let Some(p) = self.pending_exception {
            ev.exception.pending = 1;
            ev.exception.nr = p.vector;
            ev.exception.has_error_code = u8::from(p.error_code.is_some());
            ev.exception.error_code = p.error_code.unwrap_or(0);
        }
        if let Some(v) = self.pending_interrupt {
            ev.interrupt.injected = 1;
            ev.interrupt.nr = v;
        }
        ev.nmi.pending = u8::from(self.nmi_pending);
        ev.nmi.masked = u8::from(self.nmi_blocked);
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cpu {
        let mut c = Cpu::default();
        for (i, g) in c.gpr.iter_mut().enumerate() {
            *g = 0x1111_1111_1111_1111u64.wrapping_mul(i as u64 + 1);
        }
        c.rip = 0xffff_8000_0000_1234;
        c.rflags = 0x246;
        c.seg[1] = Seg {
            selector: 8,
            base: 0,
            limit: 0xffff_ffff,
            typ: 0xb,
            s: true,
            dpl: 0,
            present: true,
            avl: true,
            l: true,
            db: false,
            g: true,
            unusable: false,
        };
        c.seg[4].base = 0x7fff_0000;
        c.seg[5].unusable = true;
        c.cr0 = 0x8000_0011;
        c.cr3 = 0x1000;
        c.cr4 = 0x20;
        c.efer = 0x500;
        c.cr2 = 0xdead;
        c.gdtr = DtReg {
            base: 0x5000,
            limit: 0x27,
        };
        c.msrs.lstar = 0xffff_ffff_8100_0000;
        c.msrs.tsc_aux = 7;
        c.sti_shadow = true;
        c.pending_exception = Some(PendingEvent {
            vector: 14,
            error_code: Some(2),
        });
        c.pending_interrupt = Some(0x30);
        c
    }

    #[test]
    fn state_round_trip() {
        let c = sample();
        let back = Cpu::from_state(&c.to_state());
        assert_eq!(back, c);
    }

    #[test]
    fn modes() {
        let mut c = Cpu::default();
        assert_eq!(c.mode(), Mode::Real);
        c.cr0 |= CR0_PE;
        assert_eq!(c.mode(), Mode::Protected16);
        c.seg[1].db = true;
        assert_eq!(c.mode(), Mode::Protected32);
        c.rflags |= RFLAGS_VM;
        assert_eq!(c.mode(), Mode::V86);
        assert_eq!(c.cpl(), 3);
        c.rflags &= !RFLAGS_VM;
        c.efer |= EFER_LMA;
        assert_eq!(c.mode(), Mode::Compat32);
        c.seg[1].l = true;
        c.seg[1].db = false;
        assert_eq!(c.mode(), Mode::Long64);
        assert_eq!(c.mode().bitness(), 64);
    }
}
