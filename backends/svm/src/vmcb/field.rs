//! VMCB field offsets and sizes (AMD APM vol. 2, appendix B: Table B-1
//! "VMCB Layout, Control Area", Table B-2 "VMCB Layout, State Save Area",
//! the save area starting at byte 0x400).

use super::Field;

const fn f(name: &'static str, offset: usize, size: usize) -> Field {
    Field { name, offset, size }
}

// ---- Control area (Table B-1) ----

/// 0x000: bits 15:0 intercept reads of CR0-CR15, bits 31:16 writes.
pub const INTERCEPT_CR: Field = f("INTERCEPT_CR", 0x000, 4);
/// 0x004: bits 15:0 intercept reads of DR0-DR15, bits 31:16 writes.
pub const INTERCEPT_DR: Field = f("INTERCEPT_DR", 0x004, 4);
/// 0x008: bit n intercepts exception vector n.
pub const INTERCEPT_EXCEPTIONS: Field = f("INTERCEPT_EXCEPTIONS", 0x008, 4);
/// 0x00C: INTR ... SHUTDOWN intercepts (see `intercept::MISC1_*`).
pub const INTERCEPT_MISC1: Field = f("INTERCEPT_MISC1", 0x00C, 4);
/// 0x010: VMRUN ... EFER/CR write-trap intercepts (see `intercept::MISC2_*`).
pub const INTERCEPT_MISC2: Field = f("INTERCEPT_MISC2", 0x010, 4);
/// 0x014: INVLPGB, INVPCID, MCOMMIT, TLBSYNC intercepts (see `intercept::MISC3_*`).
pub const INTERCEPT_MISC3: Field = f("INTERCEPT_MISC3", 0x014, 4);
/// 0x03C: PAUSE filter threshold (bits 15:0).
pub const PAUSE_FILTER_THRESHOLD: Field = f("PAUSE_FILTER_THRESHOLD", 0x03C, 2);
/// 0x03E: PAUSE filter count (bits 15:0).
pub const PAUSE_FILTER_COUNT: Field = f("PAUSE_FILTER_COUNT", 0x03E, 2);
/// 0x040: physical base of the IOPM (bits 11:0 ignored).
pub const IOPM_BASE_PA: Field = f("IOPM_BASE_PA", 0x040, 8);
/// 0x048: physical base of the MSRPM (bits 11:0 ignored).
pub const MSRPM_BASE_PA: Field = f("MSRPM_BASE_PA", 0x048, 8);
/// 0x050: TSC offset added to the guest's TSC reads.
pub const TSC_OFFSET: Field = f("TSC_OFFSET", 0x050, 8);
/// 0x058: guest ASID (bits 31:0).
pub const GUEST_ASID: Field = f("GUEST_ASID", 0x058, 4);
/// 0x05C: TLB_CONTROL (bits 39:32 of the quadword at 0x058).
pub const TLB_CONTROL: Field = f("TLB_CONTROL", 0x05C, 1);
/// 0x060: virtual interrupt control (see [`vintr`]).
pub const VINTR: Field = f("VINTR", 0x060, 8);
/// 0x068: bit 0 INTERRUPT_SHADOW, bit 1 GUEST_INTERRUPT_MASK (see [`shadow`]).
pub const INTERRUPT_SHADOW: Field = f("INTERRUPT_SHADOW", 0x068, 8);
/// 0x070: EXITCODE (appendix C, Table C-1).
pub const EXITCODE: Field = f("EXITCODE", 0x070, 8);
/// 0x078: EXITINFO1.
pub const EXITINFO1: Field = f("EXITINFO1", 0x078, 8);
/// 0x080: EXITINFO2.
pub const EXITINFO2: Field = f("EXITINFO2", 0x080, 8);
/// 0x088: EXITINTINFO (event-injection format, 15.7.2).
pub const EXITINTINFO: Field = f("EXITINTINFO", 0x088, 8);
/// 0x090: bit 0 NP_ENABLE, bit 1 SEV, bit 2 SEV-ES (see [`np`]).
pub const NP_ENABLE: Field = f("NP_ENABLE", 0x090, 8);
/// 0x098: AVIC APIC_BAR (bits 51:0).
pub const AVIC_APIC_BAR: Field = f("AVIC_APIC_BAR", 0x098, 8);
/// 0x0A0: guest-physical address of the GHCB (SEV-ES).
pub const GHCB_PA: Field = f("GHCB_PA", 0x0A0, 8);
/// 0x0A8: EVENTINJ (15.20).
pub const EVENTINJ: Field = f("EVENTINJ", 0x0A8, 8);
/// 0x0B0: nested page table CR3 (N_CR3).
pub const N_CR3: Field = f("N_CR3", 0x0B0, 8);
/// 0x0B8: bit 0 LBR_VIRTUALIZATION_ENABLE, bit 1 virtualized VMSAVE/VMLOAD.
pub const LBR_VIRTUALIZATION_ENABLE: Field = f("LBR_VIRTUALIZATION_ENABLE", 0x0B8, 8);
/// 0x0C0: VMCB clean bits (bits 31:0).
pub const VMCB_CLEAN: Field = f("VMCB_CLEAN", 0x0C0, 4);
/// 0x0C8: next sequential instruction pointer (nRIP).
pub const NRIP: Field = f("NRIP", 0x0C8, 8);
/// 0x0D0: number of guest instruction bytes fetched (bits 7:0).
pub const GUEST_INSN_BYTES_COUNT: Field = f("GUEST_INSN_BYTES_COUNT", 0x0D0, 1);
/// 0x0E0: AVIC APIC backing page pointer.
pub const AVIC_APIC_BACKING_PAGE: Field = f("AVIC_APIC_BACKING_PAGE", 0x0E0, 8);
/// 0x0F0: AVIC logical table pointer.
pub const AVIC_LOGICAL_TABLE: Field = f("AVIC_LOGICAL_TABLE", 0x0F0, 8);
/// 0x0F8: AVIC physical table pointer (and max index).
pub const AVIC_PHYSICAL_TABLE: Field = f("AVIC_PHYSICAL_TABLE", 0x0F8, 8);
/// 0x108: VMSA pointer (SEV-ES).
pub const VMSA_PA: Field = f("VMSA_PA", 0x108, 8);

