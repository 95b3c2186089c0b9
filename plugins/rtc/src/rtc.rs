//! The MC146818A register file and its behaviour.
//!
//! The clock holds the time as a count of seconds (Unix epoch, UTC as the
//! guest set it) that the update cycle advances; the time registers are
//! computed from it while the clock runs. While updates are stopped (SET = 1,
//! or the divider not at DV = 010) the registers are plain bytes the guest
//! may write, and counting resumes from what they hold. Choices, documented:
//! - Changing DM or 24/12 while the clock runs re-encodes the time in the
//!   new format (the datasheet asks software to reinitialise the time after
//!   a mode change anyway); alarm bytes are kept as written.
//! - Out-of-range time values written by the guest are clamped when counting
//!   resumes (seconds/minutes to 59, hours to 23, month to 1-12, day to 1-31,
//!   a day past the month's end rolls into the next month).
//! - The day of week is a separate counter in the chip: its offset from the
//!   true weekday of the date is kept, so a guest-set weekday stays set.
//! - DSE (daylight saving) and SQWE are stored but not acted on: a PC has no
//!   SQW pin, and PC BIOSes and Linux leave DSE at 0.
//! - Only DV = 010 (the PC's 32.768 kHz crystal) runs the divider; any other
//!   value stops it like the reset values 11x do.

use crate::calendar::{civil_from_secs, secs_from_civil, Civil, Encoding, SECS_PER_DAY};
use crate::clock::{Divider, NS_PER_SEC, UIP_LEAD_NS};
use crate::regs::*;
use hyperplug_plugin_api::device::{HostServices, TIMER_OFF};

/// The one timer id the RTC uses: the next event that may raise IRQF.
pub const TIMER_ID: u32 = 0;
/// Register A after power-on as a PC BIOS leaves it: DV = 010, RS = 0110 (1024 Hz).
pub const POWER_ON_A: u8 = 0x26;
/// Register B after power-on as a PC BIOS leaves it: 24-hour, BCD.
pub const POWER_ON_B: u8 = B_24H;

/// The MC146818A with its 128-byte CMOS RAM and the port-0x70 latch.
pub struct Rtc {
    pub(crate) host: HostServices,
    pub(crate) irq: u32,
    /// Port 0x70 bits 6:0.
    pub(crate) index: u8,
    /// Port 0x70 bit 7 (a PC chipset latch, not part of the MC146818A).
    pub(crate) nmi_disabled: bool,
    /// Bytes 0x00-0x7f; the time registers here are live only while stopped.
    pub(crate) ram: [u8; 128],
    pub(crate) divider: Divider,
    /// Seconds count before update 1 (time = base + updates so far).
    pub(crate) count_base: i64,
    /// Weekday register minus the date's true weekday, mod 7.
    pub(crate) weekday_offset: u8,
    /// Virtual time up to which flags have been brought.
    pub(crate) synced_ns: i64,
    /// Register C bits PF, AF, UF.
    pub(crate) flags: u8,
    /// The level last driven on the IRQ line.
    pub(crate) line: bool,
}

impl Rtc {
    /// A clock showing `secs` (+ `subsec_ns`) at the host's current virtual time.
    pub fn new(host: HostServices, irq: u32, secs: i64, subsec_ns: u32, ram: [u8; 128]) -> Self {
        let now = now_of(&host);
        let mut rtc = Self {
            host,
            irq,
            index: 0,
            nmi_disabled: false,
            ram,
            // The next update comes when the host's second ends.
            divider: Divider {
                origin_ns: now - i64::from(subsec_ns) - NS_PER_SEC / 2,
            },
            count_base: 0,
            weekday_offset: 0,
            synced_ns: now,
            flags: 0,
            line: false,
        };
        rtc.ram[usize::from(REG_A)] = POWER_ON_A;
        rtc.ram[usize::from(REG_B)] = POWER_ON_B;
        rtc.count_base = secs - rtc.divider.updates_by(now);
        rtc
    }

    /// Whether port 0x70 bit 7 (NMI disable) was last written as 1.
    pub fn nmi_disabled(&self) -> bool {
        self.nmi_disabled
    }

    /// The register index last written to port 0x70.
    pub fn index(&self) -> u8 {
        self.index
    }

    pub(crate) fn now(&self) -> i64 {
        now_of(&self.host)
    }

    fn reg(&self, i: u8) -> u8 {
        self.ram[usize::from(i)]
    }

    fn encoding(&self) -> Encoding {
        let b = self.reg(REG_B);
        Encoding {
            binary: b & B_DM != 0,
            hour24: b & B_24H != 0,
        }
    }

