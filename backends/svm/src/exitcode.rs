//! #VMEXIT codes (AMD APM vol. 2, appendix C, Table C-1 "SVM Intercept Codes").

/// MOV from CR0 (CRn read = 0x000 + n).
pub const VMEXIT_CR0_READ: u64 = 0x000;
/// MOV from CR3.
pub const VMEXIT_CR3_READ: u64 = 0x003;
/// MOV from CR4.
pub const VMEXIT_CR4_READ: u64 = 0x004;
/// MOV from CR8.
pub const VMEXIT_CR8_READ: u64 = 0x008;
/// Write of CR0 (CRn write = 0x010 + n).
pub const VMEXIT_CR0_WRITE: u64 = 0x010;
/// Write of CR3.
pub const VMEXIT_CR3_WRITE: u64 = 0x013;
/// Write of CR4.
pub const VMEXIT_CR4_WRITE: u64 = 0x014;
/// Write of CR8.
pub const VMEXIT_CR8_WRITE: u64 = 0x018;
/// MOV from DR0 (DRn read = 0x020 + n).
pub const VMEXIT_DR0_READ: u64 = 0x020;
/// MOV to DR0 (DRn write = 0x030 + n).
pub const VMEXIT_DR0_WRITE: u64 = 0x030;
/// Exception vector 0 (vector n = 0x040 + n, up to 0x05F).
pub const VMEXIT_EXCP_BASE: u64 = 0x040;
/// #DB.
pub const VMEXIT_EXCP1: u64 = 0x041;
/// #BP.
pub const VMEXIT_EXCP3: u64 = 0x043;
/// #UD.
pub const VMEXIT_EXCP6: u64 = 0x046;
/// #GP.
pub const VMEXIT_EXCP13: u64 = 0x04D;
/// #PF.
pub const VMEXIT_EXCP14: u64 = 0x04E;
/// Physical INTR.
pub const VMEXIT_INTR: u64 = 0x060;
/// Physical NMI.
pub const VMEXIT_NMI: u64 = 0x061;
/// Physical SMI.
pub const VMEXIT_SMI: u64 = 0x062;
/// Physical INIT.
pub const VMEXIT_INIT: u64 = 0x063;
/// Virtual INTR.
pub const VMEXIT_VINTR: u64 = 0x064;
/// Write of CR0 that changed bits other than CR0.TS or CR0.MP.
pub const VMEXIT_CR0_SEL_WRITE: u64 = 0x065;
/// SIDT.
pub const VMEXIT_IDTR_READ: u64 = 0x066;
/// SGDT.
pub const VMEXIT_GDTR_READ: u64 = 0x067;
/// SLDT.
pub const VMEXIT_LDTR_READ: u64 = 0x068;
/// STR.
pub const VMEXIT_TR_READ: u64 = 0x069;
/// LIDT.
pub const VMEXIT_IDTR_WRITE: u64 = 0x06A;
/// LGDT.
pub const VMEXIT_GDTR_WRITE: u64 = 0x06B;
/// LLDT.
pub const VMEXIT_LDTR_WRITE: u64 = 0x06C;
/// LTR.
pub const VMEXIT_TR_WRITE: u64 = 0x06D;
/// RDTSC.
pub const VMEXIT_RDTSC: u64 = 0x06E;
/// RDPMC.
pub const VMEXIT_RDPMC: u64 = 0x06F;
/// PUSHF.
pub const VMEXIT_PUSHF: u64 = 0x070;
/// POPF.
pub const VMEXIT_POPF: u64 = 0x071;
/// CPUID.
pub const VMEXIT_CPUID: u64 = 0x072;
/// RSM.
pub const VMEXIT_RSM: u64 = 0x073;
/// IRET.
pub const VMEXIT_IRET: u64 = 0x074;
/// Software interrupt (INTn).
pub const VMEXIT_SWINT: u64 = 0x075;
/// INVD.
pub const VMEXIT_INVD: u64 = 0x076;
/// PAUSE.
pub const VMEXIT_PAUSE: u64 = 0x077;
/// HLT.
pub const VMEXIT_HLT: u64 = 0x078;
/// INVLPG.
pub const VMEXIT_INVLPG: u64 = 0x079;
/// INVLPGA.
pub const VMEXIT_INVLPGA: u64 = 0x07A;
/// IN/OUT/INS/OUTS.
pub const VMEXIT_IOIO: u64 = 0x07B;
/// RDMSR/WRMSR.
pub const VMEXIT_MSR: u64 = 0x07C;
/// Task switch.
pub const VMEXIT_TASK_SWITCH: u64 = 0x07D;
/// FP error freeze.
pub const VMEXIT_FERR_FREEZE: u64 = 0x07E;
/// Shutdown (triple fault).
pub const VMEXIT_SHUTDOWN: u64 = 0x07F;
/// VMRUN.
pub const VMEXIT_VMRUN: u64 = 0x080;
/// VMMCALL.
pub const VMEXIT_VMMCALL: u64 = 0x081;
/// VMLOAD.
pub const VMEXIT_VMLOAD: u64 = 0x082;
/// VMSAVE.
pub const VMEXIT_VMSAVE: u64 = 0x083;
/// STGI.
pub const VMEXIT_STGI: u64 = 0x084;
/// CLGI.
pub const VMEXIT_CLGI: u64 = 0x085;
/// SKINIT.
pub const VMEXIT_SKINIT: u64 = 0x086;
/// RDTSCP.
pub const VMEXIT_RDTSCP: u64 = 0x087;
/// ICEBP.
pub const VMEXIT_ICEBP: u64 = 0x088;
/// WBINVD / WBNOINVD.
pub const VMEXIT_WBINVD: u64 = 0x089;
/// MONITOR / MONITORX.
pub const VMEXIT_MONITOR: u64 = 0x08A;
/// MWAIT / MWAITX (unconditional).
pub const VMEXIT_MWAIT: u64 = 0x08B;
/// MWAIT / MWAITX with the monitor armed.
pub const VMEXIT_MWAIT_CONDITIONAL: u64 = 0x08C;
/// XSETBV.
pub const VMEXIT_XSETBV: u64 = 0x08D;
/// RDPRU.
pub const VMEXIT_RDPRU: u64 = 0x08E;
/// Trap after a write of EFER.
pub const VMEXIT_EFER_WRITE_TRAP: u64 = 0x08F;
/// Trap after a write of CR0 (CRn write trap = 0x090 + n, up to 0x09F).
pub const VMEXIT_CR0_WRITE_TRAP: u64 = 0x090;
/// INVLPGB.
pub const VMEXIT_INVLPGB: u64 = 0x0A0;
/// Illegally specified INVLPGB.
pub const VMEXIT_INVLPGB_ILLEGAL: u64 = 0x0A1;
/// INVPCID.
pub const VMEXIT_INVPCID: u64 = 0x0A2;
/// MCOMMIT.
pub const VMEXIT_MCOMMIT: u64 = 0x0A3;
/// TLBSYNC.
pub const VMEXIT_TLBSYNC: u64 = 0x0A4;
/// Nested page fault.
pub const VMEXIT_NPF: u64 = 0x400;
/// AVIC: incomplete IPI delivery.
pub const VMEXIT_AVIC_INCOMPLETE_IPI: u64 = 0x401;
/// AVIC: access to an unaccelerated APIC register.
pub const VMEXIT_AVIC_NOACCEL: u64 = 0x402;
/// VMGEXIT (SEV-ES).
pub const VMEXIT_VMGEXIT: u64 = 0x403;
/// Invalid guest state in the VMCB (-1).
pub const VMEXIT_INVALID: u64 = u64::MAX;
/// BUSY bit set in the VMSA (-2).
pub const VMEXIT_BUSY: u64 = u64::MAX - 1;