/// Byte offset of the 15 guest instruction bytes (0x0D1-0x0DF, Table B-1).
pub const GUEST_INSN_BYTES_OFFSET: usize = 0x0D1;

// ---- State save area (Table B-2) ----

/// Offset of the state save area.
pub const SAVE_AREA: usize = 0x400;
/// 0x4CB: CPL.
pub const CPL: Field = f("CPL", 0x4CB, 1);
/// 0x4D0: EFER.
pub const EFER: Field = f("EFER", 0x4D0, 8);
/// 0x548: CR4.
pub const CR4: Field = f("CR4", 0x548, 8);
/// 0x550: CR3.
pub const CR3: Field = f("CR3", 0x550, 8);
/// 0x558: CR0.
pub const CR0: Field = f("CR0", 0x558, 8);
/// 0x560: DR7.
pub const DR7: Field = f("DR7", 0x560, 8);
/// 0x568: DR6.
pub const DR6: Field = f("DR6", 0x568, 8);
/// 0x570: RFLAGS.
pub const RFLAGS: Field = f("RFLAGS", 0x570, 8);
/// 0x578: RIP.
pub const RIP: Field = f("RIP", 0x578, 8);
/// 0x5D8: RSP.
pub const RSP: Field = f("RSP", 0x5D8, 8);
/// 0x5E0: S_CET.
pub const S_CET: Field = f("S_CET", 0x5E0, 8);
/// 0x5E8: SSP.
pub const SSP: Field = f("SSP", 0x5E8, 8);
/// 0x5F0: ISST_ADDR.
pub const ISST_ADDR: Field = f("ISST_ADDR", 0x5F0, 8);
/// 0x5F8: RAX.
pub const RAX: Field = f("RAX", 0x5F8, 8);
/// 0x600: STAR.
pub const STAR: Field = f("STAR", 0x600, 8);
/// 0x608: LSTAR.
pub const LSTAR: Field = f("LSTAR", 0x608, 8);
/// 0x610: CSTAR.
pub const CSTAR: Field = f("CSTAR", 0x610, 8);
/// 0x618: SFMASK.
pub const SFMASK: Field = f("SFMASK", 0x618, 8);
/// 0x620: KernelGsBase.
pub const KERNEL_GS_BASE: Field = f("KERNEL_GS_BASE", 0x620, 8);
/// 0x628: SYSENTER_CS.
pub const SYSENTER_CS: Field = f("SYSENTER_CS", 0x628, 8);
/// 0x630: SYSENTER_ESP.
pub const SYSENTER_ESP: Field = f("SYSENTER_ESP", 0x630, 8);
/// 0x638: SYSENTER_EIP.
pub const SYSENTER_EIP: Field = f("SYSENTER_EIP", 0x638, 8);
/// 0x640: CR2.
pub const CR2: Field = f("CR2", 0x640, 8);
/// 0x668: G_PAT (guest PAT, used with nested paging).
pub const G_PAT: Field = f("G_PAT", 0x668, 8);
/// 0x670: DBGCTL.
pub const DBGCTL: Field = f("DBGCTL", 0x670, 8);
/// 0x678: BR_FROM.
pub const BR_FROM: Field = f("BR_FROM", 0x678, 8);
/// 0x680: BR_TO.
pub const BR_TO: Field = f("BR_TO", 0x680, 8);
/// 0x688: LASTEXCPFROM.
pub const LASTEXCPFROM: Field = f("LASTEXCPFROM", 0x688, 8);
/// 0x690: LASTEXCPTO.
pub const LASTEXCPTO: Field = f("LASTEXCPTO", 0x690, 8);

