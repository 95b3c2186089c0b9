//! One Intel 8259A programmable interrupt controller: its registers, the
//! initialization sequence, the operation commands and the priority resolver.
//!
//! References are to the Intel 8259A datasheet (order number 231468), by
//! section title. The pair, the cascade wiring and the ELCR live in
//! [`crate::pair`].

/// The bit for interrupt level `n` (0-7) in an 8-bit register.
pub fn bit(n: u8) -> u8 {
    1 << (n & 7)
}

/// Where a chip is in its initialization sequence (datasheet, "Initialization
/// Command Words", Figure 6 "Initialization Sequence"): after ICW1 the chip
/// takes ICW2, then ICW3 only in cascade mode (SNGL = 0), then ICW4 only if
/// ICW1 asked for it (IC4 = 1). Until then, writes with A0 = 1 are ICWs, not OCW1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitStep {
    /// Initialized: A0 = 1 writes go to the IMR (OCW1).
    Ready = 0,
    /// The next A0 = 1 write is ICW2.
    Icw2 = 1,
    /// The next A0 = 1 write is ICW3.
    Icw3 = 2,
    /// The next A0 = 1 write is ICW4.
    Icw4 = 3,
}

impl InitStep {
    /// The step encoded as `v` by [`InitStep`] `as u8`, if valid.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Ready),
            1 => Some(Self::Icw2),
            2 => Some(Self::Icw3),
            3 => Some(Self::Icw4),
            _ => None,
        }
    }
}

/// ICW1 bit 0 (IC4): ICW4 will be written (datasheet, "ICW1").
pub const ICW1_IC4: u8 = 1 << 0;
/// ICW1 bit 1 (SNGL): single 8259A, no ICW3.
pub const ICW1_SNGL: u8 = 1 << 1;
/// ICW1 bit 3 (LTIM): level-triggered mode for every input.
pub const ICW1_LTIM: u8 = 1 << 3;
/// ICW1 bit 4: marks a write with A0 = 0 as ICW1 rather than an OCW.
pub const ICW1_SELECT: u8 = 1 << 4;
/// ICW4 bit 0 (µPM): 8086/8088 mode (vector = T7-T3 of ICW2 and the level).
pub const ICW4_8086: u8 = 1 << 0;
/// ICW4 bit 1 (AEOI): automatic end of interrupt (datasheet, "Automatic End of Interrupt (AEOI) Mode").
pub const ICW4_AEOI: u8 = 1 << 1;
/// ICW4 bit 4 (SFNM): special fully nested mode (datasheet, "The Special Fully Nested Mode").
pub const ICW4_SFNM: u8 = 1 << 4;
/// The ICW4 bits the 8259A defines (D7-D5 are 0).
pub const ICW4_DEFINED: u8 = 0x1f;
/// OCW3 D3 = 1 (with D4 = 0) marks a write with A0 = 0 as OCW3 (datasheet, "OCW3").
pub const OCW3_SELECT: u8 = 1 << 3;

/// One 8259A.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chip {
    /// Whether this is the master (its ICW3 is a bitmap of slave-bearing inputs)
    /// or the slave (its ICW3 holds its ID). Fixed by the wiring; not saved.
    pub(crate) is_master: bool,
    /// Interrupt request register.
    pub(crate) irr: u8,
    /// In-service register.
    pub(crate) isr: u8,
    /// Interrupt mask register (OCW1).
    pub(crate) imr: u8,
    /// Current levels of the IR0-IR7 input pins.
    pub(crate) lines: u8,
    /// Level-triggered inputs selected through the chipset's ELCR.
    pub(crate) elcr: u8,
    /// ICW1 LTIM: every input level-triggered.
    pub(crate) ltim: bool,
    /// ICW1 SNGL: no cascade.
    pub(crate) single: bool,
    /// ICW1 IC4: ICW4 is part of the sequence.
    pub(crate) ic4: bool,
    /// ICW2: T7-T3 of the vector in 8086 mode.
    pub(crate) icw2: u8,
    /// ICW3: slave-bearing inputs (master) or slave ID (slave).
    pub(crate) icw3: u8,
    /// ICW4 (D4-D0).
    pub(crate) icw4: u8,
    /// The level with the lowest priority; `lowest + 1` (mod 8) is the highest.
    pub(crate) lowest: u8,
    /// Position in the initialization sequence.
    pub(crate) init: InitStep,
    /// OCW3 RIS: reads with A0 = 0 return the ISR (else the IRR).
    pub(crate) read_isr: bool,
    /// OCW3 P: the next read is a poll.
    pub(crate) poll: bool,
    /// OCW3 SMM: special mask mode.
    pub(crate) special_mask: bool,
    /// OCW2 "rotate in automatic EOI mode" is set.
    pub(crate) rotate_aeoi: bool,
}

