//! The two vCPU ioctls kvm-ioctls does not wrap the way this backend needs them.

use kvm_bindings::kvm_interrupt;

/// KVM's ioctl type byte (`KVMIO`).
const KVMIO: u32 = 0xAE;

/// Linux `_IOC(dir, type, nr, size)`: dir in bits 31:30, size in 29:16,
/// type in 15:8, number in 7:0 (`include/uapi/asm-generic/ioctl.h`).
const fn ioc(dir: u32, nr: u32, size: usize) -> libc::c_ulong {
    ((dir << 30) | ((size as u32) << 16) | (KVMIO << 8) | nr) as libc::c_ulong
}

/// `KVM_RUN` = `_IO(KVMIO, 0x80)`.
pub const KVM_RUN: libc::c_ulong = ioc(0, 0x80, 0);

/// `KVM_INTERRUPT` = `_IOW(KVMIO, 0x86, struct kvm_interrupt)`.
pub const KVM_INTERRUPT: libc::c_ulong = ioc(1, 0x86, std::mem::size_of::<kvm_interrupt>());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux() {
        assert_eq!(KVM_RUN, 0xAE80);
        assert_eq!(KVM_INTERRUPT, 0x4004_AE86);
    }
}
