//! The control area a new vCPU starts with: the intercepts kvm-amd sets for
//! its guests (APM vol. 2, appendix B, Table B-1), for shadow or nested
//! paging.

use crate::intercept::*;
use crate::permmap::{Iopm, Msrpm};
use crate::vmcb::{field, Vmcb};

/// Guest-physical address the model reports for the IOPM (the permission
/// maps live in the backend, not in guest memory; the VMCB still names a
/// page-aligned base as hardware requires).
pub const IOPM_BASE: u64 = 0x000f_fd00_0000;
/// Reported base of the MSRPM.
pub const MSRPM_BASE: u64 = 0x000f_fd00_4000;
/// Reported nCR3 of the host-built nested tables.
pub const N_CR3_BASE: u64 = 0x000f_fe00_0000;

/// #PF (vector 14): intercepted under shadow paging.
const EXCP_PF: u32 = 1 << 14;
/// #MC (vector 18): always intercepted, as kvm-amd does.
const EXCP_MC: u32 = 1 << 18;

/// Writes the initial intercepts and control fields of vCPU `id`.
pub fn init_control(v: &mut Vmcb, id: u32, nested: bool) {
    // Shadow paging must see every CR0/CR3/CR4 access; nested paging lets the
    // guest own its paging registers (CR0 writes stay visible through the
    // selective CR0-write intercept).
    let cr = if nested {
        0
    } else {
        let rw = (1 << 0) | (1 << 3) | (1 << 4);
        rw | (rw << 16)
    };
    v.set(field::INTERCEPT_CR, cr);
    v.set(field::INTERCEPT_DR, 0);
    v.set(
        field::INTERCEPT_EXCEPTIONS,
        u64::from(EXCP_MC | if nested { 0 } else { EXCP_PF }),
    );
    let mut misc1 = MISC1_INTR
        | MISC1_NMI
        | MISC1_SMI
        | MISC1_INIT
        | MISC1_CPUID
        | MISC1_INVD
        | MISC1_HLT
        | MISC1_INVLPGA
        | MISC1_IOIO_PROT
        | MISC1_MSR_PROT
        | MISC1_TASK_SWITCH
        | MISC1_FERR_FREEZE
        | MISC1_SHUTDOWN;
    if nested {
        misc1 |= MISC1_CR0_SEL_WRITE;
    } else {
        misc1 |= MISC1_INVLPG;
    }
    v.set(field::INTERCEPT_MISC1, u64::from(misc1));
    v.set(
        field::INTERCEPT_MISC2,
        u64::from(
            MISC2_VMRUN
                | MISC2_VMMCALL
                | MISC2_VMLOAD
                | MISC2_VMSAVE
                | MISC2_STGI
                | MISC2_CLGI
                | MISC2_SKINIT
                | MISC2_WBINVD
                | MISC2_MONITOR
                | MISC2_MWAIT
                | MISC2_MWAIT_CONDITIONAL
                | MISC2_XSETBV,
        ),
    );
    v.set(field::IOPM_BASE_PA, IOPM_BASE);
    v.set(field::MSRPM_BASE_PA, MSRPM_BASE);
    v.set(field::TSC_OFFSET, 0);
    // ASID 0 is the host's (APM vol. 2, 15.16): guests start at 1.
    v.set(field::GUEST_ASID, u64::from(id) + 1);
    v.set(field::VINTR, crate::vmcb::field::vintr::V_INTR_MASKING);
    v.set(field::NP_ENABLE, u64::from(nested));
    v.set(field::N_CR3, if nested { N_CR3_BASE } else { 0 });
}

/// The I/O permission map kvm-amd uses: every port intercepted.
pub fn iopm() -> Iopm {
    Iopm::all_intercepted()
}

/// The MSR permission map: every MSR intercepted except the ones the
/// engine keeps entirely in the guest's state (segment bases, SYSCALL and
/// SYSENTER targets, TSC_AUX, PAT), which pass through as in kvm-amd.
pub fn msrpm() -> Msrpm {
    let mut m = Msrpm::all_intercepted();
    for msr in [
        0x174,
        0x175,
        0x176, // SYSENTER_CS/ESP/EIP
        0x277, // PAT
        0xc000_0081,
        0xc000_0082,
        0xc000_0083,
        0xc000_0084, // STAR, LSTAR, CSTAR, SFMASK
        0xc000_0100,
        0xc000_0101,
        0xc000_0102, // FS/GS/KernelGS base
        0xc000_0103, // TSC_AUX
    ] {
        m.set_read(msr, false);
        m.set_write(msr, false);
    }
    m
}
