//! The MC146818A's time base on the host's virtual clock: the divider chain,
//! the once-a-second update cycle and the periodic-interrupt taps.
//!
//! The divider chain is modelled by one instant, its origin: with the
//! 32.768 kHz time base (DV = 010) the first update cycle comes 500 ms after
//! the divider leaves reset (datasheet, "Register A": "the first update cycle
//! begins one-half second later"), then one every second; the periodic rate
//! taps the same chain, so periodic tick `n` comes `n` periods after the origin.

/// Nanoseconds per second.
pub const NS_PER_SEC: i64 = 1_000_000_000;
/// From leaving divider reset to the first update.
pub const FIRST_UPDATE_NS: i64 = NS_PER_SEC / 2;
/// UIP goes high this long before an update cycle (datasheet t_BUC = 244 µs).
pub const UIP_LEAD_NS: i64 = 244_000;
/// The time-base frequency the periodic rates divide (32.768 kHz).
const TIME_BASE_HZ: u128 = 32_768;

/// The divider chain's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Divider {
    /// Virtual time the divider left reset (may be negative).
    pub origin_ns: i64,
}

impl Divider {
    /// Number of update cycles in `(origin, t]`.
    pub fn updates_by(&self, t: i64) -> i64 {
        let first = self.origin_ns.saturating_add(FIRST_UPDATE_NS);
        if t < first {
            0
        } else {
            (t - first) / NS_PER_SEC + 1
        }
    }

    /// The instant of the update cycle number `k` (1-based).
    pub fn update_at(&self, k: i64) -> i64 {
        self.origin_ns
            .saturating_add(FIRST_UPDATE_NS)
            .saturating_add((k - 1).saturating_mul(NS_PER_SEC))
    }

    /// Number of periodic ticks of rate select `rs` in `(origin, t]`.
    pub fn ticks_by(&self, rs: u8, t: i64) -> u128 {
        let Some(e) = period_exponent(rs) else {
            return 0;
        };
        if t <= self.origin_ns {
            return 0;
        }
        // Period = 2^e / 32768 s.
        let elapsed = (t - self.origin_ns) as u128;
        elapsed * TIME_BASE_HZ / ((NS_PER_SEC as u128) << e)
    }

    /// The instant of periodic tick `n` (1-based) of rate select `rs`.
    pub fn tick_at(&self, rs: u8, n: u128) -> Option<i64> {
        let e = period_exponent(rs)?;
        let num = n * ((NS_PER_SEC as u128) << e);
        let off = num.div_ceil(TIME_BASE_HZ);
        i64::try_from(off).ok()?.checked_add(self.origin_ns)
    }
}

/// The periodic period of rate select `rs` as a power of two of 1/32768 s:
/// MC146818A datasheet table 5 (32.768 kHz time base): RS = 0 none, RS = 1
/// and 2 repeat RS = 8 and 9 (3.90625 ms, 7.8125 ms), RS = 3..15 give
/// 2^(RS-1) / 32768 s (122.070 µs .. 500 ms).
pub fn period_exponent(rs: u8) -> Option<u32> {
    match rs & 0x0f {
        0 => None,
        1 => Some(7),
        2 => Some(8),
        r => Some(u32::from(r) - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_rates_match_datasheet_table() {
        // (RS, period in picoseconds from the datasheet's table)
        let table: &[(u8, u128)] = &[
            (1, 3_906_250_000),
            (2, 7_812_500_000),
            (3, 122_070_312),
            (4, 244_140_625),
            (5, 488_281_250),
            (6, 976_562_500),
            (7, 1_953_125_000),
            (8, 3_906_250_000),
            (9, 7_812_500_000),
            (10, 15_625_000_000),
            (11, 31_250_000_000),
            (12, 62_500_000_000),
            (13, 125_000_000_000),
            (14, 250_000_000_000),
            (15, 500_000_000_000),
        ];
        for &(rs, ps) in table {
            let e = period_exponent(rs).unwrap();
            assert_eq!((1_000_000_000_000u128 << e) / 32_768, ps, "RS={rs}");
        }
        assert_eq!(period_exponent(0), None);
    }

    #[test]
    fn updates_and_ticks() {
        let d = Divider {
            origin_ns: -500_000_000,
        };
        assert_eq!(d.updates_by(-1), 0);
        assert_eq!(d.updates_by(0), 1);
        assert_eq!(d.updates_by(999_999_999), 1);
        assert_eq!(d.updates_by(1_000_000_000), 2);
        assert_eq!(d.update_at(2), 1_000_000_000);
        let d = Divider { origin_ns: 0 };
        assert_eq!(d.ticks_by(6, 1_000_000_000), 1024);
        assert_eq!(d.ticks_by(6, 976_562), 0);
        assert_eq!(d.tick_at(6, 1), Some(976_563));
        assert_eq!(d.ticks_by(6, 976_563), 1);
        assert_eq!(d.ticks_by(0, 1_000_000_000), 0);
        assert_eq!(d.ticks_by(15, 1_000_000_000), 2);
    }
}
