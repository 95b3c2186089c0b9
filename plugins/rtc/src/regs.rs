//! MC146818A register indices and bits (Motorola MC146818A datasheet,
//! "Address Map" figure and "Register A/B/C/D" sections), plus the PC/AT
//! CMOS RAM layout the BIOS fills in (IBM PC AT Technical Reference, "CMOS
//! RAM Address Map"; bytes 0x5b-0x5f as QEMU and SeaBIOS use them).

/// Seconds.
pub const SECONDS: u8 = 0x00;
/// Seconds alarm.
pub const SECONDS_ALARM: u8 = 0x01;
/// Minutes.
pub const MINUTES: u8 = 0x02;
/// Minutes alarm.
pub const MINUTES_ALARM: u8 = 0x03;
/// Hours.
pub const HOURS: u8 = 0x04;
/// Hours alarm.
pub const HOURS_ALARM: u8 = 0x05;
/// Day of week (1 = Sunday).
pub const DAY_OF_WEEK: u8 = 0x06;
/// Day of month.
pub const DAY_OF_MONTH: u8 = 0x07;
/// Month.
pub const MONTH: u8 = 0x08;
/// Year within the century (0-99).
pub const YEAR: u8 = 0x09;
/// Register A.
pub const REG_A: u8 = 0x0a;
/// Register B.
pub const REG_B: u8 = 0x0b;
/// Register C.
pub const REG_C: u8 = 0x0c;
/// Register D.
pub const REG_D: u8 = 0x0d;
/// Century (IBM PC AT convention; the ACPI FADT CENTURY field names it).
pub const CENTURY: u8 = 0x32;

/// The time and calendar registers the clock counts (not the alarms).
pub const TIME_REGS: [u8; 8] = [
    SECONDS,
    MINUTES,
    HOURS,
    DAY_OF_WEEK,
    DAY_OF_MONTH,
    MONTH,
    YEAR,
    CENTURY,
];

/// Register A: update in progress (read-only).
pub const A_UIP: u8 = 0x80;
/// Register A: divider select bits DV2-DV0.
pub const A_DV_MASK: u8 = 0x70;
/// Register A: DV = 010, the 32.768 kHz time base of the PC.
pub const A_DV_32KHZ: u8 = 0x20;
/// Register A: rate select bits RS3-RS0.
pub const A_RS_MASK: u8 = 0x0f;

/// Register B: SET, inhibits updates.
pub const B_SET: u8 = 0x80;
/// Register B: periodic interrupt enable.
pub const B_PIE: u8 = 0x40;
/// Register B: alarm interrupt enable.
pub const B_AIE: u8 = 0x20;
/// Register B: update-ended interrupt enable.
pub const B_UIE: u8 = 0x10;
/// Register B: square-wave enable.
pub const B_SQWE: u8 = 0x08;
/// Register B: data mode, 1 = binary, 0 = BCD.
pub const B_DM: u8 = 0x04;
/// Register B: 1 = 24-hour mode, 0 = 12-hour mode.
pub const B_24H: u8 = 0x02;
/// Register B: daylight-savings enable.
pub const B_DSE: u8 = 0x01;

/// Register C: interrupt request flag.
pub const C_IRQF: u8 = 0x80;
/// Register C: periodic interrupt flag.
pub const C_PF: u8 = 0x40;
/// Register C: alarm interrupt flag.
pub const C_AF: u8 = 0x20;
/// Register C: update-ended interrupt flag.
pub const C_UF: u8 = 0x10;

/// Register D: valid RAM and time.
pub const D_VRT: u8 = 0x80;

/// CMOS: shutdown status.
pub const CMOS_SHUTDOWN: u8 = 0x0f;
/// CMOS: equipment byte.
pub const CMOS_EQUIPMENT: u8 = 0x14;
/// CMOS: base memory in KiB, low byte (high byte at 0x16).
pub const CMOS_BASE_MEM: u8 = 0x15;
/// CMOS: extended memory above 1 MiB in KiB, low byte (high at 0x18).
pub const CMOS_EXT_MEM: u8 = 0x17;
/// CMOS: checksum of 0x10-0x2d, high byte (low byte at 0x2f).
pub const CMOS_CHECKSUM: u8 = 0x2e;
/// CMOS: extended memory above 1 MiB in KiB as found by POST, low byte (high at 0x31).
pub const CMOS_EXT_MEM_POST: u8 = 0x30;
/// CMOS: memory above 16 MiB (below 4 GiB) in 64 KiB units, low byte (high at 0x35).
pub const CMOS_MEM_ABOVE_16M: u8 = 0x34;
/// CMOS: memory above 4 GiB in 64 KiB units, three bytes little-endian.
pub const CMOS_MEM_ABOVE_4G: u8 = 0x5b;
/// CMOS: number of CPUs minus one.
pub const CMOS_CPUS_MINUS_1: u8 = 0x5f;
