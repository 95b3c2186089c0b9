//! Forwarding the local APIC's MSR to the host: with `VmConfig::HOST_LAPIC`
//! the host owns the local APIC, so RDMSR/WRMSR of IA32_APIC_BASE (0x1B,
//! SDM vol. 3, 11.4.4) must reach it. KVM's user-space MSR filter denies it
//! in the kernel, and `KVM_CAP_X86_USER_SPACE_MSR` with
//! `KVM_MSR_EXIT_REASON_FILTER` turns the denial into `KVM_EXIT_X86_RDMSR` /
//! `KVM_EXIT_X86_WRMSR` exits.
//!
//! The x2APIC MSRs (0x800-0x8FF) cannot be forwarded this way: KVM exempts
//! them from MSR filtering and, with no in-kernel local APIC, answers them
//! with #GP itself. So this backend never offers x2APIC (observed on this
//! project's build machines: a filtered RDMSR of 0x802 raised #GP in the guest
//! without an exit).

use kvm_bindings::{kvm_enable_cap, KVM_CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_FILTER};
use kvm_ioctls::{MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VmFd};

/// IA32_APIC_BASE.
pub const MSR_APIC_BASE: u32 = 0x1B;

/// Whether `index` is one the backend forwards to the host.
pub fn is_forwarded(index: u32) -> bool {
    index == MSR_APIC_BASE
}

/// Sets up the forwarding; an error means the kernel cannot (IA32_APIC_BASE
/// then stays KVM's, which cannot relocate or disable the host's APIC).
pub fn forward_apic_msrs(vm: &VmFd) -> Result<(), String> {
    let cap = kvm_enable_cap {
        cap: KVM_CAP_X86_USER_SPACE_MSR,
        args: [u64::from(KVM_MSR_EXIT_REASON_FILTER), 0, 0, 0],
        ..Default::default()
    };
    vm.enable_cap(&cap)
        .map_err(|e| format!("KVM_ENABLE_CAP(X86_USER_SPACE_MSR): {e}"))?;
    // A zero bit denies the access (and so exits to user space).
    let deny_one = [0u8; 1];
    let both = MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE;
    let ranges = [MsrFilterRange {
        flags: both,
        base: MSR_APIC_BASE,
        msr_count: 1,
        bitmap: &deny_one,
    }];
    vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &ranges)
        .map_err(|e| format!("KVM_X86_SET_MSR_FILTER: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_set() {
        for (i, want) in [
            (0x1B, true),
            (0x800, false),
            (0x830, false),
            (0x10, false),
            (0x6E0, false),
        ] {
            assert_eq!(is_forwarded(i), want, "{i:#x}");
        }
    }
}
