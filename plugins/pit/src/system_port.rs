//! System control port B at 0x61 (IBM PC AT Technical Reference, "System
//! Board", port 061h): the 8254 counter 2 gate and speaker enable, and
//! read-back of counter 2's OUT and of the refresh-detect toggle.
//!
//! Bits (write): 0 = counter 2 GATE, 1 = speaker data enable, 2 = RAM
//! parity check enable (active low), 3 = I/O channel check enable (active
//! low). Bits (read): 0-3 as written, 4 = refresh detect (toggles), 5 =
//! counter 2 OUT, 6 = I/O channel check, 7 = RAM parity check (never set here).

/// The port's address.
pub const PORT: u16 = 0x61;
/// The bits a write sets.
pub const WRITABLE: u8 = 0x0f;
/// Bit 0: counter 2 GATE.
pub const GATE2: u8 = 1 << 0;
/// Bit 1: speaker data enable.
pub const SPEAKER: u8 = 1 << 1;
/// Bit 4: refresh detect.
pub const REFRESH: u8 = 1 << 4;
/// Bit 5: counter 2 OUT.
pub const OUT2: u8 = 1 << 5;

/// Port B state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SystemPort {
    /// Bits 0-3 as last written.
    pub control: u8,
    /// Refresh-detect level returned by the next read.
    pub refresh: bool,
}

impl SystemPort {
    /// Counter 2's GATE input.
    pub fn gate2(&self) -> bool {
        self.control & GATE2 != 0
    }

    /// A write: only bits 0-3 are stored.
    pub fn write(&mut self, value: u8) {
        self.control = value & WRITABLE;
    }

    /// A read, given counter 2's OUT. On a PC bit 4 follows the DRAM refresh
    /// cycle (counter 1, every 15.085 us); here it flips on every read, so
    /// that BIOS-style loops which wait for N transitions of it end whatever
    /// the pace of the virtual clock.
    pub fn read(&mut self, out2: bool) -> u8 {
        let mut v = self.control;
        if self.refresh {
            v |= REFRESH;
        }
        if out2 {
            v |= OUT2;
        }
        self.refresh = !self.refresh;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits() {
        let mut p = SystemPort::default();
        p.write(0xff);
        assert_eq!(p.control, 0x0f);
        assert!(p.gate2());
        assert_eq!(p.read(false), 0x0f);
        assert_eq!(p.read(true), 0x0f | REFRESH | OUT2);
        assert_eq!(p.read(true), 0x0f | OUT2);
        p.write(SPEAKER);
        assert!(!p.gate2());
        assert_eq!(p.read(false), SPEAKER | REFRESH);
    }
}
