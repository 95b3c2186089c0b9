//! Proleptic Gregorian calendar arithmetic on a count of seconds since
//! 1970-01-01 00:00:00 UTC, and the MC146818A register encodings (BCD or
//! binary, 12- or 24-hour).
//!
//! The day conversion counts 400-year eras of 146 097 days starting on
//! 0000-03-01, so that the leap day is the last day of each era-year.

/// Seconds in a day.
pub const SECS_PER_DAY: i64 = 86_400;
/// Days in a 400-year Gregorian cycle.
const DAYS_PER_ERA: i64 = 146_097;
/// Days from 0000-03-01 to 1970-01-01.
const EPOCH_SHIFT: i64 = 719_468;

/// A broken-down civil date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Full year (0-9999 for the RTC).
    pub year: i64,
    /// Month 1-12.
    pub month: u8,
    /// Day of month 1-31.
    pub day: u8,
    /// Hour 0-23.
    pub hour: u8,
    /// Minute 0-59.
    pub minute: u8,
    /// Second 0-59.
    pub second: u8,
    /// Day of week, 1 = Sunday .. 7 = Saturday (the MC146818A's convention
    /// as PC BIOSes use it).
    pub weekday: u8,
}

/// Days since 1970-01-01 of the civil date `year-month-day` (month 1-12, day 1-31;
/// a day past the end of the month rolls into the next month).
pub fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    // Shift the year to start in March so that February is the last month.
    let m = i64::from(month.clamp(1, 12));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400; // 0..=399
    let shifted_month = (m + 9) % 12; // March = 0 .. February = 11
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day.max(1)) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - EPOCH_SHIFT
}

/// The civil date (year, month 1-12, day 1-31) of `days` since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + EPOCH_SHIFT;
    let era = z.div_euclid(DAYS_PER_ERA);
    let day_of_era = z - era * DAYS_PER_ERA; // 0..=146096
                                             // Years of the era: discount the leap days of the 4-, 100- and 400-year cycles.
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // month is 1..=12 and day 1..=31 by construction.
    (year, month as u8, day as u8)
}

/// Breaks `secs` since the Unix epoch into a civil date and time.
pub fn civil_from_secs(secs: i64) -> Civil {
    let days = secs.div_euclid(SECS_PER_DAY);
    let tod = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: (tod / 3600) as u8,
        minute: (tod / 60 % 60) as u8,
        second: (tod % 60) as u8,
        // 1970-01-01 was a Thursday (weekday 5 with Sunday = 1).
        weekday: ((days + 4).rem_euclid(7) + 1) as u8,
    }
}

/// Seconds since the Unix epoch of `c` (its `weekday` is ignored).
pub fn secs_from_civil(c: &Civil) -> i64 {
    days_from_civil(c.year, c.month, c.day) * SECS_PER_DAY
        + i64::from(c.hour) * 3600
        + i64::from(c.minute) * 60
        + i64::from(c.second)
}

/// How the time registers encode numbers (register B DM and 24/12 bits).
///
/// MC146818A datasheet, "Time, Calendar and Alarm Locations" (table 2): with
/// DM = 1 the values are binary, with DM = 0 BCD; with 24/12 = 0 the hours
/// run 1-12 with bit 7 set for PM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// DM = 1: binary; DM = 0: BCD.
    pub binary: bool,
    /// 24/12 = 1: 24-hour mode.
    pub hour24: bool,
}

impl Encoding {
    /// Encodes a number 0-99.
    pub fn num(self, v: u8) -> u8 {
        if self.binary {
            v
        } else {
            ((v / 10) << 4) | (v % 10)
        }
    }

    /// Decodes a register byte; BCD digits above 9 count as their binary
    /// value (0x7a reads as 80), as a counter fed such digits would.
    pub fn decode(self, b: u8) -> u8 {
        if self.binary {
            b
        } else {
            (b >> 4) * 10 + (b & 0x0f)
        }
    }

    /// Encodes an hour 0-23 into the hours register.
    pub fn hour(self, h: u8) -> u8 {
        if self.hour24 {
            return self.num(h);
        }
        let pm = h >= 12;
        let h12 = match h % 12 {
            0 => 12,
            x => x,
        };
        self.num(h12) | if pm { 0x80 } else { 0 }
    }

    /// Decodes the hours register into 0-23 (out-of-range values clamp to 23).
    pub fn decode_hour(self, b: u8) -> u8 {
        if self.hour24 {
            return self.decode(b).min(23);
        }
        let pm = b & 0x80 != 0;
        let h12 = self.decode(b & 0x7f).min(12);
        (h12 % 12) + if pm { 12 } else { 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        // (unix seconds, y, m, d, h, mi, s, weekday) checked against `date -u`.
        type Case = (i64, i64, u8, u8, u8, u8, u8, u8);
        let cases: &[Case] = &[
            (0, 1970, 1, 1, 0, 0, 0, 5),
            (951_782_400, 2000, 2, 29, 0, 0, 0, 3),
            (1_795_614_307, 2026, 11, 25, 13, 45, 7, 4),
            (1_835_395_199, 2028, 2, 28, 23, 59, 59, 2),
            (1_835_395_200, 2028, 2, 29, 0, 0, 0, 3),
            (4_107_542_400, 2100, 3, 1, 0, 0, 0, 2),
            (-1, 1969, 12, 31, 23, 59, 59, 4),
            (253_402_300_799, 9999, 12, 31, 23, 59, 59, 6),
            (-62_167_219_200, 0, 1, 1, 0, 0, 0, 7),
        ];
        for &(secs, y, m, d, h, mi, s, wd) in cases {
            let c = civil_from_secs(secs);
            assert_eq!(
                (c.year, c.month, c.day, c.hour, c.minute, c.second, c.weekday),
                (y, m, d, h, mi, s, wd),
                "{secs}"
            );
            assert_eq!(secs_from_civil(&c), secs, "{secs} round trip");
        }
    }

    #[test]
    fn every_day_round_trips() {
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn encodings() {
        let bcd12 = Encoding {
            binary: false,
            hour24: false,
        };
        let bin24 = Encoding {
            binary: true,
            hour24: true,
        };
        let bin12 = Encoding {
            binary: true,
            hour24: false,
        };
        let bcd24 = Encoding {
            binary: false,
            hour24: true,
        };
        // (encoding, hour 0-23, register byte)
        let cases = [
            (bcd12, 0, 0x12),
            (bcd12, 1, 0x01),
            (bcd12, 11, 0x11),
            (bcd12, 12, 0x92),
            (bcd12, 13, 0x81),
            (bcd12, 23, 0x91),
            (bin12, 0, 12),
            (bin12, 12, 0x8c),
            (bin12, 22, 0x8a),
            (bin24, 22, 22),
            (bcd24, 22, 0x22),
        ];
        for (e, h, b) in cases {
            assert_eq!(e.hour(h), b, "{e:?} {h}");
            assert_eq!(e.decode_hour(b), h, "{e:?} {b:#x}");
        }
        assert_eq!(bcd24.num(59), 0x59);
        assert_eq!(bcd24.decode(0x7a), 80);
        assert_eq!(bin24.num(59), 59);
    }
}