    fn divider_running(&self) -> bool {
        self.reg(REG_A) & A_DV_MASK == A_DV_32KHZ
    }

    /// Whether update cycles happen (divider running and SET clear).
    pub(crate) fn clock_running(&self) -> bool {
        self.divider_running() && self.reg(REG_B) & B_SET == 0
    }

    fn count_at(&self, t: i64) -> i64 {
        self.count_base + self.divider.updates_by(t)
    }

    /// The byte time register `i` shows for seconds count `count`.
    fn time_byte(&self, i: u8, count: i64) -> u8 {
        let e = self.encoding();
        let c = civil_from_secs(count);
        let year = c.year.rem_euclid(10_000) as u16;
        match i {
            SECONDS => e.num(c.second),
            MINUTES => e.num(c.minute),
            HOURS => e.hour(c.hour),
            DAY_OF_WEEK => (c.weekday - 1 + self.weekday_offset) % 7 + 1,
            DAY_OF_MONTH => e.num(c.day),
            MONTH => e.num(c.month),
            YEAR => e.num((year % 100) as u8),
            CENTURY => e.num((year / 100) as u8),
            _ => self.reg(i),
        }
    }

    /// Copies the running time into the register bytes.
    fn freeze_bytes(&mut self, count: i64) {
        for i in TIME_REGS {
            self.ram[usize::from(i)] = self.time_byte(i, count);
        }
    }

    /// The seconds count and weekday offset the register bytes hold.
    fn parse_bytes(&self) -> (i64, u8) {
        let e = self.encoding();
        let year = i64::from(e.decode(self.reg(YEAR)).min(99))
            + 100 * i64::from(e.decode(self.reg(CENTURY)).min(99));
        let civil = Civil {
            year,
            month: e.decode(self.reg(MONTH)).clamp(1, 12),
            day: e.decode(self.reg(DAY_OF_MONTH)).clamp(1, 31),
            hour: e.decode_hour(self.reg(HOURS)),
            minute: e.decode(self.reg(MINUTES)).min(59),
            second: e.decode(self.reg(SECONDS)).min(59),
            weekday: 1,
        };
        let count = secs_from_civil(&civil);
        let true_weekday = civil_from_secs(count).weekday;
        let reg = self.reg(DAY_OF_WEEK);
        let offset = if (1..=7).contains(&reg) {
            (reg + 7 - true_weekday) % 7
        } else {
            0
        };
        (count, offset)
    }

    /// Restarts counting from the register bytes at `now`.
    fn thaw_bytes(&mut self, now: i64) {
        let (count, offset) = self.parse_bytes();
        self.weekday_offset = offset;
        self.count_base = count - self.divider.updates_by(now);
    }

    /// Whether the alarm bytes match the time `count` (datasheet "Alarm":
    /// an alarm byte with its two high bits set, 0xc0-0xff, matches any value).
    fn alarm_matches(&self, count: i64) -> bool {
        let e = self.encoding();
        let tod = count.rem_euclid(SECS_PER_DAY);
        let now = [
            (SECONDS_ALARM, e.num((tod % 60) as u8)),
            (MINUTES_ALARM, e.num((tod / 60 % 60) as u8)),
            (HOURS_ALARM, e.hour((tod / 3600) as u8)),
        ];
        now.iter().all(|&(i, v)| {
            let a = self.reg(i);
            a >= 0xc0 || a == v
        })
    }

    /// Brings PF, AF and UF up to `now` (they are set whatever the enable
    /// bits say: datasheet "Register C"), then drives the IRQ line.
    pub(crate) fn sync(&mut self) {
        let now = self.now();
        if now > self.synced_ns {
            let rs = self.reg(REG_A) & A_RS_MASK;
            if self.divider_running()
                && self.divider.ticks_by(rs, now) > self.divider.ticks_by(rs, self.synced_ns)
            {
                self.flags |= C_PF;
            }
            if self.clock_running() {
                let (prev, cur) = (
                    self.divider.updates_by(self.synced_ns),
                    self.divider.updates_by(now),
                );
                if cur > prev {
                    self.flags |= C_UF;
                    // Every alarm pattern recurs within a day of updates.
                    let first = (prev + 1).max(cur - SECS_PER_DAY + 1);
                    if (first..=cur).any(|k| self.alarm_matches(self.count_base + k)) {
                        self.flags |= C_AF;
                    }
                }
            }
            self.synced_ns = now;
        }
        self.drive_line();
    }

