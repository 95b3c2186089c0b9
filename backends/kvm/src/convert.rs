//! ABI state types <-> `kvm-bindings` types, field for field.
//!
//! The plugin-api state types mirror KVM's user-space structures exactly, so
//! every conversion here is a plain copy; the round-trip tests below prove no
//! field is dropped or swapped.

use hyperplug_plugin_api::state::{
    DTable, ExceptionEvent, Fpu, InterruptEvent, MsrEntry, NmiEvent, Regs, Segment, SmiEvent,
    Sregs, VcpuEvents,
};
use hyperplug_plugin_api::PluginError;
use kvm_bindings::{
    kvm_dtable, kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, kvm_vcpu_events,
    kvm_vcpu_events__bindgen_ty_1, kvm_vcpu_events__bindgen_ty_2, kvm_vcpu_events__bindgen_ty_3,
    kvm_vcpu_events__bindgen_ty_4, kvm_vcpu_events__bindgen_ty_5,
};

/// Size of the legacy `struct kvm_xsave` region in bytes (SDM vol. 1, 13.4: legacy area + header + extended area).
pub const XSAVE_LEGACY_BYTES: usize = 4096;

/// `Regs` -> `kvm_regs`.
pub fn regs_to_kvm(r: &Regs) -> kvm_regs {
    kvm_regs {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rsp: r.rsp,
        rbp: r.rbp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
    }
}

/// `kvm_regs` -> `Regs`.
pub fn regs_from_kvm(r: &kvm_regs) -> Regs {
    Regs {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rsp: r.rsp,
        rbp: r.rbp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
    }
}

/// `Segment` -> `kvm_segment`.
pub fn segment_to_kvm(s: &Segment) -> kvm_segment {
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present,
        dpl: s.dpl,
        db: s.db,
        s: s.s,
        l: s.l,
        g: s.g,
        avl: s.avl,
        unusable: s.unusable,
        padding: s.padding,
    }
}

/// `kvm_segment` -> `Segment`.
pub fn segment_from_kvm(s: &kvm_segment) -> Segment {
    Segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present,
        dpl: s.dpl,
        db: s.db,
        s: s.s,
        l: s.l,
        g: s.g,
        avl: s.avl,
        unusable: s.unusable,
        padding: s.padding,
    }
}

/// `DTable` -> `kvm_dtable`.
pub fn dtable_to_kvm(d: &DTable) -> kvm_dtable {
    kvm_dtable {
        base: d.base,
        limit: d.limit,
        padding: d.padding,
    }
}

/// `kvm_dtable` -> `DTable`.
pub fn dtable_from_kvm(d: &kvm_dtable) -> DTable {
    DTable {
        base: d.base,
        limit: d.limit,
        padding: d.padding,
    }
}

/// `Sregs` -> `kvm_sregs`.
pub fn sregs_to_kvm(s: &Sregs) -> kvm_sregs {
    kvm_sregs {
        cs: segment_to_kvm(&s.cs),
        ds: segment_to_kvm(&s.ds),
        es: segment_to_kvm(&s.es),
        fs: segment_to_kvm(&s.fs),
        gs: segment_to_kvm(&s.gs),
        ss: segment_to_kvm(&s.ss),
        tr: segment_to_kvm(&s.tr),
        ldt: segment_to_kvm(&s.ldt),
        gdt: dtable_to_kvm(&s.gdt),
        idt: dtable_to_kvm(&s.idt),
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
        apic_base: s.apic_base,
        interrupt_bitmap: s.interrupt_bitmap,
    }
}

/// `kvm_sregs` -> `Sregs`.
pub fn sregs_from_kvm(s: &kvm_sregs) -> Sregs {
    Sregs {
        cs: segment_from_kvm(&s.cs),
        ds: segment_from_kvm(&s.ds),
        es: segment_from_kvm(&s.es),
        fs: segment_from_kvm(&s.fs),
        gs: segment_from_kvm(&s.gs),
        ss: segment_from_kvm(&s.ss),
        tr: segment_from_kvm(&s.tr),
        ldt: segment_from_kvm(&s.ldt),
        gdt: dtable_from_kvm(&s.gdt),
        idt: dtable_from_kvm(&s.idt),
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
        apic_base: s.apic_base,
        interrupt_bitmap: s.interrupt_bitmap,
    }
}

