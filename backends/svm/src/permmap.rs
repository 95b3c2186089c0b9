//! I/O and MSR permission maps (AMD APM vol. 2, 15.10.1 "I/O Permissions
//! Map" and 15.11 "MSR Intercepts").

/// IOPM size: 12 KiB, one bit per port plus spill-over bits (APM 15.10.1).
pub const IOPM_SIZE: usize = 12288;
/// MSRPM size: 8 KiB (APM 15.11).
pub const MSRPM_SIZE: usize = 8192;

/// The I/O permissions map: bit n intercepts port n. A multi-byte access
/// checks every bit it covers; an access at 0xFFFF of size 2 or 4 checks
/// bits 0x10000.. in the map's extra bits (APM 15.10.1).
#[derive(Clone, PartialEq, Eq)]
pub struct Iopm {
    map: Box<[u8; IOPM_SIZE]>,
}

impl std::fmt::Debug for Iopm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Iopm({} ports intercepted)",
            self.intercepted_ports().len()
        )
    }
}

impl Iopm {
    /// Every bit set.
    pub fn all_intercepted() -> Self {
        Self {
            map: Box::new([0xFF; IOPM_SIZE]),
        }
    }

    /// Every bit clear.
    pub fn none_intercepted() -> Self {
        Self {
            map: Box::new([0; IOPM_SIZE]),
        }
    }

    fn bit(&self, bit: u32) -> bool {
        self.map
            .get((bit / 8) as usize)
            .is_some_and(|b| b >> (bit % 8) & 1 != 0)
    }

    /// Sets or clears raw bit `bit` (0..98304; bits past 0xFFFF are the
    /// spill-over bits); returns false if out of the map.
    pub fn set_bit(&mut self, bit: u32, on: bool) -> bool {
        let Some(b) = self.map.get_mut((bit / 8) as usize) else {
            return false;
        };
        let m = 1u8 << (bit % 8);
        if on {
            *b |= m;
        } else {
            *b &= !m;
        }
        true
    }

    /// Sets or clears the intercept of `port`.
    pub fn set(&mut self, port: u16, on: bool) {
        self.set_bit(u32::from(port), on);
    }

    /// Whether an access of `size` bytes at `port` is intercepted: any bit
    /// from `port` to `port + size - 1` set (no wrap to port 0).
    pub fn intercepts(&self, port: u16, size: u8) -> bool {
        let start = u32::from(port);
        (start..start + u32::from(size.max(1))).any(|b| self.bit(b))
    }

    /// Ports 0..=0xFFFF whose bit is set.
    pub fn intercepted_ports(&self) -> Vec<u16> {
        (0..=u16::MAX).filter(|&p| self.bit(u32::from(p))).collect()
    }

    /// The raw map.
    pub fn bytes(&self) -> &[u8] {
        &self.map[..]
    }
}

/// The three MSR ranges of the MSRPM with their byte offsets (APM 15.11):
/// 0000_0000-0000_1FFF at 0x000, C000_0000-C000_1FFF at 0x800,
/// C001_0000-C001_1FFF at 0x1000.
pub const MSRPM_RANGES: [(u32, usize); 3] = [
    (0x0000_0000, 0x000),
    (0xC000_0000, 0x800),
    (0xC001_0000, 0x1000),
];

/// MSRs per range (0x2000, two bits each = 0x800 bytes).
const MSRS_PER_RANGE: u32 = 0x2000;

/// The MSR permissions map: two bits per MSR, the even (lower) bit
/// intercepts RDMSR, the odd bit WRMSR. MSRs outside the ranges always
/// intercept (APM 15.11).
#[derive(Clone, PartialEq, Eq)]
pub struct Msrpm {
    map: Box<[u8; MSRPM_SIZE]>,
}

impl std::fmt::Debug for Msrpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Msrpm({} reads, {} writes intercepted)",
            self.read_list().len(),
            self.write_list().len()
        )
    }
}

/// Byte index and bit shift of the read bit of `msr`, if in a range.
fn locate(msr: u32) -> Option<(usize, u32)> {
    MSRPM_RANGES.iter().find_map(|&(base, off)| {
        let rel = msr.checked_sub(base).filter(|&r| r < MSRS_PER_RANGE)?;
        Some((off + (rel / 4) as usize, (rel % 4) * 2))
    })
}

impl Msrpm {
    /// Every bit set.
    pub fn all_intercepted() -> Self {
        Self {
            map: Box::new([0xFF; MSRPM_SIZE]),
        }
    }

    /// Every bit clear (MSRs outside the ranges still intercept).
    pub fn none_intercepted() -> Self {
        Self {
            map: Box::new([0; MSRPM_SIZE]),
        }
    }

    fn set_bit(&mut self, msr: u32, write: bool, on: bool) -> bool {
        let Some((byte, shift)) = locate(msr) else {
            return false;
        };
        let Some(b) = self.map.get_mut(byte) else {
            return false;
        };
        let m = 1u8 << (shift + u32::from(write));
        if on {
            *b |= m;
        } else {
            *b &= !m;
        }
        true
    }

    fn get_bit(&self, msr: u32, write: bool) -> bool {
        locate(msr).is_none_or(|(byte, shift)| {
            self.map
                .get(byte)
                .is_none_or(|b| b >> (shift + u32::from(write)) & 1 != 0)
        })
    }

    /// Sets or clears the RDMSR intercept; false if `msr` is outside the ranges.
    pub fn set_read(&mut self, msr: u32, on: bool) -> bool {
        self.set_bit(msr, false, on)
    }

    /// Sets or clears the WRMSR intercept; false if `msr` is outside the ranges.
    pub fn set_write(&mut self, msr: u32, on: bool) -> bool {
        self.set_bit(msr, true, on)
    }

    /// Whether RDMSR of `msr` is intercepted (always, outside the ranges).
    pub fn intercepts_read(&self, msr: u32) -> bool {
        self.get_bit(msr, false)
    }

    /// Whether WRMSR of `msr` is intercepted (always, outside the ranges).
    pub fn intercepts_write(&self, msr: u32) -> bool {
        self.get_bit(msr, true)
    }

    fn list(&self, write: bool) -> Vec<u32> {
        MSRPM_RANGES
            .iter()
            .flat_map(|&(base, _)| base..base + MSRS_PER_RANGE)
            .filter(|&m| self.get_bit(m, write))
            .collect()
    }

    /// Every in-range MSR whose read bit is set.
    pub fn read_list(&self) -> Vec<u32> {
        self.list(false)
    }

    /// Every in-range MSR whose write bit is set.
    pub fn write_list(&self) -> Vec<u32> {
        self.list(true)
    }

    /// The raw map.
    pub fn bytes(&self) -> &[u8] {
        &self.map[..]
    }
}
