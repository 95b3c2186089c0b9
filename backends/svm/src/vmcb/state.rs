//! `CpuState` <-> VMCB state save area (AMD APM vol. 2, appendix B,
//! Table B-2; CPL rule and EFER.SVME requirement per 15.5.1).

use super::field;
use super::seg::{SegReg, VmcbSeg};
use super::{Field, Vmcb};
use hyperplug_plugin_api::state::{CpuState, DTable, MsrEntry};

/// EFER.SVME, bit 12 (APM vol. 2, 3.1.7 "Extended Feature Enable Register").
pub const EFER_SVME: u64 = 1 << 12;
/// CR0.PE, bit 0 (APM vol. 2, 3.1.1).
const CR0_PE: u64 = 1;
/// RFLAGS.VM, bit 17 (APM vol. 2, 3.1.6).
const RFLAGS_VM: u64 = 1 << 17;
/// RFLAGS.IF, bit 9 (APM vol. 2, 3.1.6).
const RFLAGS_IF: u64 = 1 << 9;
/// KVM's "interrupt shadow after STI" bit of `InterruptEvent::shadow`.
const SHADOW_STI: u8 = 2;

/// The MSRs the state save area holds, with their MSR numbers (APM vol. 2,
/// appendix A: STAR C000_0081h, LSTAR C000_0082h, CSTAR C000_0083h, SFMASK
/// C000_0084h, KernelGSbase C000_0102h, SYSENTER_CS/ESP/EIP 174h-176h, PAT 277h).
pub const MSR_FIELDS: [(Field, u32); 9] = [
    (field::STAR, 0xC000_0081),
    (field::LSTAR, 0xC000_0082),
    (field::CSTAR, 0xC000_0083),
    (field::SFMASK, 0xC000_0084),
    (field::KERNEL_GS_BASE, 0xC000_0102),
    (field::SYSENTER_CS, 0x174),
    (field::SYSENTER_ESP, 0x175),
    (field::SYSENTER_EIP, 0x176),
    (field::G_PAT, 0x277),
];

fn dtable_seg(d: &DTable) -> VmcbSeg {
    VmcbSeg {
        selector: 0,
        attrib: 0,
        limit: u32::from(d.limit),
        base: d.base,
    }
}

fn seg_dtable(s: VmcbSeg) -> DTable {
    DTable {
        base: s.base,
        limit: (s.limit & 0xFFFF) as u16,
        padding: [0; 3],
    }
}

/// CPL as VMRUN takes it (APM vol. 2, 15.5.1): 0 in real mode, 3 in
/// virtual-8086 mode, else SS.DPL (which must equal the CPL field).
pub fn cpl_of(st: &CpuState) -> u8 {
    if st.sregs.cr0 & CR0_PE == 0 {
        0
    } else if st.regs.rflags & RFLAGS_VM != 0 {
        3
    } else {
        st.sregs.ss.dpl & 3
    }
}