impl Chip {
    /// A chip in its power-on state (see [`Chip::power_on`]).
    pub fn new(is_master: bool) -> Self {
        Self {
            is_master,
            ..Self::blank()
        }
    }

    /// Power-on state. The 8259A has no reset input and the datasheet leaves
    /// its power-on state undefined; we use what ICW1 establishes (datasheet,
    /// "Initialization Command Words": edge sense reset, IMR cleared, IR7
    /// lowest priority, special mask mode cleared, status read set to IRR,
    /// ICW4 functions zero), with ICW2/ICW3 zero, the ELCR zero (the PIIX
    /// default) and the sequence complete so the IMR is writable. The input
    /// pin levels are outside the chip and are kept.
    pub fn power_on(&mut self) {
        let lines = self.lines;
        *self = Self {
            is_master: self.is_master,
            lines,
            ..Self::blank()
        };
    }

    fn blank() -> Self {
        Self {
            is_master: false,
            irr: 0,
            isr: 0,
            imr: 0,
            lines: 0,
            elcr: 0,
            ltim: false,
            single: false,
            ic4: false,
            icw2: 0,
            icw3: 0,
            icw4: 0,
            lowest: 7,
            init: InitStep::Ready,
            read_isr: false,
            poll: false,
            special_mask: false,
            rotate_aeoi: false,
        }
    }

    /// The interrupt request register.
    pub fn irr(&self) -> u8 {
        self.irr
    }
    /// The in-service register.
    pub fn isr(&self) -> u8 {
        self.isr
    }
    /// The interrupt mask register.
    pub fn imr(&self) -> u8 {
        self.imr
    }
    /// The vector base: T7-T3 of ICW2 (datasheet, "ICW2", 8086 mode).
    pub fn vector_base(&self) -> u8 {
        self.icw2 & 0xf8
    }
    /// The vector for level `n` in 8086 mode (datasheet, "Interrupt Sequence Outputs", 8086: T7-T3 then the level).
    pub fn vector(&self, n: u8) -> u8 {
        self.vector_base() | (n & 7)
    }
    /// Whether initialization has finished (A0 = 1 writes go to the IMR).
    pub fn initialized(&self) -> bool {
        self.init == InitStep::Ready
    }
    /// Whether ICW4 selected 8086 mode (µPM = 1).
    pub fn mode_8086(&self) -> bool {
        self.icw4 & ICW4_8086 != 0
    }
    /// Inputs in level-triggered mode: all with ICW1 LTIM, else the ELCR's
    /// (datasheet, "Edge and Level Triggered Modes"; PIIX ELCR1/ELCR2).
    pub fn level_mode(&self) -> u8 {
        if self.ltim {
            0xff
        } else {
            self.elcr
        }
    }
    /// Master only: the inputs that carry a slave (ICW3 in cascade mode).
    pub fn slave_inputs(&self) -> u8 {
        if self.is_master && !self.single {
            self.icw3
        } else {
            0
        }
    }
    /// Slave only: the ID from ICW3 (ID2-ID0) it answers to on CAS0-CAS2.
    pub fn slave_id(&self) -> u8 {
        self.icw3 & 7
    }

    /// Priority rank of level `n`: 0 is the highest. The level after
    /// `lowest` has the highest priority (datasheet, "Fully Nested Mode",
    /// "Automatic Rotation" and "Specific Rotation").
    pub fn rank(&self, n: u8) -> u8 {
        n.wrapping_sub(self.lowest).wrapping_sub(1) & 7
    }

