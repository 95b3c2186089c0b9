//! The local APIC timer (SDM 11.5.4): a 32-bit down-counter clocked by the
//! bus clock through the divide configuration register, in one-shot,
//! periodic or TSC-deadline mode (11.5.4.1).
//!
//! Time is the caller's virtual clock in nanoseconds. The counter is not
//! stepped: the current count is computed from the time elapsed since the
//! counter was (re)started, so reads at any `now_ns` are exact and the host
//! only has to wake the model at `deadline_ns`.

use super::lvt::TimerMode;

const NS_PER_S: u128 = 1_000_000_000;

/// Divide configuration bits the register implements: 0, 1 and 3 (Figure 11-10).
pub const DIVIDE_WRITABLE: u32 = 0xB;

/// Divisor encoded by a divide configuration value (SDM 11.5.4, Figure
/// 11-10): bits 3,1,0 = 000 → 2, 001 → 4, 010 → 8, 011 → 16, 100 → 32,
/// 101 → 64, 110 → 128, 111 → 1.
pub fn divisor(divide_config: u32) -> u64 {
    let code = ((divide_config >> 1) & 4) | (divide_config & 3);
    if code == 7 {
        1
    } else {
        2 << code
    }
}

/// Timer state of one local APIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApicTimer {
    timer_hz: u64,
    tsc_hz: u64,
    tsc_offset: u64,
    mode: TimerMode,
    initial: u32,
    divide: u32,
    running: bool,
    anchor_ns: u64,
    anchor_ticks: u64,
    expirations: u64,
    deadline_tsc: u64,
}

impl ApicTimer {
    /// A stopped timer: `timer_hz` is the bus clock before the divider,
    /// `tsc_hz` the guest TSC rate used by TSC-deadline mode.
    pub fn new(timer_hz: u64, tsc_hz: u64) -> Self {
        Self {
            timer_hz,
            tsc_hz,
            tsc_offset: 0,
            mode: TimerMode::OneShot,
            initial: 0,
            divide: 0,
            running: false,
            anchor_ns: 0,
            anchor_ticks: 0,
            expirations: 0,
            deadline_tsc: 0,
        }
    }

    /// RESET/INIT: counts and divide configuration 0, timer stopped, deadline
    /// cleared (SDM 11.4.7.1); the clock parameters stay.
    pub fn reset(&mut self) {
        *self = Self {
            tsc_offset: self.tsc_offset,
            ..Self::new(self.timer_hz, self.tsc_hz)
        };
    }

    /// Guest TSC = `tsc_offset` + now_ns × tsc_hz / 10⁹ (wrapping).
    pub fn set_tsc_offset(&mut self, offset: u64) {
        self.tsc_offset = offset;
    }

    /// The guest TSC at `now_ns` under this model's TSC mapping.
    pub fn tsc_at(&self, now_ns: u64) -> u64 {
        let t = u128::from(now_ns) * u128::from(self.tsc_hz) / NS_PER_S;
        self.tsc_offset.wrapping_add(t as u64)
    }

    fn ticks_between(&self, from_ns: u64, to_ns: u64) -> u64 {
        let dt = u128::from(to_ns.saturating_sub(from_ns));
        let den = NS_PER_S * u128::from(divisor(self.divide));
        u64::try_from(dt * u128::from(self.timer_hz) / den).unwrap_or(u64::MAX)
    }

    /// Divided ticks since the count started.
    fn elapsed_ticks(&self, now_ns: u64) -> u64 {
        self.anchor_ticks
            .saturating_add(self.ticks_between(self.anchor_ns, now_ns))
    }

    /// First time at which `ticks` divided ticks have elapsed.
    fn time_of_tick(&self, ticks: u64) -> u64 {
        let left = u128::from(ticks.saturating_sub(self.anchor_ticks));
        let num = left * NS_PER_S * u128::from(divisor(self.divide));
        let hz = u128::from(self.timer_hz);
        let ns = num.div_ceil(hz);
        u64::try_from(ns)
            .unwrap_or(u64::MAX)
            .saturating_add(self.anchor_ns)
    }

    fn deadline_ns_of(&self, tsc: u64) -> u64 {
        if tsc <= self.tsc_offset {
            return 0;
        }
        let left = u128::from(tsc - self.tsc_offset) * NS_PER_S;
        u64::try_from(left.div_ceil(u128::from(self.tsc_hz))).unwrap_or(u64::MAX)
    }

    /// Timer mode as last set from the LVT timer entry.
    pub fn mode(&self) -> TimerMode {
        self.mode
    }

