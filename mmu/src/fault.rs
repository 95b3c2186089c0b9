//! Translation failures: guest page faults with their exact error code, and
//! second-level (EPT/NPT) faults.

use crate::phys::PhysError;

bitflags::bitflags! {
    /// The #PF error code (SDM vol. 3, 4.7 "Page-Fault Exceptions", Figure 4-12;
    /// APM vol. 2, 8.4.2 "Page-Fault Error Code").
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct PfErrorCode: u32 {
        /// P: 0 = non-present page, 1 = protection violation.
        const PRESENT = 1 << 0;
        /// W/R: the access was a write.
        const WRITE = 1 << 1;
        /// U/S: the access was a user-mode access.
        const USER = 1 << 2;
        /// RSVD: a reserved bit was set in a paging-structure entry.
        const RSVD = 1 << 3;
        /// I/D: the access was an instruction fetch (when NX or SMEP is enabled).
        const FETCH = 1 << 4;
        /// PK: protection-key violation.
        const PK = 1 << 5;
        /// SS: shadow-stack access.
        const SHADOW_STACK = 1 << 6;
    }
}

/// A guest page fault: what the guest sees as #PF, with CR2 = `linear`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageFault {
    /// The faulting linear address (goes to CR2).
    pub linear: u64,
    /// The error code pushed with #PF.
    pub error_code: PfErrorCode,
}

/// Which second-level format faulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NestedKind {
    /// EPT violation (SDM vol. 3, 29.3.3.2); `info` is the exit qualification.
    EptViolation,
    /// EPT misconfiguration (SDM vol. 3, 29.3.3.1); `info` is 0.
    EptMisconfig,
    /// Nested page fault (APM vol. 2, 15.25.6); `info` is EXITINFO1.
    Npf,
}

/// A second-level translation fault: a VM exit for the hypervisor, not a guest #PF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NestedFault {
    /// EPT violation, EPT misconfiguration, or NPF.
    pub kind: NestedKind,
    /// The guest-physical address that faulted (EXITINFO2 / guest-physical address field).
    pub gpa: u64,
    /// The guest-linear address, when the access had one (SDM: "guest linear address valid").
    pub linear: Option<u64>,
    /// Exit qualification (EPT) or EXITINFO1 (NPF), encoded as the manuals define.
    pub info: u64,
}

/// Why a walk did not produce a translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WalkError {
    /// The guest's own tables say no: deliver #PF to the guest.
    PageFault(PageFault),
    /// Reading or updating a paging-structure entry failed at the physical level
    /// (unbacked memory, or a second-level fault while reading the guest's tables).
    Phys(PhysError),
}

impl From<PageFault> for WalkError {
    fn from(f: PageFault) -> Self {
        WalkError::PageFault(f)
    }
}

impl From<PhysError> for WalkError {
    fn from(e: PhysError) -> Self {
        WalkError::Phys(e)
    }
}