/// Every control-area field, by offset.
pub const CONTROL: &[Field] = &[
    INTERCEPT_CR,
    INTERCEPT_DR,
    INTERCEPT_EXCEPTIONS,
    INTERCEPT_MISC1,
    INTERCEPT_MISC2,
    INTERCEPT_MISC3,
    PAUSE_FILTER_THRESHOLD,
    PAUSE_FILTER_COUNT,
    IOPM_BASE_PA,
    MSRPM_BASE_PA,
    TSC_OFFSET,
    GUEST_ASID,
    TLB_CONTROL,
    VINTR,
    INTERRUPT_SHADOW,
    EXITCODE,
    EXITINFO1,
    EXITINFO2,
    EXITINTINFO,
    NP_ENABLE,
    AVIC_APIC_BAR,
    GHCB_PA,
    EVENTINJ,
    N_CR3,
    LBR_VIRTUALIZATION_ENABLE,
    VMCB_CLEAN,
    NRIP,
    GUEST_INSN_BYTES_COUNT,
    AVIC_APIC_BACKING_PAGE,
    AVIC_LOGICAL_TABLE,
    AVIC_PHYSICAL_TABLE,
    VMSA_PA,
];

/// Every scalar state-save-area field (segments apart), by offset.
pub const SAVE: &[Field] = &[
    CPL,
    EFER,
    CR4,
    CR3,
    CR0,
    DR7,
    DR6,
    RFLAGS,
    RIP,
    RSP,
    S_CET,
    SSP,
    ISST_ADDR,
    RAX,
    STAR,
    LSTAR,
    CSTAR,
    SFMASK,
    KERNEL_GS_BASE,
    SYSENTER_CS,
    SYSENTER_ESP,
    SYSENTER_EIP,
    CR2,
    G_PAT,
    DBGCTL,
    BR_FROM,
    BR_TO,
    LASTEXCPFROM,
    LASTEXCPTO,
];

