//! CpuState <-> VMCB save area and segment attribute conversion.

use hyperplug_backend_svm::vmcb::{attr, field, SegReg, Vmcb, VmcbSeg, EFER_SVME};
use hyperplug_plugin_api::state::{CpuState, DTable, MsrEntry, Segment};

fn seg(selector: u16, type_: u8, s: u8, dpl: u8, l: u8, db: u8, g: u8) -> Segment {
    Segment {
        base: 0x1000 * u64::from(selector),
        limit: 0xFFFF_FFFF,
        selector,
        type_,
        present: 1,
        dpl,
        db,
        s,
        l,
        g,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

fn long_mode_state() -> CpuState {
    let mut st = CpuState::default();
    st.regs.rax = 0x1111;
    st.regs.rbx = 0x2222;
    st.regs.rsp = 0xFFFF_8000_0000_F000;
    st.regs.rip = 0xFFFF_FFFF_8100_0000;
    st.regs.rflags = 0x202;
    let sr = &mut st.sregs;
    sr.cs = seg(0x10, 0xB, 1, 3, 1, 0, 1);
    sr.ss = seg(0x2B, 0x3, 1, 3, 0, 1, 1);
    sr.ds = seg(0x2B, 0x3, 1, 3, 0, 1, 1);
    sr.es = Segment {
        unusable: 1,
        present: 0,
        ..seg(0, 0x3, 1, 0, 0, 0, 0)
    };
    sr.fs = Segment {
        base: 0x7FFF_0000,
        ..seg(0, 0x3, 1, 0, 0, 1, 1)
    };
    sr.gs = Segment {
        base: 0xFFFF_8880_0000_0000,
        ..seg(0, 0x3, 1, 0, 0, 1, 1)
    };
    sr.tr = Segment {
        limit: 0x67,
        g: 0,
        ..seg(0x40, 0xB, 0, 0, 0, 0, 0)
    };
    sr.ldt = Segment {
        unusable: 1,
        present: 0,
        ..seg(0, 0x2, 0, 0, 0, 0, 0)
    };
    sr.gdt = DTable {
        base: 0xFFFF_FE00_0000_1000,
        limit: 0x7F,
        padding: [0; 3],
    };
    sr.idt = DTable {
        base: 0xFFFF_FE00_0000_0000,
        limit: 0xFFF,
        padding: [0; 3],
    };
    sr.cr0 = 0x8005_0033;
    sr.cr2 = 0xDEAD_0000;
    sr.cr3 = 0x1234_5000;
    sr.cr4 = 0x3006F0;
    sr.cr8 = 0x7;
    sr.efer = 0xD01;
    st.msrs = vec![
        MsrEntry {
            index: 0xC000_0081,
            reserved: 0,
            data: 0x0023_0010_0000_0000,
        },
        MsrEntry {
            index: 0xC000_0082,
            reserved: 0,
            data: 0xFFFF_FFFF_8100_1000,
        },
        MsrEntry {
            index: 0x10,
            reserved: 0,
            data: 0x99,
        }, // TSC: not a VMCB field
        MsrEntry {
            index: 0x277,
            reserved: 0,
            data: 0x0007_0406_0007_0406,
        },
        MsrEntry {
            index: 0x174,
            reserved: 0,
            data: 0x10,
        },
    ]
    .into();
    st.events.interrupt.shadow = 1;
    st
}

#[test]
fn save_writes_fields() {
    let st = long_mode_state();
    let mut v = Vmcb::new();
    v.save_state(&st);
    let cases = [
        (field::RAX, 0x1111),
        (field::RSP, 0xFFFF_8000_0000_F000),
        (field::RIP, 0xFFFF_FFFF_8100_0000),
        (field::RFLAGS, 0x202),
        (field::CR0, 0x8005_0033),
        (field::CR2, 0xDEAD_0000),
        (field::CR3, 0x1234_5000),
        (field::CR4, 0x3006F0),
        (field::EFER, 0xD01 | EFER_SVME),
        (field::CPL, 3),
        (field::STAR, 0x0023_0010_0000_0000),
        (field::LSTAR, 0xFFFF_FFFF_8100_1000),
        (field::G_PAT, 0x0007_0406_0007_0406),
        (field::SYSENTER_CS, 0x10),
        (field::CSTAR, 0),
        (field::INTERRUPT_SHADOW, 0b11),
    ];
    for (f, want) in cases {
        assert_eq!(v.get(f), want, "{}", f.name);
    }
    assert_eq!(field::vintr::v_tpr(v.get(field::VINTR)), 7);
    assert_eq!(
        v.seg(SegReg::Gdtr),
        VmcbSeg {
            selector: 0,
            attrib: 0,
            limit: 0x7F,
            base: 0xFFFF_FE00_0000_1000
        }
    );
    assert_eq!(
        v.seg(SegReg::Cs).attrib,
        0xB | attr::S | (3 << 5) | attr::P | attr::L | attr::G
    );
    assert_eq!(v.seg(SegReg::Es).attrib & attr::P, 0, "unusable ES has P=0");
}

#[test]
fn round_trip_restores_everything_the_vmcb_holds() {
    let st = long_mode_state();
    let mut v = Vmcb::new();
    v.save_state(&st);
    let mut back = CpuState::default();
    back.regs.rbx = 0x5555; // not held by the VMCB: must survive
    back.msrs = vec![MsrEntry {
        index: 0x10,
        reserved: 0,
        data: 0x42,
    }]
    .into();
    v.load_state(&mut back);
    assert_eq!(back.regs.rbx, 0x5555);
    assert_eq!(back.regs.rax, st.regs.rax);
    assert_eq!(back.regs.rsp, st.regs.rsp);
    assert_eq!(back.regs.rip, st.regs.rip);
    assert_eq!(back.regs.rflags, st.regs.rflags);
    let (a, b) = (&back.sregs, &st.sregs);
    for (x, y) in [
        (a.cs, b.cs),
        (a.ss, b.ss),
        (a.ds, b.ds),
        (a.fs, b.fs),
        (a.gs, b.gs),
        (a.tr, b.tr),
    ] {
        assert_eq!(x, y);
    }
    assert_eq!(a.es.unusable, 1);
    assert_eq!(a.ldt.unusable, 1);
    assert_eq!((a.gdt, a.idt), (b.gdt, b.idt));
    assert_eq!(
        (a.cr0, a.cr2, a.cr3, a.cr4, a.cr8),
        (b.cr0, b.cr2, b.cr3, b.cr4, b.cr8)
    );
    assert_eq!(a.efer, 0xD01, "SVME forced into the VMCB only");
    assert_ne!(back.events.interrupt.shadow, 0);
    let find = |i: u32| back.msrs.iter().find(|m| m.index == i).map(|m| m.data);
    assert_eq!(find(0x10), Some(0x42), "other MSRs kept");
    assert_eq!(find(0xC000_0081), Some(0x0023_0010_0000_0000));
    assert_eq!(find(0xC000_0082), Some(0xFFFF_FFFF_8100_1000));
    assert_eq!(find(0x277), Some(0x0007_0406_0007_0406));
    assert_eq!(find(0x174), Some(0x10));
    // Second trip is a fixed point.
    let mut v2 = Vmcb::new();
    v2.save_state(&back);
    assert_eq!(v2.bytes()[0x400..], v.bytes()[0x400..]);
}

#[test]
fn load_overwrites_existing_msr_and_clears_shadow() {
    let mut v = Vmcb::new();
    v.set(field::LSTAR, 0xABC);
    let mut st = CpuState {
        msrs: vec![MsrEntry {
            index: 0xC000_0082,
            reserved: 0,
            data: 1,
        }]
        .into(),
        ..CpuState::default()
    };
    st.events.interrupt.shadow = 2;
    st.sregs.efer = EFER_SVME;
    v.load_state(&mut st);
    assert_eq!(st.msrs.iter().filter(|m| m.index == 0xC000_0082).count(), 1);
    assert_eq!(
        st.msrs
            .iter()
            .find(|m| m.index == 0xC000_0082)
            .map(|m| m.data),
        Some(0xABC)
    );
    assert_eq!(st.events.interrupt.shadow, 0);
    assert_eq!(st.sregs.efer, EFER_SVME, "the state's own SVME bit is kept");
}

#[test]
fn cpl_rule() {
    // (cr0, rflags, ss.dpl, expected CPL): real mode 0, V86 3, else SS.DPL.
    let cases = [
        (0x10, 0x2, 3, 0),
        (0x11, 0x2_0202, 0, 3),
        (0x11, 0x202, 2, 2),
        (0x8000_0011, 0x2, 0, 0),
    ];
    for (cr0, rflags, dpl, want) in cases {
        let mut st = CpuState::default();
        st.sregs.cr0 = cr0;
        st.regs.rflags = rflags;
        st.sregs.ss.dpl = dpl;
        let mut v = Vmcb::new();
        v.save_state(&st);
        assert_eq!(v.get(field::CPL), want, "cr0={cr0:#x} rflags={rflags:#x}");
    }
}

#[test]
fn attribute_conversion_table() {
    // (segment, VMCB attrib): type 3:0, S 4, DPL 6:5, P 7, AVL 8, L 9, D/B 10, G 11.
    let base = Segment {
        present: 1,
        ..Segment::default()
    };
    let cases = [
        (
            Segment {
                type_: 0xB,
                s: 1,
                ..base
            },
            0x09B,
        ),
        (
            Segment {
                type_: 0x3,
                s: 1,
                dpl: 3,
                db: 1,
                g: 1,
                ..base
            },
            0xCF3,
        ),
        (
            Segment {
                type_: 0xB,
                s: 1,
                l: 1,
                ..base
            },
            0x29B,
        ),
        (
            Segment {
                type_: 0x2,
                avl: 1,
                ..base
            },
            0x182,
        ),
        (
            Segment {
                type_: 0x3,
                s: 1,
                unusable: 1,
                ..base
            },
            0x013,
        ),
        (
            Segment {
                type_: 0xB,
                present: 0,
                ..base
            },
            0x00B,
        ),
    ];
    for (s, want) in cases {
        let v = VmcbSeg::from_segment(&s);
        assert_eq!(v.attrib, want, "{s:?}");
        let back = v.to_segment();
        assert_eq!(back.type_, s.type_);
        assert_eq!(
            (back.s, back.dpl, back.l, back.db, back.g, back.avl),
            (s.s, s.dpl, s.l, s.db, s.g, s.avl)
        );
        let usable = s.present != 0 && s.unusable == 0;
        assert_eq!(back.present, u8::from(usable));
        assert_eq!(back.unusable, u8::from(!usable));
    }
    // VMCB -> segment for every attribute bit on its own.
    for bit in 0..12 {
        let a = 1u16 << bit;
        let s = VmcbSeg {
            attrib: a,
            ..VmcbSeg::default()
        }
        .to_segment();
        assert_eq!(VmcbSeg::from_segment(&s).attrib, a, "bit {bit}");
    }
}
