//! The PC/AT pair of 8259As: master at 0x20/0x21, slave at 0xa0/0xa1, the
//! slave's INT wired to the master's IR2, and the PIIX edge/level control
//! registers (ELCR) at 0x4d0/0x4d1. No host services here: [`crate::Pic`]
//! reports the master's INT to the CPU.

use crate::chip::{bit, Chip};

/// Master command/status port (A0 = 0).
pub const MASTER_CMD: u16 = 0x20;
/// Master data port (A0 = 1).
pub const MASTER_DATA: u16 = 0x21;
/// Slave command/status port (A0 = 0).
pub const SLAVE_CMD: u16 = 0xa0;
/// Slave data port (A0 = 1).
pub const SLAVE_DATA: u16 = 0xa1;
/// ELCR1: edge/level control of IRQ 0-7.
pub const ELCR_MASTER: u16 = 0x4d0;
/// ELCR2: edge/level control of IRQ 8-15.
pub const ELCR_SLAVE: u16 = 0x4d1;
/// The master input the slave's INT drives (PC/AT wiring).
pub const CASCADE_INPUT: u8 = 2;
/// Writable ELCR1 bits: IRQ 0, 1 and 2 are edge only (Intel 82371 PIIX/PIIX3/PIIX4
/// datasheets, "ELCR1 — Edge/Level Control Register 1": bits 2:0 reserved, 0).
pub const ELCR_MASTER_MASK: u8 = 0xf8;
/// Writable ELCR2 bits: IRQ 8 and 13 are edge only (same datasheets, "ELCR2":
/// bits 0 and 5 reserved, 0).
pub const ELCR_SLAVE_MASK: u8 = 0xde;
/// What the data bus reads when no 8259A drives it during an INTA cycle.
pub const OPEN_BUS: u8 = 0xff;

/// Index of the master in [`PicPair::chips`].
pub const MASTER: usize = 0;
/// Index of the slave in [`PicPair::chips`].
pub const SLAVE: usize = 1;

/// What happened on a port write that the device may want to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEvent {
    /// Nothing notable.
    None,
    /// Chip `0` (master) or `1` (slave) completed its initialization sequence.
    Initialized(usize),
}

/// The two 8259As and their wiring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PicPair {
    /// `[master, slave]`.
    pub(crate) chips: [Chip; 2],
}

impl Default for PicPair {
    fn default() -> Self {
        Self::new()
    }
}

impl PicPair {
    /// Both chips in their power-on state, all inputs low.
    pub fn new() -> Self {
        Self {
            chips: [Chip::new(true), Chip::new(false)],
        }
    }

    /// The master.
    pub fn master(&self) -> &Chip {
        &self.chips[MASTER]
    }

    /// The slave.
    pub fn slave(&self) -> &Chip {
        &self.chips[SLAVE]
    }

    /// Power-on state for both chips and the ELCR; input pin levels are kept.
    pub fn reset(&mut self) {
        for c in &mut self.chips {
            c.power_on();
        }
        self.propagate();
    }

    /// Drives ISA IRQ `line` (0-7 master, 8-15 slave). Returns false for a
    /// line the pair has no input for: 16 and up (IOAPIC-only pins) and 2,
    /// which on the PC/AT is the cascade input, not a bus line.
    pub fn set_irq(&mut self, line: u32, level: bool) -> bool {
        match line {
            0..=7 if line != u32::from(CASCADE_INPUT) => {
                self.chips[MASTER].set_line(line as u8, level)
            }
            8..=15 => self.chips[SLAVE].set_line((line - 8) as u8, level),
            _ => return false,
        }
        self.propagate();
        true
    }

    /// The master's INT output: the CPU's INTR input.
    pub fn intr(&self) -> bool {
        self.chips[MASTER].int_output()
    }

    /// Copies the slave's INT output onto the master's IR2 input.
    pub(crate) fn propagate(&mut self) {
        let int = self.chips[SLAVE].int_output();
        self.chips[MASTER].set_line(CASCADE_INPUT, int);
    }

    /// The master's IR2 level must equal the slave's INT output.
    pub(crate) fn cascade_consistent(&self) -> bool {
        let ir2 = self.chips[MASTER].lines & bit(CASCADE_INPUT) != 0;
        ir2 == self.chips[SLAVE].int_output()
    }

    /// The CPU's interrupt-acknowledge cycle (datasheet, "Interrupt
    /// Sequence" and "Cascade Mode"): the master grants its highest request
    /// and, if that input carries a slave (ICW3) whose ID matches, the slave
    /// grants its own and supplies the vector. With no request left a chip
    /// answers with its IR7 vector and sets no ISR bit (the "default IR7");
    /// for a slave the master's IR2 stays in service. A cascade address no
    /// slave answers to leaves the bus undriven ([`OPEN_BUS`]).
    ///
    /// The slave's INT is copied to the master between the ISR bits being set
    /// and the AEOI at the end of the cycle, so a second request held by a
    /// slave in AEOI mode makes a fresh rising edge on IR2, as the pin would.
    pub fn inta(&mut self) -> u8 {
        let [master, slave] = &mut self.chips;
        let Some(n) = master.request() else {
            return master.vector(7);
        };
        master.begin_ack(n);
        let mut slave_level = None;
        let vector = if master.slave_inputs() & bit(n) == 0 {
            master.vector(n)
        } else if slave.slave_id() != n {
            OPEN_BUS
        } else if let Some(m) = slave.request() {
            slave.begin_ack(m);
            slave_level = Some(m);
            slave.vector(m)
        } else {
            slave.vector(7)
        };
        self.propagate();
        self.chips[MASTER].end_ack(n);
        if let Some(m) = slave_level {
            self.chips[SLAVE].end_ack(m);
        }
        self.propagate();
        vector
    }

    /// A byte read at `port`; `None` if the pair does not decode it.
    pub fn read(&mut self, port: u16) -> Option<u8> {
        let v = match port {
            MASTER_CMD => self.chips[MASTER].read(false),
            MASTER_DATA => self.chips[MASTER].read(true),
            SLAVE_CMD => self.chips[SLAVE].read(false),
            SLAVE_DATA => self.chips[SLAVE].read(true),
            ELCR_MASTER => self.chips[MASTER].elcr,
            ELCR_SLAVE => self.chips[SLAVE].elcr,
            _ => return None,
        };
        // A poll read acknowledges; the slave's INT may have changed.
        self.propagate();
        Some(v)
    }

    /// A byte write at `port` (ignored if the pair does not decode it).
    pub fn write(&mut self, port: u16, v: u8) -> WriteEvent {
        let mut event = WriteEvent::None;
        match port {
            MASTER_CMD => self.chips[MASTER].write_command(v),
            SLAVE_CMD => self.chips[SLAVE].write_command(v),
            MASTER_DATA | SLAVE_DATA => {
                let i = if port == MASTER_DATA { MASTER } else { SLAVE };
                if self.chips[i].write_data(v) {
                    event = WriteEvent::Initialized(i);
                }
            }
            ELCR_MASTER => self.chips[MASTER].write_elcr(v, ELCR_MASTER_MASK),
            ELCR_SLAVE => self.chips[SLAVE].write_elcr(v, ELCR_SLAVE_MASK),
            _ => {}
        }
        self.propagate();
        event
    }
}