    /// The highest-priority level set in `mask`.
    pub fn highest(&self, mask: u8) -> Option<u8> {
        (1..=8u8)
            .map(|i| self.lowest.wrapping_add(i) & 7)
            .find(|&n| mask & bit(n) != 0)
    }

    /// Sets the level of input IR`n`. Edge mode: a rising edge sets the IRR
    /// bit, which stays set when the input falls (the host's edge devices
    /// pulse their line). Level mode: the IRR bit follows the input, so a
    /// request removed before the acknowledge is gone (datasheet, "Edge and
    /// Level Triggered Modes").
    pub fn set_line(&mut self, n: u8, level: bool) {
        let b = bit(n);
        let rising = level && self.lines & b == 0;
        if level {
            self.lines |= b;
        } else {
            self.lines &= !b;
        }
        if self.level_mode() & b != 0 {
            self.irr = (self.irr & !b) | (self.lines & b);
        } else if rising {
            self.irr |= b;
        }
    }

    /// Writes the ELCR bits allowed by `mask`. Inputs that become
    /// level-triggered take the level of their pin into the IRR at once.
    pub fn write_elcr(&mut self, value: u8, mask: u8) {
        self.elcr = value & mask;
        self.resync_level_irr();
    }

    fn resync_level_irr(&mut self) {
        let lvl = self.level_mode();
        self.irr = (self.irr & !lvl) | (self.lines & lvl);
    }

    /// The request the priority resolver would present on INT, if any
    /// (datasheet, "Interrupt Sequence", "Fully Nested Mode", "Special Mask
    /// Mode", "The Special Fully Nested Mode"): the highest-priority unmasked
    /// IRR bit, if it has a higher priority than the highest in-service level.
    /// In special mask mode in-service levels that are masked do not inhibit
    /// anything. In special fully nested mode (master) a slave-bearing input
    /// that is in service still accepts a new request from its slave.
    pub fn request(&self) -> Option<u8> {
        let best = self.highest(self.irr & !self.imr)?;
        let blocking = if self.special_mask {
            self.isr & !self.imr
        } else {
            self.isr
        };
        match self.highest(blocking) {
            None => Some(best),
            Some(top) if self.rank(best) < self.rank(top) => Some(best),
            Some(top)
                if top == best
                    && self.icw4 & ICW4_SFNM != 0
                    && self.slave_inputs() & bit(best) != 0 =>
            {
                Some(best)
            }
            Some(_) => None,
        }
    }

    /// The INT output.
    pub fn int_output(&self) -> bool {
        self.request().is_some()
    }

    /// First part of an acknowledge of level `n`: the ISR bit is set and the
    /// IRR bit reset (datasheet, "Interrupt Sequence", steps 4-5). A
    /// level-triggered IRR bit keeps following its input, so it is set again
    /// at once while the input stays high.
    pub fn begin_ack(&mut self, n: u8) {
        let b = bit(n);
        self.isr |= b;
        self.irr &= !b;
        self.resync_level_irr();
    }

    /// Trailing edge of the last INTA pulse for level `n`: in AEOI mode the
    /// chip performs the EOI itself, rotating first if "rotate in automatic
    /// EOI mode" is set (datasheet, "Automatic End of Interrupt (AEOI)
    /// Mode", "Automatic Rotation"). The level just acknowledged is the one
    /// cleared: it outranked every other in-service level when granted.
    pub fn end_ack(&mut self, n: u8) {
        if self.icw4 & ICW4_AEOI != 0 {
            self.isr &= !bit(n);
            if self.rotate_aeoi {
                self.lowest = n & 7;
            }
        }
    }

    /// A whole acknowledge on this chip alone: the granted level, or `None`
    /// when no request survives (the caller then supplies the IR7 vector
    /// and no ISR bit is set: datasheet, "Interrupt Sequence", default IR7).
    pub fn inta(&mut self) -> Option<u8> {
        let n = self.request()?;
        self.begin_ack(n);
        self.end_ack(n);
        Some(n)
    }