/// `Fpu` -> `kvm_fpu`.
pub fn fpu_to_kvm(f: &Fpu) -> kvm_fpu {
    kvm_fpu {
        fpr: f.fpr,
        fcw: f.fcw,
        fsw: f.fsw,
        ftwx: f.ftwx,
        pad1: f.pad1,
        last_opcode: f.last_opcode,
        last_ip: f.last_ip,
        last_dp: f.last_dp,
        xmm: f.xmm,
        mxcsr: f.mxcsr,
        pad2: f.pad2,
    }
}

/// `kvm_fpu` -> `Fpu`.
pub fn fpu_from_kvm(f: &kvm_fpu) -> Fpu {
    Fpu {
        fpr: f.fpr,
        fcw: f.fcw,
        fsw: f.fsw,
        ftwx: f.ftwx,
        pad1: f.pad1,
        last_opcode: f.last_opcode,
        last_ip: f.last_ip,
        last_dp: f.last_dp,
        xmm: f.xmm,
        mxcsr: f.mxcsr,
        pad2: f.pad2,
    }
}

/// `MsrEntry` -> `kvm_msr_entry`.
pub fn msr_to_kvm(m: &MsrEntry) -> kvm_msr_entry {
    kvm_msr_entry {
        index: m.index,
        reserved: m.reserved,
        data: m.data,
    }
}

/// `kvm_msr_entry` -> `MsrEntry`.
pub fn msr_from_kvm(m: &kvm_msr_entry) -> MsrEntry {
    MsrEntry {
        index: m.index,
        reserved: m.reserved,
        data: m.data,
    }
}

/// `VcpuEvents` -> `kvm_vcpu_events`.
pub fn events_to_kvm(e: &VcpuEvents) -> kvm_vcpu_events {
    kvm_vcpu_events {
        exception: kvm_vcpu_events__bindgen_ty_1 {
            injected: e.exception.injected,
            nr: e.exception.nr,
            has_error_code: e.exception.has_error_code,
            pending: e.exception.pending,
            error_code: e.exception.error_code,
        },
        interrupt: kvm_vcpu_events__bindgen_ty_2 {
            injected: e.interrupt.injected,
            nr: e.interrupt.nr,
            soft: e.interrupt.soft,
            shadow: e.interrupt.shadow,
        },
        nmi: kvm_vcpu_events__bindgen_ty_3 {
            injected: e.nmi.injected,
            pending: e.nmi.pending,
            masked: e.nmi.masked,
            pad: e.nmi.pad,
        },
        sipi_vector: e.sipi_vector,
        flags: e.flags,
        smi: kvm_vcpu_events__bindgen_ty_4 {
            smm: e.smi.smm,
            pending: e.smi.pending,
            smm_inside_nmi: e.smi.smm_inside_nmi,
            latched_init: e.smi.latched_init,
        },
        triple_fault: kvm_vcpu_events__bindgen_ty_5 {
            pending: e.triple_fault_pending,
        },
        reserved: e.reserved,
        exception_has_payload: e.exception_has_payload,
        exception_payload: e.exception_payload,
    }
}

/// `kvm_vcpu_events` -> `VcpuEvents`.
pub fn events_from_kvm(e: &kvm_vcpu_events) -> VcpuEvents {
    VcpuEvents {
        exception: ExceptionEvent {
            injected: e.exception.injected,
            nr: e.exception.nr,
            has_error_code: e.exception.has_error_code,
            pending: e.exception.pending,
            error_code: e.exception.error_code,
        },
        interrupt: InterruptEvent {
            injected: e.interrupt.injected,
            nr: e.interrupt.nr,
            soft: e.interrupt.soft,
            shadow: e.interrupt.shadow,
        },
        nmi: NmiEvent {
            injected: e.nmi.injected,
            pending: e.nmi.pending,
            masked: e.nmi.masked,
            pad: e.nmi.pad,
        },
        sipi_vector: e.sipi_vector,
        flags: e.flags,
        smi: SmiEvent {
            smm: e.smi.smm,
            pending: e.smi.pending,
            smm_inside_nmi: e.smi.smm_inside_nmi,
            latched_init: e.smi.latched_init,
        },
        triple_fault_pending: e.triple_fault.pending,
        reserved: e.reserved,
        exception_has_payload: e.exception_has_payload,
        exception_payload: e.exception_payload,
    }
}