    /// The LVT timer entry was written: a change of mode disarms the timer
    /// (SDM 11.5.4.1).
    pub fn set_mode(&mut self, mode: TimerMode) {
        if mode != self.mode {
            self.running = false;
            self.deadline_tsc = 0;
            self.mode = mode;
        }
    }

    /// Initial-count register value.
    pub fn initial(&self) -> u32 {
        self.initial
    }

    /// Writes the initial count: restarts counting from it; 0 stops the
    /// timer; ignored in TSC-deadline mode (SDM 11.5.4, 11.5.4.1).
    pub fn write_initial(&mut self, value: u32, now_ns: u64) {
        if self.mode == TimerMode::TscDeadline {
            return;
        }
        self.initial = value;
        self.running = value != 0;
        self.anchor_ns = now_ns;
        self.anchor_ticks = 0;
        self.expirations = 0;
    }

    /// Current-count register at `now_ns`: 0 when stopped, after a one-shot
    /// expiry, and always in TSC-deadline mode (SDM 11.5.4.1); periodic mode
    /// reloads the initial count each time the counter reaches zero.
    pub fn current(&self, now_ns: u64) -> u32 {
        if !self.running || self.initial == 0 {
            return 0;
        }
        let elapsed = self.elapsed_ticks(now_ns);
        let initial = u64::from(self.initial);
        match self.mode {
            TimerMode::OneShot => initial.saturating_sub(elapsed) as u32,
            TimerMode::Periodic => (initial - elapsed % initial) as u32,
            TimerMode::TscDeadline | TimerMode::Reserved => 0,
        }
    }

    /// Divide configuration register value.
    pub fn divide(&self) -> u32 {
        self.divide
    }

    /// Writes the divide configuration; the ticks already counted are kept
    /// and counting continues at the new rate from `now_ns`.
    pub fn write_divide(&mut self, value: u32, now_ns: u64) {
        self.anchor_ticks = self.elapsed_ticks(now_ns);
        self.anchor_ns = now_ns;
        self.divide = value & DIVIDE_WRITABLE;
    }

    /// IA32_TSC_DEADLINE as RDMSR sees it: the armed deadline in TSC-deadline
    /// mode, else 0 (SDM 11.5.4.1).
    pub fn tsc_deadline(&self) -> u64 {
        if self.mode == TimerMode::TscDeadline {
            self.deadline_tsc
        } else {
            0
        }
    }

    /// WRMSR IA32_TSC_DEADLINE: non-zero arms, zero disarms; ignored outside
    /// TSC-deadline mode (SDM 11.5.4.1).
    pub fn write_tsc_deadline(&mut self, value: u64) {
        if self.mode == TimerMode::TscDeadline {
            self.deadline_tsc = value;
        }
    }

    /// When the next expiry is due, in ns; None when nothing is armed.
    /// `masked` hides the periodic timer (its expiries would only be
    /// dropped); one-shot and deadline expiries are still reported so they
    /// are consumed.
    pub fn deadline_ns(&self, masked: bool) -> Option<u64> {
        match self.mode {
            TimerMode::OneShot if self.running && self.expirations == 0 => {
                Some(self.time_of_tick(u64::from(self.initial)))
            }
            TimerMode::Periodic if self.running && !masked => {
                let next = self.expirations.saturating_add(1);
                Some(self.time_of_tick(next.saturating_mul(u64::from(self.initial))))
            }
            TimerMode::TscDeadline if self.deadline_tsc != 0 => {
                Some(self.deadline_ns_of(self.deadline_tsc))
            }
            _ => None,
        }
    }

    /// Consumes the expiries due at `now_ns`; true when the counter reached
    /// zero (or the deadline passed) at least once since the last call.
    /// Several missed periods coalesce into one interrupt.
    pub fn expire(&mut self, now_ns: u64) -> bool {
        match self.mode {
            TimerMode::OneShot => {
                if self.running
                    && self.expirations == 0
                    && self.elapsed_ticks(now_ns) >= u64::from(self.initial)
                {
                    self.expirations = 1;
                    return true;
                }
                false
            }
            TimerMode::Periodic => {
                if !self.running {
                    return false;
                }
                let periods = self.elapsed_ticks(now_ns) / u64::from(self.initial);
                if periods > self.expirations {
                    self.expirations = periods;
                    return true;
                }
                false
            }
            TimerMode::TscDeadline => {
                if self.deadline_tsc != 0 && now_ns >= self.deadline_ns_of(self.deadline_tsc) {
                    self.deadline_tsc = 0;
                    return true;
                }
                false
            }
            TimerMode::Reserved => false,
        }
    }
}