    /// A write with A0 = 0: ICW1 (D4 = 1), OCW3 (D4 = 0, D3 = 1) or OCW2.
    pub fn write_command(&mut self, v: u8) {
        if v & ICW1_SELECT != 0 {
            self.icw1(v);
        } else if v & OCW3_SELECT != 0 {
            self.ocw3(v);
        } else {
            self.ocw2(v);
        }
    }

    /// A write with A0 = 1: the next ICW of the sequence, else OCW1 (IMR).
    /// Returns true when this write completed the initialization sequence.
    pub fn write_data(&mut self, v: u8) -> bool {
        match self.init {
            InitStep::Ready => {
                self.imr = v;
                return false;
            }
            InitStep::Icw2 => {
                self.icw2 = v;
                self.init = if !self.single {
                    InitStep::Icw3
                } else if self.ic4 {
                    InitStep::Icw4
                } else {
                    InitStep::Ready
                };
            }
            InitStep::Icw3 => {
                self.icw3 = v;
                self.init = if self.ic4 {
                    InitStep::Icw4
                } else {
                    InitStep::Ready
                };
            }
            InitStep::Icw4 => {
                self.icw4 = v & ICW4_DEFINED;
                self.init = InitStep::Ready;
            }
        }
        self.init == InitStep::Ready
    }

    /// ICW1 (datasheet, "Initialization Command Words"): the edge sense
    /// circuit is reset (edge-triggered inputs need a new low-to-high
    /// transition), the IMR is cleared, IR7 gets the lowest priority, the
    /// slave address is set to 7, special mask mode is cleared, status read
    /// selects the IRR, and without IC4 the ICW4 functions are zero. The
    /// datasheet does not say what happens to the ISR; we clear it, so stale
    /// in-service levels from before a re-initialization cannot block
    /// interrupts forever. A pending poll and "rotate in AEOI" are cleared too.
    fn icw1(&mut self, v: u8) {
        self.ltim = v & ICW1_LTIM != 0;
        self.single = v & ICW1_SNGL != 0;
        self.ic4 = v & ICW1_IC4 != 0;
        self.irr = 0;
        self.resync_level_irr();
        self.isr = 0;
        self.imr = 0;
        self.lowest = 7;
        self.icw3 = 7;
        self.special_mask = false;
        self.read_isr = false;
        self.poll = false;
        self.rotate_aeoi = false;
        if !self.ic4 {
            self.icw4 = 0;
        }
        self.init = InitStep::Icw2;
    }

    /// OCW2 (datasheet, "Operation Command Words", OCW2 table): R, SL, EOI
    /// in D7-D5, the level L2-L0 in D2-D0.
    fn ocw2(&mut self, v: u8) {
        let level = v & 7;
        match v >> 5 {
            // Non-specific EOI: reset the highest-priority ISR bit.
            0b001 => {
                if let Some(n) = self.highest(self.isr) {
                    self.isr &= !bit(n);
                }
            }
            // Specific EOI.
            0b011 => self.isr &= !bit(level),
            // Rotate on non-specific EOI: the level served becomes lowest.
            0b101 => {
                if let Some(n) = self.highest(self.isr) {
                    self.isr &= !bit(n);
                    self.lowest = n;
                }
            }
            // Rotate in automatic EOI mode: set / clear.
            0b100 => self.rotate_aeoi = true,
            0b000 => self.rotate_aeoi = false,
            // Rotate on specific EOI.
            0b111 => {
                self.isr &= !bit(level);
                self.lowest = level;
            }
            // Set priority command: L becomes the lowest.
            0b110 => self.lowest = level,
            // 0b010: no operation.
            _ => {}
        }
    }

    /// OCW3 (datasheet, "Operation Command Words", OCW3): ESMM/SMM in D6-D5,
    /// P in D2, RR/RIS in D1-D0.
    fn ocw3(&mut self, v: u8) {
        if v & 0x40 != 0 {
            self.special_mask = v & 0x20 != 0;
        }
        if v & 0x04 != 0 {
            self.poll = true;
        }
        if v & 0x02 != 0 {
            self.read_isr = v & 0x01 != 0;
        }
    }