    /// IRQF = PF·PIE + AF·AIE + UF·UIE (datasheet "Register C").
    pub(crate) fn irqf(&self) -> bool {
        let b = self.reg(REG_B);
        (b & B_PIE != 0 && self.flags & C_PF != 0)
            || (b & B_AIE != 0 && self.flags & C_AF != 0)
            || (b & B_UIE != 0 && self.flags & C_UF != 0)
    }

    /// The IRQ pin follows IRQF (it stays asserted until register C is read).
    fn drive_line(&mut self) {
        let level = self.irqf();
        if level != self.line {
            self.line = level;
            self.host.set_irq(self.irq, level);
        }
    }

    /// Arms the timer for the next event that could raise IRQF; none while
    /// IRQF is already set (nothing can change until register C is read).
    pub(crate) fn arm_timer(&self) {
        let deadline = self.next_event().unwrap_or(TIMER_OFF);
        self.host.set_timer(TIMER_ID, deadline);
    }

    fn next_event(&self) -> Option<u64> {
        if self.line {
            return None;
        }
        let now = self.now();
        let b = self.reg(REG_B);
        let rs = self.reg(REG_A) & A_RS_MASK;
        let mut next: Option<i64> = None;
        if b & B_PIE != 0 && self.divider_running() {
            let n = self.divider.ticks_by(rs, now);
            next = self.divider.tick_at(rs, n + 1);
        }
        if b & (B_UIE | B_AIE) != 0 && self.clock_running() {
            let u = self.divider.update_at(self.divider.updates_by(now) + 1);
            next = Some(next.map_or(u, |p| p.min(u)));
        }
        next.map(|t| t.max(0) as u64)
    }

    /// The value of register `i` as the guest reads it from port 0x71.
    pub(crate) fn read_reg(&mut self, i: u8) -> u8 {
        match i {
            REG_A => {
                let now = self.now();
                let next = self.divider.update_at(self.divider.updates_by(now) + 1);
                let uip = self.clock_running() && next - now <= UIP_LEAD_NS;
                self.reg(REG_A) | if uip { A_UIP } else { 0 }
            }
            REG_C => {
                self.sync();
                let v = self.flags | if self.irqf() { C_IRQF } else { 0 };
                self.flags = 0;
                self.drive_line();
                self.arm_timer();
                v
            }
            REG_D => D_VRT,
            i if TIME_REGS.contains(&i) && self.clock_running() => {
                let count = self.count_at(self.now());
                self.time_byte(i, count)
            }
            i => self.reg(i),
        }
    }

    /// A guest write of `v` to register `i` through port 0x71.
    pub(crate) fn write_reg(&mut self, i: u8, v: u8) {
        match i {
            REG_A | REG_B => {
                self.sync();
                let now = self.now();
                let was_dividing = self.divider_running();
                let was_running = self.clock_running();
                let count = self.count_at(now);
                let v = if i == REG_A {
                    v & !A_UIP
                } else if v & B_SET != 0 {
                    // Datasheet "Register B", UIE: cleared when SET goes high.
                    v & !B_UIE
                } else {
                    v
                };
                self.ram[usize::from(i)] = v;
                if !was_dividing && self.divider_running() {
                    // Leaving divider reset: the first update is 500 ms away.
                    self.divider = Divider { origin_ns: now };
                    self.synced_ns = now;
                }
                match (was_running, self.clock_running()) {
                    (true, false) => self.freeze_bytes(count),
                    (false, true) => self.thaw_bytes(now),
                    _ => {}
                }
                self.drive_line();
                self.arm_timer();
            }
            REG_C | REG_D => {}
            i if TIME_REGS.contains(&i) && self.clock_running() => {
                self.sync();
                let now = self.now();
                self.freeze_bytes(self.count_at(now));
                self.ram[usize::from(i)] = v;
                self.thaw_bytes(now);
            }
            i => {
                self.ram[usize::from(i)] = v;
                if matches!(i, SECONDS_ALARM | MINUTES_ALARM | HOURS_ALARM) {
                    self.sync();
                }
            }
        }
    }

    /// The RESET pin (datasheet "RESET"): clears PIE, AIE, UIE, SQWE and the
    /// register C flags, releasing IRQ; time, divider and RAM are kept (the
    /// clock is battery-backed). The port-0x70 latch returns to index 0 with
    /// NMIs enabled.
    pub(crate) fn pin_reset(&mut self) {
        self.sync();
        self.ram[usize::from(REG_B)] &= !(B_PIE | B_AIE | B_UIE | B_SQWE);
        self.flags = 0;
        self.index = 0;
        self.nmi_disabled = false;
        self.drive_line();
        self.arm_timer();
    }
}

fn now_of(host: &HostServices) -> i64 {
    i64::try_from(host.now_ns()).unwrap_or(i64::MAX)
}