/// Fixed-code names (codes with a per-register or per-vector series apart).
const NAMES: &[(u64, &str)] = &[
    (VMEXIT_INTR, "VMEXIT_INTR"),
    (VMEXIT_NMI, "VMEXIT_NMI"),
    (VMEXIT_SMI, "VMEXIT_SMI"),
    (VMEXIT_INIT, "VMEXIT_INIT"),
    (VMEXIT_VINTR, "VMEXIT_VINTR"),
    (VMEXIT_CR0_SEL_WRITE, "VMEXIT_CR0_SEL_WRITE"),
    (VMEXIT_IDTR_READ, "VMEXIT_IDTR_READ"),
    (VMEXIT_GDTR_READ, "VMEXIT_GDTR_READ"),
    (VMEXIT_LDTR_READ, "VMEXIT_LDTR_READ"),
    (VMEXIT_TR_READ, "VMEXIT_TR_READ"),
    (VMEXIT_IDTR_WRITE, "VMEXIT_IDTR_WRITE"),
    (VMEXIT_GDTR_WRITE, "VMEXIT_GDTR_WRITE"),
    (VMEXIT_LDTR_WRITE, "VMEXIT_LDTR_WRITE"),
    (VMEXIT_TR_WRITE, "VMEXIT_TR_WRITE"),
    (VMEXIT_RDTSC, "VMEXIT_RDTSC"),
    (VMEXIT_RDPMC, "VMEXIT_RDPMC"),
    (VMEXIT_PUSHF, "VMEXIT_PUSHF"),
    (VMEXIT_POPF, "VMEXIT_POPF"),
    (VMEXIT_CPUID, "VMEXIT_CPUID"),
    (VMEXIT_RSM, "VMEXIT_RSM"),
    (VMEXIT_IRET, "VMEXIT_IRET"),
    (VMEXIT_SWINT, "VMEXIT_SWINT"),
    (VMEXIT_INVD, "VMEXIT_INVD"),
    (VMEXIT_PAUSE, "VMEXIT_PAUSE"),
    (VMEXIT_HLT, "VMEXIT_HLT"),
    (VMEXIT_INVLPG, "VMEXIT_INVLPG"),
    (VMEXIT_INVLPGA, "VMEXIT_INVLPGA"),
    (VMEXIT_IOIO, "VMEXIT_IOIO"),
    (VMEXIT_MSR, "VMEXIT_MSR"),
    (VMEXIT_TASK_SWITCH, "VMEXIT_TASK_SWITCH"),
    (VMEXIT_FERR_FREEZE, "VMEXIT_FERR_FREEZE"),
    (VMEXIT_SHUTDOWN, "VMEXIT_SHUTDOWN"),
    (VMEXIT_VMRUN, "VMEXIT_VMRUN"),
    (VMEXIT_VMMCALL, "VMEXIT_VMMCALL"),
    (VMEXIT_VMLOAD, "VMEXIT_VMLOAD"),
    (VMEXIT_VMSAVE, "VMEXIT_VMSAVE"),
    (VMEXIT_STGI, "VMEXIT_STGI"),
    (VMEXIT_CLGI, "VMEXIT_CLGI"),
    (VMEXIT_SKINIT, "VMEXIT_SKINIT"),
    (VMEXIT_RDTSCP, "VMEXIT_RDTSCP"),
    (VMEXIT_ICEBP, "VMEXIT_ICEBP"),
    (VMEXIT_WBINVD, "VMEXIT_WBINVD"),
    (VMEXIT_MONITOR, "VMEXIT_MONITOR"),
    (VMEXIT_MWAIT, "VMEXIT_MWAIT"),
    (VMEXIT_MWAIT_CONDITIONAL, "VMEXIT_MWAIT_CONDITIONAL"),
    (VMEXIT_XSETBV, "VMEXIT_XSETBV"),
    (VMEXIT_RDPRU, "VMEXIT_RDPRU"),
    (VMEXIT_EFER_WRITE_TRAP, "VMEXIT_EFER_WRITE_TRAP"),
    (VMEXIT_INVLPGB, "VMEXIT_INVLPGB"),
    (VMEXIT_INVLPGB_ILLEGAL, "VMEXIT_INVLPGB_ILLEGAL"),
    (VMEXIT_INVPCID, "VMEXIT_INVPCID"),
    (VMEXIT_MCOMMIT, "VMEXIT_MCOMMIT"),
    (VMEXIT_TLBSYNC, "VMEXIT_TLBSYNC"),
    (VMEXIT_NPF, "VMEXIT_NPF"),
    (VMEXIT_AVIC_INCOMPLETE_IPI, "VMEXIT_AVIC_INCOMPLETE_IPI"),
    (VMEXIT_AVIC_NOACCEL, "VMEXIT_AVIC_NOACCEL"),
    (VMEXIT_VMGEXIT, "VMEXIT_VMGEXIT"),
    (VMEXIT_INVALID, "VMEXIT_INVALID"),
    (VMEXIT_BUSY, "VMEXIT_BUSY"),
];