    /// A read. After a poll command the read is the poll itself, whatever A0
    /// (datasheet, "The Poll Command": the next RD pulse is treated as an
    /// interrupt acknowledge); the poll word is I (D7) and the level W2-W0.
    /// Otherwise A0 = 0 reads the IRR or ISR as OCW3 selected and A0 = 1 the
    /// IMR (datasheet, "Reading the 8259A Status").
    pub fn read(&mut self, a0: bool) -> u8 {
        if self.poll {
            self.poll = false;
            return match self.inta() {
                Some(n) => 0x80 | n,
                None => 0,
            };
        }
        match (a0, self.read_isr) {
            (true, _) => self.imr,
            (false, true) => self.isr,
            (false, false) => self.irr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn programmed(base: u8, icw4: u8) -> Chip {
        let mut c = Chip::new(true);
        c.write_command(ICW1_SELECT | ICW1_SNGL | ICW1_IC4);
        c.write_data(base);
        assert!(c.write_data(icw4));
        c
    }

    #[test]
    fn rank_follows_lowest() {
        // (lowest, level, rank)
        let cases: &[(u8, u8, u8)] = &[
            (7, 0, 0),
            (7, 7, 7),
            (7, 3, 3),
            (2, 3, 0),
            (2, 2, 7),
            (2, 0, 5),
            (0, 1, 0),
            (0, 0, 7),
        ];
        for &(lowest, n, want) in cases {
            let mut c = Chip::new(true);
            c.lowest = lowest;
            assert_eq!(c.rank(n), want, "lowest {lowest} level {n}");
        }
    }

    #[test]
    fn highest_in_mask() {
        let mut c = Chip::new(true);
        assert_eq!(c.highest(0), None);
        assert_eq!(c.highest(0b1010_0000), Some(5));
        c.lowest = 5;
        assert_eq!(c.highest(0b1010_0001), Some(7));
        assert_eq!(c.highest(0b0010_0001), Some(0));
        assert_eq!(c.highest(0b0010_0000), Some(5));
    }

    #[test]
    fn inta_without_request_is_default_ir7() {
        let mut c = programmed(0x08, ICW4_8086);
        assert_eq!(c.inta(), None);
        assert_eq!(c.isr, 0, "the default IR7 sets no ISR bit");
        // A request that was removed (level mode) leaves nothing either.
        c.ltim = true;
        c.set_line(3, true);
        c.set_line(3, false);
        assert_eq!(c.inta(), None);
        assert_eq!(c.vector(7), 0x0f);
    }

    #[test]
    fn icw_sequence_lengths() {
        // (ICW1, number of A0=1 writes that complete it)
        let cases: &[(u8, usize)] = &[
            (0x11, 3), // cascade, ICW4
            (0x13, 2), // single, ICW4
            (0x10, 2), // cascade, no ICW4
            (0x12, 1), // single, no ICW4
            (0x19, 3), // level, cascade, ICW4
        ];
        for &(icw1, n) in cases {
            let mut c = Chip::new(true);
            c.write_command(icw1);
            for i in 1..=n {
                let done = c.write_data(0x20);
                assert_eq!(done, i == n, "ICW1 {icw1:#x} write {i}");
            }
            assert!(c.initialized());
            c.write_data(0x5a);
            assert_eq!(c.imr, 0x5a, "ICW1 {icw1:#x}: next A0=1 write is OCW1");
        }
    }

    #[test]
    fn icw1_resets_what_the_datasheet_lists() {
        let mut c = programmed(0x20, ICW4_8086 | ICW4_AEOI);
        c.imr = 0x12;
        c.isr = 0x40;
        c.set_line(1, true);
        c.lowest = 3;
        c.write_command(0x68); // special mask on
        c.write_command(0x0b); // read ISR
        c.write_command(0x80); // rotate in AEOI
        c.write_command(0x11); // ICW1 without SNGL, with IC4
        assert_eq!(
            (c.irr, c.isr, c.imr, c.lowest, c.icw3),
            (0, 0, 0, 7, 7),
            "edge sense reset, IMR cleared, IR7 lowest, slave address 7"
        );
        assert!(!c.special_mask && !c.read_isr && !c.rotate_aeoi);
        assert_eq!(
            c.icw4,
            ICW4_8086 | ICW4_AEOI,
            "IC4=1 keeps ICW4 until rewritten"
        );
        c.write_command(0x10);
        assert_eq!(c.icw4, 0, "IC4=0 zeroes the ICW4 functions");
        // The input is still high but must fall and rise again.
        c.write_data(0x20);
        c.write_data(0x04);
        c.set_line(1, true);
        assert_eq!(c.irr, 0);
        c.set_line(1, false);
        c.set_line(1, true);
        assert_eq!(c.irr, 0b10);
    }

    #[test]
    fn ocw2_table() {
        // (lowest before, ISR before, OCW2, ISR after, lowest after, rotate_aeoi after)
        type Case = (u8, u8, u8, u8, u8, bool);
        let cases: &[Case] = &[
            (7, 0b0000_1010, 0x20, 0b0000_1000, 7, false), // non-specific EOI
            (2, 0b0000_1010, 0x20, 0b0000_0010, 2, false), // ... highest is 3 after rotation
            (7, 0b0000_1010, 0x63, 0b0000_0010, 7, false), // specific EOI 3
            (7, 0b0000_1010, 0x60, 0b0000_1010, 7, false), // specific EOI of a level not in service
            (7, 0b0000_1010, 0xa0, 0b0000_1000, 1, false), // rotate on non-specific EOI
            (7, 0b0000_0000, 0xa0, 0b0000_0000, 7, false), // ... with nothing in service
            (7, 0b0000_1010, 0xe3, 0b0000_0010, 3, false), // rotate on specific EOI 3
            (7, 0b0000_1010, 0xc4, 0b0000_1010, 4, false), // set priority: 4 lowest
            (7, 0b0000_1010, 0x80, 0b0000_1010, 7, true),  // rotate in AEOI set
            (7, 0b0000_1010, 0x40, 0b0000_1010, 7, false), // no operation
        ];
        for &(lowest, isr, ocw2, isr_after, lowest_after, rot) in cases {
            let mut c = programmed(0x08, ICW4_8086);
            c.lowest = lowest;
            c.isr = isr;
            c.write_command(ocw2);
            assert_eq!(
                (c.isr, c.lowest, c.rotate_aeoi),
                (isr_after, lowest_after, rot),
                "OCW2 {ocw2:#x}"
            );
        }
        let mut c = programmed(0x08, ICW4_8086);
        c.write_command(0x80);
        c.write_command(0x00);
        assert!(!c.rotate_aeoi, "OCW2 0x00 clears rotate in AEOI");
    }

    #[test]
    fn ocw3_table() {
        // (OCW3, special mask, read ISR, poll) starting from SMM on, ISR read
        let cases: &[(u8, bool, bool, bool)] = &[
            (0x08, true, true, false),  // nothing
            (0x0a, true, false, false), // read IRR
            (0x0b, true, true, false),  // read ISR
            (0x09, true, true, false),  // RR = 0: no action
            (0x48, false, true, false), // reset special mask
            (0x28, true, true, false),  // ESMM = 0: no action
            (0x0c, true, true, true),   // poll
        ];
        for &(v, smm, ris, poll) in cases {
            let mut c = programmed(0x08, ICW4_8086);
            c.special_mask = true;
            c.read_isr = true;
            c.write_command(v);
            assert_eq!(
                (c.special_mask, c.read_isr, c.poll),
                (smm, ris, poll),
                "OCW3 {v:#x}"
            );
        }
    }

    #[test]
    fn level_irr_follows_input_and_elcr() {
        let mut c = programmed(0x08, ICW4_8086);
        c.set_line(5, true);
        assert_eq!(c.irr, bit(5));
        c.set_line(5, false);
        assert_eq!(c.irr, bit(5), "edge mode keeps the latch");
        c.irr = 0;
        c.write_elcr(bit(5), 0xf8);
        c.set_line(5, true);
        assert_eq!(c.irr, bit(5));
        c.begin_ack(5);
        assert_eq!(c.irr, bit(5), "level request still present after ack");
        c.set_line(5, false);
        assert_eq!(c.irr, 0, "level request removed with its input");
        c.write_elcr(0xff, 0xf8);
        assert_eq!(c.elcr, 0xf8);
    }
}