/// Bits of the [`VINTR`] quadword at 0x060 (Table B-1; APM 15.21.1).
pub mod vintr {
    /// V_TPR, bits 7:0 (bits 3:0 hold the 4-bit virtual TPR).
    pub const V_TPR_MASK: u64 = 0xFF;
    /// V_IRQ, bit 8: a virtual interrupt is pending.
    pub const V_IRQ: u64 = 1 << 8;
    /// V_GIF, bit 9: virtual global interrupt flag.
    pub const V_GIF: u64 = 1 << 9;
    /// V_INTR_PRIO shift (bits 19:16).
    pub const V_INTR_PRIO_SHIFT: u32 = 16;
    /// V_INTR_PRIO mask (bits 19:16).
    pub const V_INTR_PRIO_MASK: u64 = 0xF << V_INTR_PRIO_SHIFT;
    /// V_IGN_TPR, bit 20: the virtual interrupt ignores the TPR.
    pub const V_IGN_TPR: u64 = 1 << 20;
    /// V_INTR_MASKING, bit 24: virtualize EFLAGS.IF masking and TPR.
    pub const V_INTR_MASKING: u64 = 1 << 24;
    /// V_GIF_ENABLE, bit 25.
    pub const V_GIF_ENABLE: u64 = 1 << 25;
    /// AVIC_ENABLE, bit 31.
    pub const AVIC_ENABLE: u64 = 1 << 31;
    /// V_INTR_VECTOR shift (bits 39:32).
    pub const V_INTR_VECTOR_SHIFT: u32 = 32;
    /// V_INTR_VECTOR mask (bits 39:32).
    pub const V_INTR_VECTOR_MASK: u64 = 0xFF << V_INTR_VECTOR_SHIFT;

    /// V_TPR of a VINTR value.
    pub const fn v_tpr(v: u64) -> u8 {
        (v & V_TPR_MASK) as u8
    }
    /// V_INTR_PRIO of a VINTR value.
    pub const fn v_intr_prio(v: u64) -> u8 {
        ((v & V_INTR_PRIO_MASK) >> V_INTR_PRIO_SHIFT) as u8
    }
    /// V_INTR_VECTOR of a VINTR value.
    pub const fn v_intr_vector(v: u64) -> u8 {
        ((v & V_INTR_VECTOR_MASK) >> V_INTR_VECTOR_SHIFT) as u8
    }
    /// `v` with V_TPR replaced.
    pub const fn with_v_tpr(v: u64, tpr: u8) -> u64 {
        (v & !V_TPR_MASK) | tpr as u64
    }
    /// `v` with V_INTR_PRIO replaced (4 bits).
    pub const fn with_v_intr_prio(v: u64, prio: u8) -> u64 {
        (v & !V_INTR_PRIO_MASK) | (((prio & 0xF) as u64) << V_INTR_PRIO_SHIFT)
    }
    /// `v` with V_INTR_VECTOR replaced.
    pub const fn with_v_intr_vector(v: u64, vector: u8) -> u64 {
        (v & !V_INTR_VECTOR_MASK) | ((vector as u64) << V_INTR_VECTOR_SHIFT)
    }
}

/// Bits of the [`INTERRUPT_SHADOW`] quadword at 0x068 (Table B-1).
pub mod shadow {
    /// INTERRUPT_SHADOW, bit 0: the guest is in an interrupt shadow.
    pub const INTERRUPT_SHADOW: u64 = 1 << 0;
    /// GUEST_INTERRUPT_MASK, bit 1: the guest's RFLAGS.IF (written on #VMEXIT).
    pub const GUEST_INTERRUPT_MASK: u64 = 1 << 1;
}

/// Bits of the [`NP_ENABLE`] quadword at 0x090 (Table B-1).
pub mod np {
    /// NP_ENABLE, bit 0: nested paging.
    pub const NP_ENABLE: u64 = 1 << 0;
    /// SEV enable, bit 1.
    pub const SEV_ENABLE: u64 = 1 << 1;
    /// SEV-ES enable, bit 2.
    pub const SEV_ES_ENABLE: u64 = 1 << 2;
}

/// Bits of the [`LBR_VIRTUALIZATION_ENABLE`] quadword at 0x0B8 (Table B-1).
pub mod lbr {
    /// LBR_VIRTUALIZATION_ENABLE, bit 0.
    pub const LBR_VIRTUALIZATION_ENABLE: u64 = 1 << 0;
    /// Virtualized VMSAVE/VMLOAD, bit 1.
    pub const VIRTUAL_VMSAVE_VMLOAD: u64 = 1 << 1;
}
