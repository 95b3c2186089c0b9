//! The counting timeline of one count loaded into a counting element (CE):
//! the CE contents and the OUT level at every CLK pulse, and the next rising
//! edge of OUT, for the six 8254 modes.
//!
//! Ticks are CLK pulse numbers (see `clock.rs`). `k` is the number of pulses
//! counted since the count was loaded (the load pulse itself counts 0). Rules
//! from the Intel 82C54 CHMOS Programmable Interval Timer datasheet,
//! "Mode Definitions" (modes 0-5) and "Gate Pin Operations Summary".

/// A counter mode (82C54 datasheet, "Control Word Format", bits M2-M0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Mode 0: interrupt on terminal count.
    InterruptOnTerminalCount,
    /// Mode 1: hardware retriggerable one-shot.
    OneShot,
    /// Mode 2: rate generator.
    RateGenerator,
    /// Mode 3: square wave.
    SquareWave,
    /// Mode 4: software triggered strobe.
    SoftwareStrobe,
    /// Mode 5: hardware triggered (retriggerable) strobe.
    HardwareStrobe,
}

impl Mode {
    /// Decodes M2-M0; `x10` is mode 2 and `x11` is mode 3 (M2 is "don't care" there).
    pub fn from_bits(m: u8) -> Self {
        match m & 7 {
            0 => Mode::InterruptOnTerminalCount,
            1 => Mode::OneShot,
            2 | 6 => Mode::RateGenerator,
            3 | 7 => Mode::SquareWave,
            4 => Mode::SoftwareStrobe,
            _ => Mode::HardwareStrobe,
        }
    }

    /// Whether GATE low stops counting (modes 0, 2, 3, 4; in modes 1 and 5
    /// the gate only triggers).
    pub fn gate_enables_counting(self) -> bool {
        !matches!(self, Mode::OneShot | Mode::HardwareStrobe)
    }

    /// Whether a rising edge of GATE (re)loads the count (modes 1, 2, 3, 5).
    pub fn gate_triggers(self) -> bool {
        !matches!(self, Mode::InterruptOnTerminalCount | Mode::SoftwareStrobe)
    }

    /// OUT right after a control word: low in mode 0, high in modes 1-5.
    pub fn initial_out(self) -> bool {
        self != Mode::InterruptOnTerminalCount
    }
}

/// One count being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The initial count in CLK pulses: 1..=65536 (binary) or 1..=10000 (BCD;
    /// up to 16665 with non-BCD digits).
    pub n: u32,
    /// The CLK pulse that moves the count from CR into CE.
    pub load_tick: u64,
    /// Counting resumes after this pulse (at least `load_tick`).
    pub from_tick: u64,
    /// Pulses counted at `from_tick`.
    pub k0: u64,
    /// GATE is low in a mode where that stops counting.
    pub suspended: bool,
    /// OUT was low just before `load_tick` and is high at it (a rising edge).
    pub rise_at_load: bool,
}

impl Segment {
    /// A count `n` loaded at pulse `load_tick`, counting unless `suspended`.
    pub fn new(n: u32, load_tick: u64, suspended: bool) -> Self {
        Self {
            n,
            load_tick,
            from_tick: load_tick,
            k0: 0,
            suspended,
            rise_at_load: false,
        }
    }

    /// Pulses counted by `tick` (meaningful for `tick >= load_tick`).
    pub fn k(&self, tick: u64) -> u64 {
        if self.suspended || tick <= self.from_tick {
            self.k0
        } else {
            self.k0.saturating_add(tick - self.from_tick)
        }
    }

    /// Stops counting at `tick` (GATE went low).
    pub fn suspend(&mut self, tick: u64) {
        self.k0 = self.k(tick);
        self.from_tick = tick.max(self.load_tick);
        self.suspended = true;
    }

    /// Resumes counting after `tick` (GATE went high).
    pub fn resume(&mut self, tick: u64) {
        self.from_tick = tick.max(self.load_tick);
        self.suspended = false;
    }

    /// Pulses of the high half of a mode 3 period: N/2 for even N,
    /// (N+1)/2 for odd N (datasheet, mode 3).
    fn high_half(n: u64) -> u64 {
        n.div_ceil(2)
    }