impl Vmcb {
    /// Writes the guest state the VMCB holds from `st`. EFER.SVME is forced
    /// on (VMRUN requires it, APM 15.5.1); CR8 goes to V_TPR; MSRs absent
    /// from `st.msrs` and DR6/DR7 (not in `CpuState`) are left unchanged.
    pub fn save_state(&mut self, st: &CpuState) {
        let sr = &st.sregs;
        let pairs = [
            (SegReg::Es, &sr.es),
            (SegReg::Cs, &sr.cs),
            (SegReg::Ss, &sr.ss),
            (SegReg::Ds, &sr.ds),
            (SegReg::Fs, &sr.fs),
            (SegReg::Gs, &sr.gs),
            (SegReg::Ldtr, &sr.ldt),
            (SegReg::Tr, &sr.tr),
        ];
        for (r, s) in pairs {
            self.set_seg(r, VmcbSeg::from_segment(s));
        }
        self.set_seg(SegReg::Gdtr, dtable_seg(&sr.gdt));
        self.set_seg(SegReg::Idtr, dtable_seg(&sr.idt));
        self.set(field::CPL, u64::from(cpl_of(st)));
        self.set(field::EFER, sr.efer | EFER_SVME);
        self.set(field::CR0, sr.cr0);
        self.set(field::CR2, sr.cr2);
        self.set(field::CR3, sr.cr3);
        self.set(field::CR4, sr.cr4);
        self.set(field::RFLAGS, st.regs.rflags);
        self.set(field::RIP, st.regs.rip);
        self.set(field::RSP, st.regs.rsp);
        self.set(field::RAX, st.regs.rax);
        for (f, index) in MSR_FIELDS {
            if let Some(m) = st.msrs.iter().find(|m| m.index == index) {
                self.set(f, m.data);
            }
        }
        let vintr = self.get(field::VINTR);
        self.set(
            field::VINTR,
            field::vintr::with_v_tpr(vintr, (sr.cr8 & 0xF) as u8),
        );
        let mut sh = self.get(field::INTERRUPT_SHADOW)
            & !(field::shadow::INTERRUPT_SHADOW | field::shadow::GUEST_INTERRUPT_MASK);
        if st.events.interrupt.shadow != 0 {
            sh |= field::shadow::INTERRUPT_SHADOW;
        }
        if st.regs.rflags & RFLAGS_IF != 0 {
            sh |= field::shadow::GUEST_INTERRUPT_MASK;
        }
        self.set(field::INTERRUPT_SHADOW, sh);
    }

    /// Overwrites in `st` what the VMCB holds (segments, CRs, EFER with
    /// `st`'s own SVME bit kept, RFLAGS/RIP/RSP/RAX, CR8 from V_TPR, the
    /// interrupt shadow, the [`MSR_FIELDS`] MSRs); everything else in `st` stays.
    pub fn load_state(&self, st: &mut CpuState) {
        let sr = &mut st.sregs;
        sr.es = self.seg(SegReg::Es).to_segment();
        sr.cs = self.seg(SegReg::Cs).to_segment();
        sr.ss = self.seg(SegReg::Ss).to_segment();
        sr.ds = self.seg(SegReg::Ds).to_segment();
        sr.fs = self.seg(SegReg::Fs).to_segment();
        sr.gs = self.seg(SegReg::Gs).to_segment();
        sr.ldt = self.seg(SegReg::Ldtr).to_segment();
        sr.tr = self.seg(SegReg::Tr).to_segment();
        sr.gdt = seg_dtable(self.seg(SegReg::Gdtr));
        sr.idt = seg_dtable(self.seg(SegReg::Idtr));
        sr.efer = (self.get(field::EFER) & !EFER_SVME) | (sr.efer & EFER_SVME);
        sr.cr0 = self.get(field::CR0);
        sr.cr2 = self.get(field::CR2);
        sr.cr3 = self.get(field::CR3);
        sr.cr4 = self.get(field::CR4);
        sr.cr8 = u64::from(field::vintr::v_tpr(self.get(field::VINTR)) & 0xF);
        st.regs.rflags = self.get(field::RFLAGS);
        st.regs.rip = self.get(field::RIP);
        st.regs.rsp = self.get(field::RSP);
        st.regs.rax = self.get(field::RAX);
        let ev = &mut st.events.interrupt;
        if self.get(field::INTERRUPT_SHADOW) & field::shadow::INTERRUPT_SHADOW == 0 {
            ev.shadow = 0;
        } else if ev.shadow == 0 {
            // SVM keeps one shadow bit; KVM's STI flavour is the closest.
            ev.shadow = SHADOW_STI;
        }
        for (f, index) in MSR_FIELDS {
            let data = self.get(f);
            match st.msrs.iter_mut().find(|m| m.index == index) {
                Some(m) => m.data = data,
                None => st.msrs.push(MsrEntry {
                    index,
                    reserved: 0,
                    data,
                }),
            }
        }
    }
}
