//! How a VM run ends, and the process exit status for each ending.

/// Why the VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// ACPI S5 (or the backend's power-off event): exit status 0.
    PowerOff,
    /// A device (debug-exit) ended the VM with `status`.
    DeviceExit {
        /// Process exit status requested.
        status: i32,
        /// Who and why.
        reason: String,
    },
    /// The guest reset the machine (i8042 pulse reset, backend reset event).
    /// There is no firmware to reboot into, so the VM ends here.
    Reset {
        /// Who and why.
        reason: String,
    },
    /// The guest triple-faulted (shutdown).
    TripleFault {
        /// Register dump at the shutdown.
        dump: String,
    },
    /// The guest stopped in a way it cannot recover from (HLT with
    /// interrupts off, entry failure, backend internal error).
    GuestStopped {
        /// What happened.
        what: String,
        /// Register dump.
        dump: String,
    },
}

/// Process exit status for a triple fault. Even, so it never collides with
/// debug-exit's odd statuses, and not 2 (command-line usage errors).
pub const EXIT_TRIPLE_FAULT: i32 = 4;
/// Process exit status for other guest stops.
pub const EXIT_GUEST_STOPPED: i32 = 6;
/// Process exit status for host-side errors (bad input, missing plugins, a
/// failing plugin): 125, as tools that run something else use for "the tool
/// itself failed", clear of debug-exit's `(V << 1) | 1`.
pub const EXIT_HOST_ERROR: i32 = 125;

impl Outcome {
    /// The status the `hyperplug` process exits with.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::PowerOff | Outcome::Reset { .. } => 0,
            Outcome::DeviceExit { status, .. } => *status & 0xff,
            Outcome::TripleFault { .. } => EXIT_TRIPLE_FAULT,
            Outcome::GuestStopped { .. } => EXIT_GUEST_STOPPED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let s = |o: Outcome| o.exit_code();
        assert_eq!(s(Outcome::PowerOff), 0);
        assert_eq!(
            s(Outcome::Reset {
                reason: String::new()
            }),
            0
        );
        assert_eq!(
            s(Outcome::DeviceExit {
                status: 0x21,
                reason: String::new()
            }),
            0x21
        );
        assert_eq!(
            s(Outcome::DeviceExit {
                status: 0x1ff,
                reason: String::new()
            }),
            0xff
        );
        assert_eq!(
            s(Outcome::TripleFault {
                dump: String::new()
            }),
            4
        );
        assert_eq!(
            s(Outcome::GuestStopped {
                what: String::new(),
                dump: String::new()
            }),
            6
        );
    }
}
