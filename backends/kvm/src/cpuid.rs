//! The CPUID table a vCPU gets: KVM's supported set, with per-vCPU APIC ids.

use kvm_bindings::kvm_cpuid_entry2;

/// Writes vCPU `id`'s APIC id into the CPUID leaves that report it:
/// CPUID.01H:EBX\[31:24\] (initial APIC ID, SDM vol. 2A, CPUID, Table 3-8) and
/// CPUID.0BH / CPUID.1FH:EDX (x2APIC ID of the current logical processor,
/// SDM vol. 2A, CPUID, leaves 0BH and 1FH).
pub fn set_apic_id(entries: &mut [kvm_cpuid_entry2], id: u32) {
    for e in entries.iter_mut() {
        match e.function {
            1 => e.ebx = (e.ebx & 0x00ff_ffff) | ((id & 0xff) << 24),
            0xb | 0x1f => e.edx = id,
            _ => {}
        }
    }
}

/// CPUID.01H:EDX.APIC\[bit 9\] (SDM vol. 2A, CPUID, Table 3-11).
pub const LEAF1_EDX_APIC: u32 = 1 << 9;
/// CPUID.01H:ECX.x2APIC\[bit 21\] (SDM vol. 2A, CPUID, Table 3-10).
pub const LEAF1_ECX_X2APIC: u32 = 1 << 21;
/// CPUID.01H:ECX.TSC-Deadline\[bit 24\].
pub const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;

/// Clears what this VM does not have. With no in-kernel irqchip the local
/// APIC is the host's (when `host_lapic`) or absent. x2APIC stays only when
/// its MSRs are forwarded to the host (`x2apic`). TSC-deadline mode is always
/// withdrawn: the host's timer model does not follow KVM's guest TSC.
pub fn hide_absent_apic(entries: &mut [kvm_cpuid_entry2], host_lapic: bool, x2apic: bool) {
    for e in entries.iter_mut().filter(|e| e.function == 1) {
        if !host_lapic {
            e.edx &= !LEAF1_EDX_APIC;
        }
        if !(host_lapic && x2apic) {
            e.ecx &= !LEAF1_ECX_X2APIC;
        }
        e.ecx &= !LEAF1_ECX_TSC_DEADLINE;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn apic_bits_are_hidden() {
        let mut e = [entry(1, 0, 0, 0xffff_ffff), entry(7, 0, 0, 0xffff_ffff)];
        e[0].ecx = 0xffff_ffff;
        e[1].ecx = 0xffff_ffff;
        let mut with_host = e;
        hide_absent_apic(&mut with_host, true, true);
        assert_eq!(
            with_host[0].edx, 0xffff_ffff,
            "the host's xAPIC is advertised"
        );
        assert_eq!(
            with_host[0].ecx, !LEAF1_ECX_TSC_DEADLINE,
            "x2APIC kept when forwarded"
        );
        let mut no_fwd = e;
        hide_absent_apic(&mut no_fwd, true, false);
        assert_eq!(no_fwd[0].ecx, !(LEAF1_ECX_X2APIC | LEAF1_ECX_TSC_DEADLINE));
        hide_absent_apic(&mut e, false, true);
        assert_eq!(e[0].edx, !LEAF1_EDX_APIC);
        assert_eq!(e[0].ecx, !(LEAF1_ECX_X2APIC | LEAF1_ECX_TSC_DEADLINE));
        assert_eq!(
            (e[1].ecx, e[1].edx),
            (0xffff_ffff, 0xffff_ffff),
            "other leaves untouched"
        );
    }

    use super::*;

    fn entry(function: u32, index: u32, ebx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ebx,
            edx,
            ..Default::default()
        }
    }

    #[test]
    fn apic_id_lands_in_every_leaf_that_reports_it() {
        // (function, index, ebx before, edx before, id, ebx after, edx after)
        let cases: [(u32, u32, u32, u32, u32, u32, u32); 6] = [
            (1, 0, 0x0001_0800, 7, 0, 0x0001_0800, 7),
            (1, 0, 0xff01_0800, 7, 3, 0x0301_0800, 7),
            (1, 0, 0x0001_0800, 7, 0x1ff, 0xff01_0800, 7),
            (0xb, 0, 1, 0, 5, 1, 5),
            (0xb, 1, 2, 0, 9, 2, 9),
            (0x1f, 0, 1, 0, 0x1ff, 1, 0x1ff),
        ];
        for (f, i, ebx, edx, id, ebx2, edx2) in cases {
            let mut e = [entry(f, i, ebx, edx), entry(0x8000_0001, 0, 0x55, 0x66)];
            set_apic_id(&mut e, id);
            assert_eq!(
                (e[0].ebx, e[0].edx),
                (ebx2, edx2),
                "leaf {f:#x}.{i} id {id}"
            );
            assert_eq!(
                (e[1].ebx, e[1].edx),
                (0x55, 0x66),
                "unrelated leaf untouched"
            );
        }
    }
}
