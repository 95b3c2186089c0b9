//! The guest-visible register layout: four byte-wide ports from the base.
//!
//! This is the device's "datasheet". Everything the guest can observe is
//! defined here, so the model in [`crate::countdown`] and the tests agree on
//! one set of numbers.
//!
//! | offset | name    | access | meaning |
//! |--------|---------|--------|---------|
//! | +0     | control | R/W    | bit 0 start, bit 1 periodic, bit 2 interrupt enable; bit 7 acknowledge (write 1 to clear `status`, reads 0) |
//! | +1     | status  | R      | bit 0 expired (sticky: reading does not clear it) |
//! | +2     | reload  | R/W    | reload value in milliseconds, low byte |
//! | +3     | reload  | R/W    | reload value in milliseconds, high byte |
//!
//! A 16-bit access at +2 reads or writes the whole reload value
//! (little-endian, as x86 port I/O is).

/// Number of ports the device claims.
pub const PORT_COUNT: u16 = 4;

/// Offset of the control register.
pub const CONTROL: u64 = 0;
/// Offset of the status register.
pub const STATUS: u64 = 1;
/// Offset of the reload value's low byte.
pub const RELOAD_LO: u64 = 2;
/// Offset of the reload value's high byte.
pub const RELOAD_HI: u64 = 3;

/// control bit 0: the countdown runs while set (cleared by a one-shot expiry).
pub const CTRL_START: u8 = 1 << 0;
/// control bit 1: on expiry, reload and count again instead of stopping.
pub const CTRL_PERIODIC: u8 = 1 << 1;
/// control bit 2: drive the IRQ line while `status.expired` is set.
pub const CTRL_IRQ_ENABLE: u8 = 1 << 2;
/// control bit 7 (write only): acknowledge, i.e. clear `status.expired`.
pub const CTRL_ACK: u8 = 1 << 7;
/// The control bits that are stored and read back.
pub const CTRL_STORED: u8 = CTRL_START | CTRL_PERIODIC | CTRL_IRQ_ENABLE;

/// status bit 0: the countdown reached zero since the last acknowledge.
pub const STATUS_EXPIRED: u8 = 1 << 0;

/// Nanoseconds per reload unit (one millisecond).
pub const NS_PER_UNIT: u64 = 1_000_000;

/// The countdown period for a reload value. Zero counts as 65536 ms, as the
/// 8254 PIT treats a count of zero as 2^16, so a periodic timer can never
/// spin with a zero period.
pub fn period_ns(reload: u16) -> u64 {
    let units = if reload == 0 {
        1u64 << 16
    } else {
        u64::from(reload)
    };
    units * NS_PER_UNIT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        let cases = [
            (1u16, 1_000_000u64),
            (250, 250_000_000),
            (0xffff, 65_535_000_000),
            (0, 65_536_000_000),
        ];
        for (reload, ns) in cases {
            assert_eq!(period_ns(reload), ns, "reload {reload}");
        }
    }
}
