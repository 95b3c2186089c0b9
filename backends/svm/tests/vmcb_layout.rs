//! VMCB offsets against APM vol. 2 appendix B, page-image accessors, dump.

use hyperplug_backend_svm::vmcb::{field, Field, SegReg, Vmcb, VmcbSeg, VMCB_SIZE};

#[test]
fn offsets_match_appendix_b() {
    // (field, APM offset, size) from Table B-1 (control) and B-2 (save area).
    let table: &[(Field, usize, usize)] = &[
        (field::INTERCEPT_CR, 0x000, 4),
        (field::INTERCEPT_DR, 0x004, 4),
        (field::INTERCEPT_EXCEPTIONS, 0x008, 4),
        (field::INTERCEPT_MISC1, 0x00C, 4),
        (field::INTERCEPT_MISC2, 0x010, 4),
        (field::INTERCEPT_MISC3, 0x014, 4),
        (field::PAUSE_FILTER_THRESHOLD, 0x03C, 2),
        (field::PAUSE_FILTER_COUNT, 0x03E, 2),
        (field::IOPM_BASE_PA, 0x040, 8),
        (field::MSRPM_BASE_PA, 0x048, 8),
        (field::TSC_OFFSET, 0x050, 8),
        (field::GUEST_ASID, 0x058, 4),
        (field::TLB_CONTROL, 0x05C, 1),
        (field::VINTR, 0x060, 8),
        (field::INTERRUPT_SHADOW, 0x068, 8),
        (field::EXITCODE, 0x070, 8),
        (field::EXITINFO1, 0x078, 8),
        (field::EXITINFO2, 0x080, 8),
        (field::EXITINTINFO, 0x088, 8),
        (field::NP_ENABLE, 0x090, 8),
        (field::EVENTINJ, 0x0A8, 8),
        (field::N_CR3, 0x0B0, 8),
        (field::LBR_VIRTUALIZATION_ENABLE, 0x0B8, 8),
        (field::VMCB_CLEAN, 0x0C0, 4),
        (field::NRIP, 0x0C8, 8),
        (field::GUEST_INSN_BYTES_COUNT, 0x0D0, 1),
        (field::CPL, 0x4CB, 1),
        (field::EFER, 0x4D0, 8),
        (field::CR4, 0x548, 8),
        (field::CR3, 0x550, 8),
        (field::CR0, 0x558, 8),
        (field::DR7, 0x560, 8),
        (field::DR6, 0x568, 8),
        (field::RFLAGS, 0x570, 8),
        (field::RIP, 0x578, 8),
        (field::RSP, 0x5D8, 8),
        (field::RAX, 0x5F8, 8),
        (field::STAR, 0x600, 8),
        (field::LSTAR, 0x608, 8),
        (field::CSTAR, 0x610, 8),
        (field::SFMASK, 0x618, 8),
        (field::KERNEL_GS_BASE, 0x620, 8),
        (field::SYSENTER_CS, 0x628, 8),
        (field::SYSENTER_ESP, 0x630, 8),
        (field::SYSENTER_EIP, 0x638, 8),
        (field::CR2, 0x640, 8),
        (field::G_PAT, 0x668, 8),
        (field::DBGCTL, 0x670, 8),
        (field::BR_FROM, 0x678, 8),
        (field::BR_TO, 0x680, 8),
        (field::LASTEXCPFROM, 0x688, 8),
        (field::LASTEXCPTO, 0x690, 8),
    ];
    for &(f, off, size) in table {
        assert_eq!((f.offset, f.size), (off, size), "{}", f.name);
    }
    let segs = [
        (SegReg::Es, 0x400),
        (SegReg::Cs, 0x410),
        (SegReg::Ss, 0x420),
        (SegReg::Ds, 0x430),
        (SegReg::Fs, 0x440),
        (SegReg::Gs, 0x450),
        (SegReg::Gdtr, 0x460),
        (SegReg::Ldtr, 0x470),
        (SegReg::Idtr, 0x480),
        (SegReg::Tr, 0x490),
    ];
    for (r, off) in segs {
        assert_eq!(r.offset(), off, "{r:?}");
    }
}

#[test]
fn field_lists_are_sorted_and_disjoint() {
    for list in [field::CONTROL, field::SAVE] {
        for w in list.windows(2) {
            assert!(
                w[0].offset + w[0].size <= w[1].offset,
                "{} / {}",
                w[0].name,
                w[1].name
            );
        }
        for f in list {
            assert!(f.offset + f.size <= VMCB_SIZE && [1, 2, 4, 8].contains(&f.size));
        }
    }
    assert!(field::CONTROL.iter().all(|f| f.offset < field::SAVE_AREA));
    assert!(field::SAVE.iter().all(|f| f.offset >= 0x4A0));
}