    /// OUT at `tick` (`tick >= load_tick`).
    pub fn out(&self, mode: Mode, tick: u64) -> bool {
        let k = self.k(tick);
        let n = u64::from(self.n);
        match mode {
            // Mode 0: OUT goes high when the count reaches zero and stays high.
            // Mode 1: OUT low from the load pulse until the count reaches zero.
            Mode::InterruptOnTerminalCount | Mode::OneShot => k >= n,
            // Mode 2: OUT low for one pulse while CE holds 1; GATE low forces
            // OUT high. A count of 1 is illegal; OUT then stays high here.
            Mode::RateGenerator => self.suspended || n < 2 || k % n != n - 1,
            // Mode 3: high for ceil(N/2) pulses, low for floor(N/2); GATE low
            // forces OUT high. A count of 1 keeps OUT high.
            Mode::SquareWave => self.suspended || n < 2 || k % n < Self::high_half(n),
            // Modes 4 and 5: OUT low for the one pulse at which the count
            // reaches zero, once per loaded count.
            Mode::SoftwareStrobe | Mode::HardwareStrobe => k != n,
        }
    }

    /// The number in CE at `tick` (`tick >= load_tick`), reduced to `modulus`
    /// (65536 binary, 10000 BCD).
    pub fn ce(&self, mode: Mode, modulus: u32, tick: u64) -> u32 {
        let k = self.k(tick);
        let n = u64::from(self.n);
        let m = u64::from(modulus.max(1));
        let v = match mode {
            // Counting continues past zero, wrapping to FFFF (9999 in BCD).
            Mode::InterruptOnTerminalCount
            | Mode::OneShot
            | Mode::SoftwareStrobe
            | Mode::HardwareStrobe => (n % m + m - k % m) % m,
            // N, N-1, ..., 1, then N again (reloaded on the pulse after 1).
            Mode::RateGenerator => n - k % n.max(1),
            Mode::SquareWave => Self::square_ce(n, k),
        };
        // v <= n <= 65536 before the reduction, so the result fits.
        (v % m) as u32
    }

    /// Mode 3 CE contents: even N loads N and counts down by two each pulse,
    /// reloading when it expires; odd N loads N-1, counts down by two, and
    /// on the high half holds the expired 0 for one pulse before OUT falls
    /// (datasheet, mode 3, "even counts" / "odd counts").
    fn square_ce(n: u64, k: u64) -> u64 {
        if n < 2 {
            return n.saturating_sub(1);
        }
        let p = k % n;
        if n.is_multiple_of(2) {
            n - 2 * (p % (n / 2))
        } else {
            let h = Self::high_half(n);
            if p < h {
                n - 1 - 2 * p
            } else {
                n - 1 - 2 * (p - h)
            }
        }
    }

    /// The first pulse after `after` at which OUT rises (low before, high at it).
    pub fn next_rise(&self, mode: Mode, after: u64) -> Option<u64> {
        if self.rise_at_load && after < self.load_tick {
            return Some(self.load_tick);
        }
        if self.suspended {
            return None;
        }
        let n = u64::from(self.n);
        // Pulses counted at max(after, from_tick); a rise needs a larger k.
        let counted = self.k0.saturating_add(after.saturating_sub(self.from_tick));
        let k_rise = match mode {
            Mode::InterruptOnTerminalCount | Mode::OneShot => n,
            // Rises where the period restarts: k = N, 2N, ...
            Mode::RateGenerator | Mode::SquareWave => {
                if n < 2 {
                    return None;
                }
                (counted / n).checked_add(1)?.checked_mul(n)?
            }
            Mode::SoftwareStrobe | Mode::HardwareStrobe => n + 1,
        };
        if k_rise <= counted {
            return None;
        }
        self.from_tick.checked_add(k_rise - self.k0)
    }

    /// Modes 2 and 3 while counting: the pulse at which a newly written count
    /// takes over (mode 2: the end of the current period; mode 3: the end of
    /// the current half-cycle), and whether that starts a low half.
    pub fn next_reload(&self, mode: Mode, now: u64) -> Option<(u64, bool)> {
        let k = self.k(now);
        let n = u64::from(self.n).max(1);
        let (k_reload, starts_low) = match mode {
            Mode::RateGenerator => ((k / n).checked_add(1)?.checked_mul(n)?, false),
            Mode::SquareWave if n.is_multiple_of(2) => {
                let h = n / 2;
                let kr = (k / h).checked_add(1)?.checked_mul(h)?;
                (kr, kr % n == h)
            }
            Mode::SquareWave => {
                let h = Self::high_half(n);
                let p = k % n;
                if p < h {
                    ((k - p).checked_add(h)?, true)
                } else {
                    ((k - p).checked_add(n)?, false)
                }
            }
            _ => return None,
        };
        let tick = self.from_tick.checked_add(k_reload.checked_sub(self.k0)?)?;
        Some((tick, starts_low))
    }

