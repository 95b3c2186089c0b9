//! VMCB intercept bits -> EnginePolicy (APM vol. 2, Table B-1).

use hyperplug_backend_svm::intercept::*;
use hyperplug_backend_svm::permmap::{Iopm, Msrpm};
use hyperplug_backend_svm::vmcb::{field, Vmcb};
use hyperplug_plugin_api::engine::{insn, EnginePolicy};

fn pol(v: &Vmcb) -> EnginePolicy {
    policy(v, &Iopm::all_intercepted(), &Msrpm::all_intercepted(), 7)
}

#[test]
fn empty_vmcb_intercepts_nothing() {
    let p = pol(&Vmcb::new());
    assert_eq!(
        p,
        EnginePolicy {
            generation: 7,
            ..EnginePolicy::default()
        }
    );
}

#[test]
fn instruction_bits() {
    // (field, bit, engine insn bit)
    let cases = [
        (field::INTERCEPT_MISC1, MISC1_RDTSC, insn::RDTSC),
        (field::INTERCEPT_MISC1, MISC1_RDPMC, insn::RDPMC),
        (field::INTERCEPT_MISC1, MISC1_CPUID, insn::CPUID),
        (field::INTERCEPT_MISC1, MISC1_IRET, insn::IRET),
        (field::INTERCEPT_MISC1, MISC1_INTN, insn::INTN),
        (field::INTERCEPT_MISC1, MISC1_INVD, insn::INVD),
        (field::INTERCEPT_MISC1, MISC1_PAUSE, insn::PAUSE),
        (field::INTERCEPT_MISC1, MISC1_HLT, insn::HLT),
        (field::INTERCEPT_MISC1, MISC1_INVLPG, insn::INVLPG),
        (field::INTERCEPT_MISC1, MISC1_IDTR_READ, insn::DESC_TABLE),
        (field::INTERCEPT_MISC1, MISC1_GDTR_READ, insn::DESC_TABLE),
        (field::INTERCEPT_MISC1, MISC1_LDTR_READ, insn::DESC_TABLE),
        (field::INTERCEPT_MISC1, MISC1_TR_READ, insn::DESC_TABLE),
        (field::INTERCEPT_MISC1, MISC1_IDTR_WRITE, insn::DESC_TABLE),
        (field::INTERCEPT_MISC1, MISC1_GDTR_WRITE, insn::DESC_TABLE),
        (field::INTERCEPT_MISC1, MISC1_LDTR_WRITE, insn::DESC_TABLE),
        (field::INTERCEPT_MISC1, MISC1_TR_WRITE, insn::DESC_TABLE),
        (field::INTERCEPT_MISC2, MISC2_RDTSCP, insn::RDTSCP),
        (field::INTERCEPT_MISC2, MISC2_WBINVD, insn::WBINVD),
        (field::INTERCEPT_MISC2, MISC2_MONITOR, insn::MONITOR),
        (field::INTERCEPT_MISC2, MISC2_MWAIT, insn::MWAIT),
        (field::INTERCEPT_MISC2, MISC2_MWAIT_CONDITIONAL, insn::MWAIT),
        (field::INTERCEPT_MISC2, MISC2_XSETBV, insn::XSETBV),
        (field::INTERCEPT_MISC3, MISC3_INVPCID, insn::INVPCID),
    ];
    for (f, bit, want) in cases {
        let mut v = Vmcb::new();
        v.set(f, u64::from(bit));
        let p = pol(&v);
        assert_eq!(p.insns, want, "{} {bit:#x}", f.name);
        assert_eq!(
            EnginePolicy { insns: 0, ..p },
            EnginePolicy {
                generation: 7,
                ..EnginePolicy::default()
            }
        );
    }
}