#[test]
fn get_set_little_endian_and_truncated() {
    let mut v = Vmcb::new();
    v.set(field::EXITCODE, 0x1122_3344_5566_7788);
    assert_eq!(
        &v.bytes()[0x70..0x78],
        &[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
    );
    v.set(field::GUEST_ASID, 0xAAAA_BBBB_CCCC_DDDD);
    assert_eq!(v.get(field::GUEST_ASID), 0xCCCC_DDDD);
    assert_eq!(
        v.get(field::TLB_CONTROL),
        0,
        "ASID write must not spill into TLB_CONTROL"
    );
    v.set(field::TLB_CONTROL, 0x1FF);
    assert_eq!(v.get(field::TLB_CONTROL), 0xFF);
    assert_eq!(v.get(field::GUEST_ASID), 0xCCCC_DDDD);
    // A bogus field outside the page neither panics nor writes.
    let bogus = Field {
        name: "X",
        offset: 4094,
        size: 8,
    };
    v.set(bogus, u64::MAX);
    assert_eq!(v.get(bogus), 0);
    let huge = Field {
        name: "Y",
        offset: usize::MAX,
        size: 8,
    };
    v.set(huge, 1);
    assert_eq!(v.get(huge), 0);
}

#[test]
fn segment_slot_layout() {
    let mut v = Vmcb::new();
    let s = VmcbSeg {
        selector: 0x1234,
        attrib: 0x0A9B,
        limit: 0xFFFF_FFFF,
        base: 0xDEAD_BEEF_0000_1000,
    };
    v.set_seg(SegReg::Cs, s);
    let b = &v.bytes()[0x410..0x420];
    assert_eq!(&b[0..2], &[0x34, 0x12]);
    assert_eq!(&b[2..4], &[0x9B, 0x0A]);
    assert_eq!(&b[4..8], &[0xFF; 4]);
    assert_eq!(&b[8..16], &0xDEAD_BEEF_0000_1000u64.to_le_bytes());
    assert_eq!(v.seg(SegReg::Cs), s);
    assert_eq!(v.seg(SegReg::Ss), VmcbSeg::default());
}

#[test]
fn insn_bytes_round_trip() {
    let mut v = Vmcb::new();
    v.set_insn_bytes(&[0x0F, 0xA2]);
    let (n, b) = v.insn_bytes();
    assert_eq!(n, 2);
    assert_eq!(&b[..3], &[0x0F, 0xA2, 0]);
    assert_eq!(v.bytes()[0xD0], 2);
    assert_eq!(v.bytes()[0xD1], 0x0F);
    v.set_insn_bytes(&[0x90; 20]);
    let (n, b) = v.insn_bytes();
    assert_eq!((n, b), (15, [0x90; 15]));
    assert_eq!(v.bytes()[0xE0], 0, "must not write past 0x0DF");
}

#[test]
fn dump_lists_fields() {
    let mut v = Vmcb::new();
    v.set(field::EXITCODE, 0x7b);
    v.set(field::RIP, 0xfff0);
    let d = v.dump();
    assert!(d.contains("0x070 EXITCODE = 0x7b"), "{d}");
    assert!(d.contains("0x578 RIP = 0xfff0"), "{d}");
    assert!(d.contains("0x410 CS = selector=0x0"), "{d}");
    let exit = d.find("EXITCODE").unwrap_or(usize::MAX);
    let rip = d.find("RIP =").unwrap_or(0);
    assert!(exit < rip, "control area first");
    let lines = d.lines().count();
    assert_eq!(lines, field::CONTROL.len() + 1 + 10 + field::SAVE.len());
}

#[test]
fn vintr_helpers() {
    use field::vintr::*;
    let v = with_v_intr_vector(with_v_intr_prio(with_v_tpr(0, 0x5), 0xA), 0x30) | V_IRQ | V_IGN_TPR;
    assert_eq!(v, 0x30_0000_0000 | 0x10_0000 | 0xA_0000 | 0x100 | 0x5);
    assert_eq!((v_tpr(v), v_intr_prio(v), v_intr_vector(v)), (5, 0xA, 0x30));
    assert_eq!(V_GIF, 1 << 9);
    assert_eq!(V_INTR_MASKING, 1 << 24);
}
