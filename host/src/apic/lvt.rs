//! Local vector table entries (SDM 11.5.1, Figure 11-8).

use super::msg::DeliveryMode;

/// LVT bit 16: masked.
pub const LVT_MASKED: u32 = 1 << 16;
/// LVT bit 12: delivery status (read-only; always 0 here).
pub const LVT_DELIVERY_STATUS: u32 = 1 << 12;
/// LVT bit 13: LINT input pin polarity (1 = active low).
pub const LVT_POLARITY_LOW: u32 = 1 << 13;
/// LVT bit 14: remote IRR (LINT0/LINT1, read-only).
pub const LVT_REMOTE_IRR: u32 = 1 << 14;
/// LVT bit 15: trigger mode (LINT0/LINT1; 1 = level).
pub const LVT_LEVEL: u32 = 1 << 15;
/// LVT value after RESET/INIT: everything 0 but the mask (SDM 11.4.7.1).
pub const LVT_RESET: u32 = LVT_MASKED;

/// The six LVT entries of this model, in register order (max LVT entry 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LvtIndex {
    /// 0x320: timer.
    Timer,
    /// 0x330: thermal sensor.
    Thermal,
    /// 0x340: performance-monitoring counters.
    Perf,
    /// 0x350: LINT0 pin.
    Lint0,
    /// 0x360: LINT1 pin.
    Lint1,
    /// 0x370: APIC internal error.
    Error,
}

impl LvtIndex {
    /// All entries in register order.
    pub const ALL: [LvtIndex; 6] = [
        LvtIndex::Timer,
        LvtIndex::Thermal,
        LvtIndex::Perf,
        LvtIndex::Lint0,
        LvtIndex::Lint1,
        LvtIndex::Error,
    ];

    /// Position in the table (0..6).
    pub fn index(self) -> usize {
        match self {
            Self::Timer => 0,
            Self::Thermal => 1,
            Self::Perf => 2,
            Self::Lint0 => 3,
            Self::Lint1 => 4,
            Self::Error => 5,
        }
    }

    /// The entry at xAPIC register offset `offset` (0x320..=0x370).
    pub fn from_offset(offset: u32) -> Option<Self> {
        match offset {
            0x320..=0x370 if offset & 0xF == 0 => {
                Self::ALL.get(((offset - 0x320) >> 4) as usize).copied()
            }
            _ => None,
        }
    }

    /// Bits software can write (Figure 11-8): vector, delivery mode where the
    /// entry has one, polarity and trigger for LINT, timer mode for the timer
    /// (bits 18:17, TSC-deadline supported), and the mask.
    pub fn writable(self) -> u32 {
        match self {
            Self::Timer => 0x0007_00FF,
            Self::Thermal | Self::Perf => 0x0001_07FF,
            Self::Lint0 | Self::Lint1 => 0x0001_A7FF,
            Self::Error => 0x0001_00FF,
        }
    }

    /// Bits that exist in the entry (writable plus read-only status bits);
    /// an x2APIC WRMSR setting any other bit #GPs.
    pub fn defined(self) -> u32 {
        let ro = match self {
            Self::Lint0 | Self::Lint1 => LVT_DELIVERY_STATUS | LVT_REMOTE_IRR,
            _ => LVT_DELIVERY_STATUS,
        };
        self.writable() | ro
    }
}

/// LVT timer mode, bits 18:17 (SDM 11.5.4, Table 11-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerMode {
    /// 00b: one-shot.
    OneShot,
    /// 01b: periodic.
    Periodic,
    /// 10b: TSC-deadline.
    TscDeadline,
    /// 11b: reserved; the model's timer never fires in it.
    Reserved,
}

impl TimerMode {
    /// Decodes an LVT timer value.
    pub fn from_lvt(value: u32) -> Self {
        match (value >> 17) & 3 {
            0 => Self::OneShot,
            1 => Self::Periodic,
            2 => Self::TscDeadline,
            _ => Self::Reserved,
        }
    }
}

/// One LVT entry's value with field accessors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LvtEntry(pub u32);

impl LvtEntry {
    /// Vector, bits 7:0.
    pub fn vector(self) -> u8 {
        (self.0 & 0xFF) as u8
    }

    /// Delivery mode, bits 10:8 (None for the reserved 011b).
    pub fn delivery_mode(self) -> Option<DeliveryMode> {
        DeliveryMode::from_bits(self.0 >> 8)
    }

    /// Mask bit 16.
    pub fn masked(self) -> bool {
        self.0 & LVT_MASKED != 0
    }

    /// Trigger mode bit 15 (LINT only): level when true.
    pub fn level_triggered(self) -> bool {
        self.0 & LVT_LEVEL != 0
    }

    /// Remote IRR bit 14 (LINT only).
    pub fn remote_irr(self) -> bool {
        self.0 & LVT_REMOTE_IRR != 0
    }

    /// Input pin polarity bit 13 (LINT only): active low when true.
    pub fn active_low(self) -> bool {
        self.0 & LVT_POLARITY_LOW != 0
    }

    /// Timer mode, bits 18:17 (timer entry only).
    pub fn timer_mode(self) -> TimerMode {
        TimerMode::from_lvt(self.0)
    }
}
