//! What kind of memory access is being translated.

/// Read, write, or instruction fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessKind {
    /// A data read.
    Read,
    /// A data write (including the write half of a read-modify-write).
    Write,
    /// An instruction fetch.
    Execute,
}

/// One access to translate: its kind and the privilege it is made with.
///
/// SDM vol. 3, 4.6 "Access Rights": an access is a *user-mode* access when
/// CPL = 3 and it is not an implicit supervisor-mode access; implicit
/// supervisor-mode accesses (descriptor-table and TSS reads, the shadow
/// stack of a privilege change) are supervisor accesses whatever the CPL,
/// and SMAP applies to them regardless of EFLAGS.AC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Access {
    /// Read, write or fetch.
    pub kind: AccessKind,
    /// Current privilege level (0-3) of the access.
    pub cpl: u8,
    /// An implicit supervisor-mode access (GDT/LDT/IDT/TSS), see above.
    pub implicit_supervisor: bool,
}

impl Access {
    /// An explicit access at `cpl`.
    pub const fn new(kind: AccessKind, cpl: u8) -> Self {
        Self {
            kind,
            cpl,
            implicit_supervisor: false,
        }
    }

    /// An implicit supervisor-mode access (descriptor tables, TSS).
    pub const fn implicit(kind: AccessKind) -> Self {
        Self {
            kind,
            cpl: 0,
            implicit_supervisor: true,
        }
    }

    /// Whether the SDM calls this a user-mode access (CPL 3, not implicit).
    pub const fn is_user(&self) -> bool {
        self.cpl == 3 && !self.implicit_supervisor
    }
}
