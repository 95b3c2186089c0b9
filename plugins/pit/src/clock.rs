//! The PIT's input clock on the host's virtual clock: CLK pulse numbers from
//! nanoseconds and back, exactly (integer arithmetic in `u128`/`i128`).
//!
//! Pulse `n` happens at virtual time `base + ceil(n * 1e9 / PIT_HZ)`; the last
//! pulse at or before time `t` is `floor((t - base) * PIT_HZ / 1e9)`.

/// Frequency of the 8254's CLK inputs on a PC: 1.193182 MHz (the 14.31818 MHz
/// system oscillator divided by 12; IBM PC AT Technical Reference, "System Timers").
pub const PIT_HZ: u64 = 1_193_182;
const NS_PER_SEC: u128 = 1_000_000_000;

/// Where CLK pulse 0 lies on the host's virtual clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeBase {
    /// Virtual time of pulse 0; negative after a restore into a younger VM.
    base_ns: i128,
}

impl TimeBase {
    /// Pulse 0 at virtual time 0 (the oscillator runs from power-on).
    pub fn new() -> Self {
        Self::default()
    }

    /// A time base whose pulse 0 lies `age_ns` before `now_ns`.
    pub fn from_age(now_ns: u64, age_ns: u64) -> Self {
        Self {
            base_ns: i128::from(now_ns) - i128::from(age_ns),
        }
    }

    /// Nanoseconds from pulse 0 to `now_ns` (0 if `now_ns` is earlier).
    pub fn age_ns(&self, now_ns: u64) -> u64 {
        let age = (i128::from(now_ns) - self.base_ns).max(0);
        u64::try_from(age).unwrap_or(u64::MAX)
    }

    /// The last CLK pulse at or before `now_ns`.
    pub fn ticks(&self, now_ns: u64) -> u64 {
        // age < 2^65, so age * PIT_HZ < 2^86 and the quotient < 2^64.
        let age = (i128::from(now_ns) - self.base_ns).max(0) as u128;
        u64::try_from(age * u128::from(PIT_HZ) / NS_PER_SEC).unwrap_or(u64::MAX)
    }

    /// The first virtual nanosecond at which pulse `tick` has happened
    /// (never `TIMER_OFF`, never before 0).
    pub fn deadline_ns(&self, tick: u64) -> u64 {
        let offset = (u128::from(tick) * NS_PER_SEC).div_ceil(u128::from(PIT_HZ));
        // offset < 2^95, base > -2^65: the sum fits in i128.
        let t = self.base_ns + offset as i128;
        u64::try_from(t.clamp(0, i128::from(u64::MAX - 1))).unwrap_or(u64::MAX - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_deadlines_are_inverse() {
        let b = TimeBase::new();
        // (ns, last pulse at or before it): one pulse every 838.095... ns.
        let cases: &[(u64, u64)] = &[
            (0, 0),
            (838, 0),
            (839, 1),
            (1_676, 1),
            (1_677, 2),
            (1_000_000, 1193),
            (1_000_000_000, 1_193_182),
            (999_999_999, 1_193_181),
        ];
        for &(ns, tick) in cases {
            assert_eq!(b.ticks(ns), tick, "{ns} ns");
        }
        for tick in [0u64, 1, 2, 1193, 65_536, 1_193_182, 1 << 40] {
            let d = b.deadline_ns(tick);
            assert_eq!(b.ticks(d), tick, "pulse {tick} at {d}");
            if d > 0 {
                assert_eq!(b.ticks(d - 1), tick - 1, "just before pulse {tick}");
            }
        }
    }

    #[test]
    fn restored_base_keeps_phase() {
        let old = TimeBase::new();
        let now_old = 5_000_000_123;
        let age = old.age_ns(now_old);
        let new = TimeBase::from_age(7, age);
        for d in [0u64, 1, 838, 1_000_000] {
            assert_eq!(old.ticks(now_old + d), new.ticks(7 + d));
        }
        // A base before virtual time 0 still yields valid deadlines.
        assert_eq!(new.deadline_ns(0), 0);
        assert_eq!(new.ticks(new.deadline_ns(6_000_000)), 6_000_000);
    }
}
