//! Exceptions: vectors, error codes, and fault/trap classes
//! (SDM vol. 3, 6.3 and 6.5, Table 6-1 "Protected-Mode Exceptions and Interrupts").

use crate::policy::EventKind;

/// Exception vectors (SDM vol. 3, Table 6-1).
pub mod vector {
    #![allow(missing_docs)]
    pub const DE: u8 = 0;
    pub const DB: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BP: u8 = 3;
    pub const OF: u8 = 4;
    pub const BR: u8 = 5;
    pub const UD: u8 = 6;
    pub const NM: u8 = 7;
    pub const DF: u8 = 8;
    pub const TS: u8 = 10;
    pub const NP: u8 = 11;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
    pub const MF: u8 = 16;
    pub const AC: u8 = 17;
    pub const MC: u8 = 18;
    pub const XM: u8 = 19;
}

/// How an exception is reported (SDM vol. 3, 6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExceptionClass {
    /// Saved RIP points at the faulting instruction; state as before it.
    Fault,
    /// Saved RIP points after the trapping instruction.
    Trap,
    /// No reliable restart (#DF, #MC).
    Abort,
}

/// Benign / contributory / page-fault class for the double-fault rules
/// (SDM vol. 3, 6.15 "Interrupt 8", Tables 6-4 and 6-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Benign exceptions and interrupts.
    Benign,
    /// #DE, #TS, #NP, #SS, #GP.
    Contributory,
    /// #PF.
    PageFault,
    /// #DF itself.
    DoubleFault,
}

/// An exception raised while executing or delivering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    /// Vector 0-31.
    pub vector: u8,
    /// The error code pushed with it, if this vector has one.
    pub error_code: Option<u32>,
    /// For #PF: the faulting linear address (becomes CR2).
    pub cr2: Option<u64>,
}

impl Exception {
    /// An exception without error code.
    pub const fn new(vector: u8) -> Self {
        Self {
            vector,
            error_code: None,
            cr2: None,
        }
    }

    /// An exception with an error code.
    pub const fn with_code(vector: u8, code: u32) -> Self {
        Self {
            vector,
            error_code: Some(code),
            cr2: None,
        }
    }

    /// #UD.
    pub const fn ud() -> Self {
        Self::new(vector::UD)
    }

    /// #GP(code).
    pub const fn gp(code: u32) -> Self {
        Self::with_code(vector::GP, code)
    }

    /// #SS(code).
    pub const fn ss(code: u32) -> Self {
        Self::with_code(vector::SS, code)
    }

    /// #DE.
    pub const fn de() -> Self {
        Self::new(vector::DE)
    }

    /// #PF with its error code and CR2.
    pub const fn pf(linear: u64, code: u32) -> Self {
        Self {
            vector: vector::PF,
            error_code: Some(code),
            cr2: Some(linear),
        }
    }

    /// Fault, trap or abort (SDM vol. 3, Table 6-1). #DB is a fault for
    /// instruction breakpoints and a trap otherwise; the engine raises it only
    /// as a trap (single-step), so it is classed as a trap here. #BP and #OF
    /// are traps.
    pub fn class(&self) -> ExceptionClass {
        match self.vector {
            vector::DB | vector::BP | vector::OF => ExceptionClass::Trap,
            vector::DF | vector::MC => ExceptionClass::Abort,
            _ => ExceptionClass::Fault,
        }
    }

    /// Double-fault class of `vector` (SDM vol. 3, Table 6-4).
    pub fn severity(vector: u8) -> Severity {
        match vector {
            0 | 10..=13 => Severity::Contributory,
            vector::PF => Severity::PageFault,
            vector::DF => Severity::DoubleFault,
            _ => Severity::Benign,
        }
    }

    /// Whether a second exception while delivering `first` becomes #DF
    /// (SDM vol. 3, Table 6-5).
    pub fn makes_double_fault(first: u8, second: u8) -> bool {
        use Severity::*;
        matches!(
            (Self::severity(first), Self::severity(second)),
            (Contributory, Contributory) | (PageFault, Contributory) | (PageFault, PageFault)
        )
    }

    /// Whether `vector` pushes an error code in protected mode
    /// (SDM vol. 3, Table 6-1: #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP).
    pub fn has_error_code(vector: u8) -> bool {
        matches!(vector, 8 | 10..=14 | 17 | 21)
    }
}

/// Whether the RFLAGS image saved when the processor itself raises
/// exception `vector` has RF = 1 (SDM vol. 3, 17.3.1.1 "Instruction-Breakpoint
/// Exception Condition"): yes for every fault-class exception; #DB is never
/// included, since its only fault (the instruction breakpoint) keeps RF as
/// it is; traps (#BP, #OF, data-breakpoint and single-step #DB) and aborts
/// (#DF, #MC) push RF as it is in RFLAGS.
pub fn pushes_rf(vector: u8) -> bool {
    Exception::new(vector).class() == ExceptionClass::Fault
}

/// Why an instruction stopped without completing: an architectural exception
/// to deliver, or an event the caller must see first (state untouched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Deliver (or intercept) this exception.
    Exception(Exception),
    /// Leave the engine with this event; the instruction did not execute.
    Event(EventKind),
}

impl From<Exception> for Fault {
    fn from(e: Exception) -> Self {
        Fault::Exception(e)
    }
}

/// Shorthand result type of every operation.
pub type OpResult<T = ()> = Result<T, Fault>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let t = [
            (vector::DE, ExceptionClass::Fault),
            (vector::DB, ExceptionClass::Trap),
            (vector::BP, ExceptionClass::Trap),
            (vector::OF, ExceptionClass::Trap),
            (vector::UD, ExceptionClass::Fault),
            (vector::DF, ExceptionClass::Abort),
            (vector::GP, ExceptionClass::Fault),
            (vector::PF, ExceptionClass::Fault),
            (vector::MC, ExceptionClass::Abort),
        ];
        for (v, c) in t {
            assert_eq!(Exception::new(v).class(), c, "vector {v}");
        }
    }

    #[test]
    fn double_fault_table() {
        let t = [
            (vector::DE, vector::GP, true),
            (vector::GP, vector::PF, false),
            (vector::PF, vector::GP, true),
            (vector::PF, vector::PF, true),
            (vector::UD, vector::GP, false),
            (vector::NP, vector::TS, true),
            (vector::BP, vector::PF, false),
        ];
        for (a, b, want) in t {
            assert_eq!(Exception::makes_double_fault(a, b), want, "{a} then {b}");
        }
    }

    #[test]
    fn pushed_rf_by_vector() {
        let t = [
            (vector::DE, true),
            (vector::DB, false),
            (vector::BP, false),
            (vector::OF, false),
            (vector::BR, true),
            (vector::UD, true),
            (vector::NM, true),
            (vector::DF, false),
            (vector::TS, true),
            (vector::NP, true),
            (vector::SS, true),
            (vector::GP, true),
            (vector::PF, true),
            (vector::MF, true),
            (vector::AC, true),
            (vector::MC, false),
            (vector::XM, true),
        ];
        for (v, want) in t {
            assert_eq!(pushes_rf(v), want, "vector {v}");
        }
    }

    #[test]
    fn error_codes() {
        for v in 0..32u8 {
            let want = matches!(v, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21);
            assert_eq!(Exception::has_error_code(v), want, "vector {v}");
        }
    }
}