    /// The segment that takes over at `tick` with count `n` after
    /// [`next_reload`](Self::next_reload); `prev_out` is OUT just before.
    pub fn reloaded(mode: Mode, n: u32, tick: u64, starts_low: bool, prev_out: bool) -> Self {
        let mut s = Self::new(n, tick, false);
        if starts_low {
            s.k0 = Self::high_half(u64::from(n));
        }
        s.rise_at_load = !prev_out && s.out(mode, tick);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(mode: Mode, n: u32, ticks: u64) -> (Vec<u32>, Vec<bool>) {
        let s = Segment::new(n, 10, false);
        (10..10 + ticks)
            .map(|t| (s.ce(mode, 65536, t), s.out(mode, t)))
            .unzip()
    }

    #[test]
    fn mode_waveforms() {
        // (mode, N, CE from the load pulse on, OUT from the load pulse on)
        type Case = (Mode, u32, &'static [u32], &'static [bool]);
        const H: bool = true;
        const L: bool = false;
        let cases: &[Case] = &[
            (
                Mode::InterruptOnTerminalCount,
                3,
                &[3, 2, 1, 0, 65535, 65534],
                &[L, L, L, H, H, H],
            ),
            (Mode::OneShot, 2, &[2, 1, 0, 65535], &[L, L, H, H]),
            (
                Mode::RateGenerator,
                3,
                &[3, 2, 1, 3, 2, 1, 3],
                &[H, H, L, H, H, L, H],
            ),
            (
                Mode::SquareWave,
                4,
                &[4, 2, 4, 2, 4, 2],
                &[H, H, L, L, H, H],
            ),
            (
                Mode::SquareWave,
                5,
                &[4, 2, 0, 4, 2, 4, 2, 0],
                &[H, H, H, L, L, H, H, H],
            ),
            (
                Mode::SoftwareStrobe,
                2,
                &[2, 1, 0, 65535, 65534],
                &[H, H, L, H, H],
            ),
            (Mode::HardwareStrobe, 1, &[1, 0, 65535], &[H, L, H]),
        ];
        for &(mode, n, ce, out) in cases {
            let (got_ce, got_out) = trace(mode, n, ce.len() as u64);
            assert_eq!(got_ce, ce, "{mode:?} N={n}");
            assert_eq!(got_out, out, "{mode:?} N={n}");
        }
    }

    #[test]
    fn rises_match_the_waveform() {
        for mode in [
            Mode::InterruptOnTerminalCount,
            Mode::OneShot,
            Mode::RateGenerator,
            Mode::SquareWave,
            Mode::SoftwareStrobe,
            Mode::HardwareStrobe,
        ] {
            for n in [1u32, 2, 3, 4, 5, 7] {
                let s = Segment::new(n, 10, false);
                let mut expect = vec![];
                for t in 11..60 {
                    if !s.out(mode, t - 1) && s.out(mode, t) {
                        expect.push(t);
                    }
                }
                let mut got = vec![];
                let mut after = 10;
                while let Some(r) = s.next_rise(mode, after) {
                    if r >= 60 {
                        break;
                    }
                    got.push(r);
                    after = r;
                }
                assert_eq!(got, expect, "{mode:?} N={n}");
            }
        }
    }

    #[test]
    fn suspension_freezes_the_count() {
        let mut s = Segment::new(10, 0, false);
        s.suspend(4);
        let m = Mode::InterruptOnTerminalCount;
        assert_eq!(s.ce(m, 65536, 100), 6);
        assert_eq!(s.next_rise(m, 100), None);
        s.resume(100);
        assert_eq!(s.ce(m, 65536, 101), 5);
        assert_eq!(s.next_rise(m, 100), Some(106));
    }

    #[test]
    fn reload_points() {
        let s = Segment::new(4, 0, false);
        // Mode 2: at the end of the period.
        assert_eq!(s.next_reload(Mode::RateGenerator, 1), Some((4, false)));
        assert_eq!(s.next_reload(Mode::RateGenerator, 4), Some((8, false)));
        // Mode 3 even: each half-cycle.
        assert_eq!(s.next_reload(Mode::SquareWave, 1), Some((2, true)));
        assert_eq!(s.next_reload(Mode::SquareWave, 2), Some((4, false)));
        let odd = Segment::new(5, 0, false);
        assert_eq!(odd.next_reload(Mode::SquareWave, 0), Some((3, true)));
        assert_eq!(odd.next_reload(Mode::SquareWave, 3), Some((5, false)));
        let r = Segment::reloaded(Mode::SquareWave, 6, 3, true, true);
        assert!(!r.out(Mode::SquareWave, 3));
        assert_eq!(r.next_rise(Mode::SquareWave, 3), Some(6));
    }
}