#[test]
fn intercept_bit_numbers_match_table_b1() {
    let cases = [
        (MISC1_INTR, 0),
        (MISC1_VINTR, 4),
        (MISC1_CR0_SEL_WRITE, 5),
        (MISC1_IDTR_READ, 6),
        (MISC1_TR_WRITE, 13),
        (MISC1_RDTSC, 14),
        (MISC1_CPUID, 18),
        (MISC1_INTN, 21),
        (MISC1_HLT, 24),
        (MISC1_IOIO_PROT, 27),
        (MISC1_MSR_PROT, 28),
        (MISC1_SHUTDOWN, 31),
        (MISC2_VMRUN, 0),
        (MISC2_VMMCALL, 1),
        (MISC2_RDTSCP, 7),
        (MISC2_WBINVD, 9),
        (MISC2_MWAIT_CONDITIONAL, 12),
        (MISC2_XSETBV, 13),
        (MISC2_EFER_WRITE_TRAP, 15),
        (MISC3_INVPCID, 2),
    ];
    for (mask, bit) in cases {
        assert_eq!(mask, 1 << bit);
    }
}

#[test]
fn cr_dr_exceptions() {
    let mut v = Vmcb::new();
    v.set(field::INTERCEPT_CR, 0x0119_0008); // read CR3; write CR0, CR3, CR4, CR8
    v.set(field::INTERCEPT_DR, 0x0080_00FF);
    v.set(field::INTERCEPT_EXCEPTIONS, 1 << 14 | 1 << 6);
    let p = pol(&v);
    assert_eq!((p.cr_read, p.cr_write), (0x0008, 0x0119));
    assert_eq!((p.dr_read, p.dr_write), (0xFF, 0x80));
    assert_eq!(p.exceptions, 1 << 14 | 1 << 6);
    let mut v = Vmcb::new();
    v.set(field::INTERCEPT_MISC1, u64::from(MISC1_CR0_SEL_WRITE));
    assert_eq!(pol(&v).cr_write, 1);
}

#[test]
fn io_and_msr_maps() {
    let mut iopm = Iopm::none_intercepted();
    iopm.set(0x3F8, true);
    iopm.set(0x80, true);
    let mut msrpm = Msrpm::none_intercepted();
    msrpm.set_read(0x1B, true);
    msrpm.set_write(0xC000_0080, true);
    let mut v = Vmcb::new();
    let p = policy(&v, &iopm, &msrpm, 1);
    assert!(
        p.io_ports.is_empty() && p.msr_read.is_empty() && p.msr_write.is_empty() && !p.msr_others
    );
    v.set(field::INTERCEPT_MISC1, u64::from(MISC1_IOIO_PROT));
    let p = policy(&v, &iopm, &msrpm, 1);
    assert_eq!(p.io_ports.to_vec(), vec![0x80, 0x3F8]);
    assert!(p.msr_read.is_empty() && !p.msr_others);
    v.set(field::INTERCEPT_MISC1, u64::from(MISC1_MSR_PROT));
    let p = policy(&v, &iopm, &msrpm, 1);
    assert!(p.io_ports.is_empty());
    assert_eq!(p.msr_read.to_vec(), vec![0x1B]);
    assert_eq!(p.msr_write.to_vec(), vec![0xC000_0080]);
    assert!(p.msr_others);
}

#[test]
fn interrupt_window() {
    use field::vintr::*;
    // (VINTR value, VINTR intercepted, expected window)
    let cases = [
        (V_IRQ | V_IGN_TPR, true, true),
        (V_IRQ | V_IGN_TPR, false, false),
        (V_IGN_TPR, true, false),
        (with_v_intr_prio(V_IRQ, 5) | 4, true, true),
        (with_v_intr_prio(V_IRQ, 4) | 4, true, false),
        (with_v_intr_prio(V_IRQ, 4) | 4 | V_IGN_TPR, true, true),
    ];
    for (vintr, intercepted, want) in cases {
        let mut v = Vmcb::new();
        v.set(field::VINTR, vintr);
        if intercepted {
            v.set(field::INTERCEPT_MISC1, u64::from(MISC1_VINTR));
        }
        assert_eq!(pol(&v).interrupt_window, want, "{vintr:#x} {intercepted}");
        assert_eq!(wants_interrupt_window(&v), want);
    }
}