/// XSAVE image as 32-bit words (KVM's `region` + `extra`) -> bytes, little-endian.
pub fn xsave_words_to_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// XSAVE image bytes -> 32-bit words; the length must be a multiple of 4.
pub fn xsave_bytes_to_words(bytes: &[u8]) -> Result<Vec<u32>, PluginError> {
    if bytes.len() & 3 != 0 {
        return Err(PluginError::invalid(format!(
            "xsave: region length {} is not a multiple of 4",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generator of distinct non-zero values, so a swapped or dropped field shows.
    struct Seq(u64);
    impl Seq {
        fn next(&mut self) -> u64 {
            self.0 += 1;
            // Spread bits so truncation to u8/u16 still yields distinct non-zero values per field.
            self.0
        }
        fn u8(&mut self) -> u8 {
            (self.next() % 250 + 1) as u8
        }
        fn u16(&mut self) -> u16 {
            0x100 + self.next() as u16
        }
        fn u32(&mut self) -> u32 {
            0x1_0000 + self.next() as u32
        }
        fn u64(&mut self) -> u64 {
            0x1_0000_0000 + self.next()
        }
    }

    fn seg(q: &mut Seq) -> Segment {
        Segment {
            base: q.u64(),
            limit: q.u32(),
            selector: q.u16(),
            type_: q.u8(),
            present: q.u8(),
            dpl: q.u8(),
            db: q.u8(),
            s: q.u8(),
            l: q.u8(),
            g: q.u8(),
            avl: q.u8(),
            unusable: q.u8(),
            padding: q.u8(),
        }
    }

    fn dt(q: &mut Seq) -> DTable {
        DTable {
            base: q.u64(),
            limit: q.u16(),
            padding: [q.u16(), q.u16(), q.u16()],
        }
    }

    fn sample_regs(q: &mut Seq) -> Regs {
        Regs {
            rax: q.u64(),
            rbx: q.u64(),
            rcx: q.u64(),
            rdx: q.u64(),
            rsi: q.u64(),
            rdi: q.u64(),
            rsp: q.u64(),
            rbp: q.u64(),
            r8: q.u64(),
            r9: q.u64(),
            r10: q.u64(),
            r11: q.u64(),
            r12: q.u64(),
            r13: q.u64(),
            r14: q.u64(),
            r15: q.u64(),
            rip: q.u64(),
            rflags: q.u64(),
        }
    }

    fn sample_sregs(q: &mut Seq) -> Sregs {
        Sregs {
            cs: seg(q),
            ds: seg(q),
            es: seg(q),
            fs: seg(q),
            gs: seg(q),
            ss: seg(q),
            tr: seg(q),
            ldt: seg(q),
            gdt: dt(q),
            idt: dt(q),
            cr0: q.u64(),
            cr2: q.u64(),
            cr3: q.u64(),
            cr4: q.u64(),
            cr8: q.u64(),
            efer: q.u64(),
            apic_base: q.u64(),
            interrupt_bitmap: [q.u64(), q.u64(), q.u64(), q.u64()],
        }
    }

    fn sample_fpu(q: &mut Seq) -> Fpu {
        let mut fpr = [[0u8; 16]; 8];
        fpr.iter_mut().flatten().for_each(|b| *b = q.u8());
        let mut xmm = [[0u8; 16]; 16];
        xmm.iter_mut().flatten().for_each(|b| *b = q.u8());
        Fpu {
            fpr,
            fcw: q.u16(),
            fsw: q.u16(),
            ftwx: q.u8(),
            pad1: q.u8(),
            last_opcode: q.u16(),
            last_ip: q.u64(),
            last_dp: q.u64(),
            xmm,
            mxcsr: q.u32(),
            pad2: q.u32(),
        }
    }

    fn sample_events(q: &mut Seq) -> VcpuEvents {
        let mut reserved = [0u8; 26];
        reserved.iter_mut().for_each(|b| *b = q.u8());
        VcpuEvents {
            exception: ExceptionEvent {
                injected: q.u8(),
                nr: q.u8(),
                has_error_code: q.u8(),
                pending: q.u8(),
                error_code: q.u32(),
            },
            interrupt: InterruptEvent {
                injected: q.u8(),
                nr: q.u8(),
                soft: q.u8(),
                shadow: q.u8(),
            },
            nmi: NmiEvent {
                injected: q.u8(),
                pending: q.u8(),
                masked: q.u8(),
                pad: q.u8(),
            },
            sipi_vector: q.u32(),
            flags: q.u32(),
            smi: SmiEvent {
                smm: q.u8(),
                pending: q.u8(),
                smm_inside_nmi: q.u8(),
                latched_init: q.u8(),
            },
            triple_fault_pending: q.u8(),
            reserved,
            exception_has_payload: q.u8(),
            exception_payload: q.u64(),
        }
    }

    /// Every (ABI field, KVM field) pair of `Regs`, read out as u64.
    #[test]
    fn regs_round_trip_field_for_field() {
        let a = sample_regs(&mut Seq(0));
        let k = regs_to_kvm(&a);
        let table: [(&str, u64, u64); 18] = [
            ("rax", a.rax, k.rax),
            ("rbx", a.rbx, k.rbx),
            ("rcx", a.rcx, k.rcx),
            ("rdx", a.rdx, k.rdx),
            ("rsi", a.rsi, k.rsi),
            ("rdi", a.rdi, k.rdi),
            ("rsp", a.rsp, k.rsp),
            ("rbp", a.rbp, k.rbp),
            ("r8", a.r8, k.r8),
            ("r9", a.r9, k.r9),
            ("r10", a.r10, k.r10),
            ("r11", a.r11, k.r11),
            ("r12", a.r12, k.r12),
            ("r13", a.r13, k.r13),
            ("r14", a.r14, k.r14),
            ("r15", a.r15, k.r15),
            ("rip", a.rip, k.rip),
            ("rflags", a.rflags, k.rflags),
        ];
        let mut seen = std::collections::HashSet::new();
        for (name, abi, kvm) in table {
            assert_eq!(abi, kvm, "{name}");
            assert!(seen.insert(abi), "{name}: sample values must be distinct");
        }
        assert_eq!(regs_from_kvm(&k), a);
    }

    fn seg_fields(s: &Segment, k: &kvm_segment) -> Vec<(&'static str, u64, u64)> {
        vec![
            ("base", s.base, k.base),
            ("limit", s.limit.into(), k.limit.into()),
            ("selector", s.selector.into(), k.selector.into()),
            ("type", s.type_.into(), k.type_.into()),
            ("present", s.present.into(), k.present.into()),
            ("dpl", s.dpl.into(), k.dpl.into()),
            ("db", s.db.into(), k.db.into()),
            ("s", s.s.into(), k.s.into()),
            ("l", s.l.into(), k.l.into()),
            ("g", s.g.into(), k.g.into()),
            ("avl", s.avl.into(), k.avl.into()),
            ("unusable", s.unusable.into(), k.unusable.into()),
            ("padding", s.padding.into(), k.padding.into()),
        ]
    }

    #[test]
    fn sregs_round_trip_field_for_field() {
        let a = sample_sregs(&mut Seq(100));
        let k = sregs_to_kvm(&a);
        let segs = [
            ("cs", &a.cs, &k.cs),
            ("ds", &a.ds, &k.ds),
            ("es", &a.es, &k.es),
            ("fs", &a.fs, &k.fs),
            ("gs", &a.gs, &k.gs),
            ("ss", &a.ss, &k.ss),
            ("tr", &a.tr, &k.tr),
            ("ldt", &a.ldt, &k.ldt),
        ];
        for (sname, s, ks) in segs {
            for (f, abi, kvm) in seg_fields(s, ks) {
                assert_ne!(abi, 0, "{sname}.{f} sample must be non-zero");
                assert_eq!(abi, kvm, "{sname}.{f}");
            }
        }
        for (name, d, kd) in [("gdt", &a.gdt, &k.gdt), ("idt", &a.idt, &k.idt)] {
            assert_eq!(d.base, kd.base, "{name}.base");
            assert_eq!(d.limit, kd.limit, "{name}.limit");
            assert_eq!(d.padding, kd.padding, "{name}.padding");
        }
        let scalars = [
            ("cr0", a.cr0, k.cr0),
            ("cr2", a.cr2, k.cr2),
            ("cr3", a.cr3, k.cr3),
            ("cr4", a.cr4, k.cr4),
            ("cr8", a.cr8, k.cr8),
            ("efer", a.efer, k.efer),
            ("apic_base", a.apic_base, k.apic_base),
        ];
        for (name, abi, kvm) in scalars {
            assert_eq!(abi, kvm, "{name}");
        }
        assert_eq!(a.interrupt_bitmap, k.interrupt_bitmap);
        assert_eq!(sregs_from_kvm(&k), a);
    }

    #[test]
    fn fpu_round_trip_field_for_field() {
        let a = sample_fpu(&mut Seq(300));
        let k = fpu_to_kvm(&a);
        assert_eq!(a.fpr, k.fpr, "fpr");
        assert_eq!(a.xmm, k.xmm, "xmm");
        let table: [(&str, u64, u64); 9] = [
            ("fcw", a.fcw.into(), k.fcw.into()),
            ("fsw", a.fsw.into(), k.fsw.into()),
            ("ftwx", a.ftwx.into(), k.ftwx.into()),
            ("pad1", a.pad1.into(), k.pad1.into()),
            ("last_opcode", a.last_opcode.into(), k.last_opcode.into()),
            ("last_ip", a.last_ip, k.last_ip),
            ("last_dp", a.last_dp, k.last_dp),
            ("mxcsr", a.mxcsr.into(), k.mxcsr.into()),
            ("pad2", a.pad2.into(), k.pad2.into()),
        ];
        for (name, abi, kvm) in table {
            assert_ne!(abi, 0, "{name} sample must be non-zero");
            assert_eq!(abi, kvm, "{name}");
        }
        assert_eq!(fpu_from_kvm(&k), a);
    }

    #[test]
    fn msr_round_trip() {
        let a = MsrEntry {
            index: 0xc000_0080,
            reserved: 7,
            data: 0x0123_4567_89ab_cdef,
        };
        let k = msr_to_kvm(&a);
        assert_eq!((k.index, k.reserved, k.data), (a.index, a.reserved, a.data));
        assert_eq!(msr_from_kvm(&k), a);
    }

    #[test]
    fn events_round_trip_field_for_field() {
        let a = sample_events(&mut Seq(500));
        let k = events_to_kvm(&a);
        let table: [(&str, u64, u64); 22] = [
            (
                "exception.injected",
                a.exception.injected.into(),
                k.exception.injected.into(),
            ),
            ("exception.nr", a.exception.nr.into(), k.exception.nr.into()),
            (
                "exception.has_error_code",
                a.exception.has_error_code.into(),
                k.exception.has_error_code.into(),
            ),
            (
                "exception.pending",
                a.exception.pending.into(),
                k.exception.pending.into(),
            ),
            (
                "exception.error_code",
                a.exception.error_code.into(),
                k.exception.error_code.into(),
            ),
            (
                "interrupt.injected",
                a.interrupt.injected.into(),
                k.interrupt.injected.into(),
            ),
            ("interrupt.nr", a.interrupt.nr.into(), k.interrupt.nr.into()),
            (
                "interrupt.soft",
                a.interrupt.soft.into(),
                k.interrupt.soft.into(),
            ),
            (
                "interrupt.shadow",
                a.interrupt.shadow.into(),
                k.interrupt.shadow.into(),
            ),
            ("nmi.injected", a.nmi.injected.into(), k.nmi.injected.into()),
            ("nmi.pending", a.nmi.pending.into(), k.nmi.pending.into()),
            ("nmi.masked", a.nmi.masked.into(), k.nmi.masked.into()),
            ("nmi.pad", a.nmi.pad.into(), k.nmi.pad.into()),
            ("sipi_vector", a.sipi_vector.into(), k.sipi_vector.into()),
            ("flags", a.flags.into(), k.flags.into()),
            ("smi.smm", a.smi.smm.into(), k.smi.smm.into()),
            ("smi.pending", a.smi.pending.into(), k.smi.pending.into()),
            (
                "smi.smm_inside_nmi",
                a.smi.smm_inside_nmi.into(),
                k.smi.smm_inside_nmi.into(),
            ),
            (
                "smi.latched_init",
                a.smi.latched_init.into(),
                k.smi.latched_init.into(),
            ),
            (
                "triple_fault.pending",
                a.triple_fault_pending.into(),
                k.triple_fault.pending.into(),
            ),
            (
                "exception_has_payload",
                a.exception_has_payload.into(),
                k.exception_has_payload.into(),
            ),
            (
                "exception_payload",
                a.exception_payload,
                k.exception_payload,
            ),
        ];
        for (name, abi, kvm) in table {
            assert_ne!(abi, 0, "{name} sample must be non-zero");
            assert_eq!(abi, kvm, "{name}");
        }
        assert_eq!(a.reserved, k.reserved, "reserved");
        assert_eq!(events_from_kvm(&k), a);
    }

    #[test]
    fn xsave_bytes_words_round_trip() {
        let words: Vec<u32> = (1..=1024u32).map(|i| i.wrapping_mul(0x0101_0103)).collect();
        let bytes = xsave_words_to_bytes(&words);
        assert_eq!(bytes.len(), XSAVE_LEGACY_BYTES);
        assert_eq!(&bytes[..4], &words[0].to_le_bytes());
        assert_eq!(xsave_bytes_to_words(&bytes).ok(), Some(words));
        assert!(xsave_bytes_to_words(&[1, 2, 3]).is_err());
    }
}