/// The APM's name of an exit code ("VMEXIT_CR3_WRITE", "VMEXIT_EXCP14",
/// "VMEXIT_IOIO", ...); unknown codes give "VMEXIT_UNKNOWN(0x...)".
pub fn name(code: u64) -> String {
    match code {
        0x000..=0x00F => format!("VMEXIT_CR{}_READ", code),
        0x010..=0x01F => format!("VMEXIT_CR{}_WRITE", code - 0x010),
        0x020..=0x02F => format!("VMEXIT_DR{}_READ", code - 0x020),
        0x030..=0x03F => format!("VMEXIT_DR{}_WRITE", code - 0x030),
        0x040..=0x05F => format!("VMEXIT_EXCP{}", code - VMEXIT_EXCP_BASE),
        0x090..=0x09F => format!("VMEXIT_CR{}_WRITE_TRAP", code - VMEXIT_CR0_WRITE_TRAP),
        _ => NAMES.iter().find(|(c, _)| *c == code).map_or_else(
            || format!("VMEXIT_UNKNOWN({code:#x})"),
            |(_, n)| (*n).to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_table_c1() {
        let cases: &[(u64, &str)] = &[
            (0x000, "VMEXIT_CR0_READ"),
            (0x003, "VMEXIT_CR3_READ"),
            (0x00F, "VMEXIT_CR15_READ"),
            (0x013, "VMEXIT_CR3_WRITE"),
            (0x018, "VMEXIT_CR8_WRITE"),
            (0x027, "VMEXIT_DR7_READ"),
            (0x037, "VMEXIT_DR7_WRITE"),
            (0x040, "VMEXIT_EXCP0"),
            (0x04E, "VMEXIT_EXCP14"),
            (0x05F, "VMEXIT_EXCP31"),
            (0x060, "VMEXIT_INTR"),
            (0x064, "VMEXIT_VINTR"),
            (0x065, "VMEXIT_CR0_SEL_WRITE"),
            (0x06D, "VMEXIT_TR_WRITE"),
            (0x06E, "VMEXIT_RDTSC"),
            (0x072, "VMEXIT_CPUID"),
            (0x075, "VMEXIT_SWINT"),
            (0x078, "VMEXIT_HLT"),
            (0x07B, "VMEXIT_IOIO"),
            (0x07C, "VMEXIT_MSR"),
            (0x07F, "VMEXIT_SHUTDOWN"),
            (0x080, "VMEXIT_VMRUN"),
            (0x081, "VMEXIT_VMMCALL"),
            (0x087, "VMEXIT_RDTSCP"),
            (0x08C, "VMEXIT_MWAIT_CONDITIONAL"),
            (0x08D, "VMEXIT_XSETBV"),
            (0x08F, "VMEXIT_EFER_WRITE_TRAP"),
            (0x093, "VMEXIT_CR3_WRITE_TRAP"),
            (0x0A2, "VMEXIT_INVPCID"),
            (0x400, "VMEXIT_NPF"),
            (0x403, "VMEXIT_VMGEXIT"),
            (u64::MAX, "VMEXIT_INVALID"),
            (u64::MAX - 1, "VMEXIT_BUSY"),
            (0x0FF, "VMEXIT_UNKNOWN(0xff)"),
            (0x404, "VMEXIT_UNKNOWN(0x404)"),
        ];
        for &(code, want) in cases {
            assert_eq!(name(code), want, "code {code:#x}");
        }
    }

    #[test]
    fn constants_match_table_c1() {
        let cases: &[(u64, u64)] = &[
            (VMEXIT_VINTR, 0x64),
            (VMEXIT_CPUID, 0x72),
            (VMEXIT_IRET, 0x74),
            (VMEXIT_PAUSE, 0x77),
            (VMEXIT_INVLPGA, 0x7A),
            (VMEXIT_TASK_SWITCH, 0x7D),
            (VMEXIT_FERR_FREEZE, 0x7E),
            (VMEXIT_WBINVD, 0x89),
            (VMEXIT_INVALID, 0xFFFF_FFFF_FFFF_FFFF),
            (VMEXIT_BUSY, 0xFFFF_FFFF_FFFF_FFFE),
        ];
        for &(c, want) in cases {
            assert_eq!(c, want);
        }
    }
}
