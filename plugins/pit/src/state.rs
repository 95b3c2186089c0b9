//! Byte encoding of the PIT's saved state.
//!
//! Version 1 layout, little-endian:
//! - `age_ns: u64` — how long before "now" CLK pulse 0 lies; the restoring
//!   device puts pulse 0 that far before its own `now_ns`, so every count
//!   continues from where it was whatever the new host's clock reads;
//! - port B: `control: u8` (bits 0-3), `refresh: u8` (0/1);
//! - `irq_seen_tick: u64`;
//! - three counters of [`COUNTER_BYTES`] bytes each:
//!   `control u8, cr u16, flags u8, count_latch u16, status_latch u8,
//!   held_ce u16, seg_n u32, seg_load u64, seg_from u64, seg_k0 u64,
//!   seg_flags u8, pending_n u32, pending_at u64, pending_flags u8,
//!   transfer_tick u64, transfer_flags u8`.
//!
//! Pulse numbers count from pulse 0 of the time base.

use crate::counter::{Counter, Pending};
use crate::segment::{Mode, Segment};
use crate::system_port::{SystemPort, WRITABLE};
use hyperplug_plugin_api::PluginError;

/// Format version written by [`encode`].
pub const STATE_VERSION: u32 = 1;
/// Bytes per counter.
pub const COUNTER_BYTES: usize = 1 + 2 + 1 + 2 + 1 + 2 + 4 + 8 + 8 + 8 + 1 + 4 + 8 + 1 + 8 + 1;
/// Total bytes of a version 1 state.
pub const STATE_BYTES: usize = 8 + 2 + 8 + 3 * COUNTER_BYTES;

/// Counter `flags` bits.
const F_CR_VALID: u8 = 1 << 0;
const F_WRITE_MSB: u8 = 1 << 1;
const F_READ_MSB: u8 = 1 << 2;
const F_GATE: u8 = 1 << 3;
const F_HELD_OUT: u8 = 1 << 4;
const F_COUNT_LATCH: u8 = 1 << 5;
const F_STATUS_LATCH: u8 = 1 << 6;
const F_SEGMENT: u8 = 1 << 7;
/// Segment flags.
const S_SUSPENDED: u8 = 1 << 0;
const S_RISE_AT_LOAD: u8 = 1 << 1;
/// Pending flags.
const P_PRESENT: u8 = 1 << 0;
const P_STARTS_LOW: u8 = 1 << 1;

/// Largest count a CR can denote (16665 for non-BCD digits in BCD mode).
const MAX_COUNT: u32 = 65_536;

/// Everything the PIT saves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Nanoseconds from CLK pulse 0 to the moment of saving.
    pub age_ns: u64,
    /// Port 0x61.
    pub port_b: SystemPort,
    /// Counter 0 edges up to this pulse were delivered.
    pub irq_seen_tick: u64,
    /// The three counters.
    pub counters: [Counter; 3],
}

fn put_counter(out: &mut Vec<u8>, c: &Counter) {
    let flag = |b: bool, f: u8| if b { f } else { 0 };
    let flags = flag(c.cr_valid, F_CR_VALID)
        | flag(c.write_msb_next, F_WRITE_MSB)
        | flag(c.read_msb_next, F_READ_MSB)
        | flag(c.gate, F_GATE)
        | flag(c.held_out, F_HELD_OUT)
        | flag(c.count_latch.is_some(), F_COUNT_LATCH)
        | flag(c.status_latch.is_some(), F_STATUS_LATCH)
        | flag(c.seg.is_some(), F_SEGMENT);
    out.push(c.control);
    out.extend_from_slice(&c.cr.to_le_bytes());
    out.push(flags);
    out.extend_from_slice(&c.count_latch.unwrap_or(0).to_le_bytes());
    out.push(c.status_latch.unwrap_or(0));
    out.extend_from_slice(&c.held_ce.to_le_bytes());
    let s = c.seg.unwrap_or(Segment::new(0, 0, false));
    out.extend_from_slice(&s.n.to_le_bytes());
    out.extend_from_slice(&s.load_tick.to_le_bytes());
    out.extend_from_slice(&s.from_tick.to_le_bytes());
    out.extend_from_slice(&s.k0.to_le_bytes());
    out.push(flag(s.suspended, S_SUSPENDED) | flag(s.rise_at_load, S_RISE_AT_LOAD));
    let p = c.pending;
    out.extend_from_slice(&p.map_or(0, |p| p.n).to_le_bytes());
    out.extend_from_slice(&p.map_or(0, |p| p.at).to_le_bytes());
    out.push(p.map_or(0, |p| P_PRESENT | flag(p.starts_low, P_STARTS_LOW)));
    out.extend_from_slice(&c.transfer_tick.unwrap_or(0).to_le_bytes());
    out.push(u8::from(c.transfer_tick.is_some()));
}

/// Serializes `s`.
pub fn encode(s: &Snapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(STATE_BYTES);
    out.extend_from_slice(&s.age_ns.to_le_bytes());
    out.push(s.port_b.control);
    out.push(u8::from(s.port_b.refresh));
    out.extend_from_slice(&s.irq_seen_tick.to_le_bytes());
    for c in &s.counters {
        put_counter(&mut out, c);
    }
    out
}

/// A cursor over the saved bytes (lengths are checked up front).
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        if let Some(src) = self.data.get(self.pos..self.pos + N) {
            b.copy_from_slice(src);
        }
        self.pos += N;
        b
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

fn bad(i: usize, what: &str) -> PluginError {
    PluginError::invalid(format!("pit state: counter {i}: {what}"))
}

fn flag_byte(i: usize, v: u8, allowed: u8, what: &str) -> Result<u8, PluginError> {
    if v & !allowed != 0 {
        return Err(bad(
            i,
            &format!("unknown {what} bits {:#04x}", v & !allowed),
        ));
    }
    Ok(v)
}

fn get_counter(r: &mut Reader<'_>, i: usize) -> Result<Counter, PluginError> {
    let control = r.u8();
    if control > 0x3f || (control >> 4) & 3 == 0 {
        return Err(bad(
            i,
            &format!("control bits {control:#04x} are not a mode control word"),
        ));
    }
    let cr = r.u16();
    let flags = r.u8();
    let count_latch = r.u16();
    let status_latch = r.u8();
    let held_ce = r.u16();
    let seg = Segment {
        n: r.u32(),
        load_tick: r.u64(),
        from_tick: r.u64(),
        k0: r.u64(),
        suspended: false,
        rise_at_load: false,
    };
    let seg_flags = flag_byte(i, r.u8(), S_SUSPENDED | S_RISE_AT_LOAD, "segment flag")?;
    let (p_n, p_at) = (r.u32(), r.u64());
    let p_flags = flag_byte(i, r.u8(), P_PRESENT | P_STARTS_LOW, "pending flag")?;
    let transfer = r.u64();
    let t_flags = flag_byte(i, r.u8(), 1, "transfer flag")?;
    let has_seg = flags & F_SEGMENT != 0;
    let seg = has_seg.then_some(Segment {
        suspended: seg_flags & S_SUSPENDED != 0,
        rise_at_load: seg_flags & S_RISE_AT_LOAD != 0,
        ..seg
    });
    if let Some(s) = seg {
        if s.n == 0 || s.n > MAX_COUNT {
            return Err(bad(i, &format!("count {} is outside 1..={MAX_COUNT}", s.n)));
        }
        if s.from_tick < s.load_tick {
            return Err(bad(i, "counting resumes before the count was loaded"));
        }
    }
    let pending = (p_flags & P_PRESENT != 0).then_some(Pending {
        n: p_n,
        at: p_at,
        starts_low: p_flags & P_STARTS_LOW != 0,
    });
    if let Some(p) = pending {
        let mode = Mode::from_bits(control >> 1);
        if !matches!(mode, Mode::RateGenerator | Mode::SquareWave) || seg.is_none() {
            return Err(bad(
                i,
                "a pending reload needs a counting mode 2 or 3 counter",
            ));
        }
        if p.n == 0 || p.n > MAX_COUNT {
            return Err(bad(
                i,
                &format!("pending count {} is outside 1..={MAX_COUNT}", p.n),
            ));
        }
    }
    Ok(Counter {
        control,
        cr,
        cr_valid: flags & F_CR_VALID != 0,
        write_msb_next: flags & F_WRITE_MSB != 0,
        read_msb_next: flags & F_READ_MSB != 0,
        count_latch: (flags & F_COUNT_LATCH != 0).then_some(count_latch),
        status_latch: (flags & F_STATUS_LATCH != 0).then_some(status_latch),
        gate: flags & F_GATE != 0,
        held_ce,
        held_out: flags & F_HELD_OUT != 0,
        seg,
        pending,
        transfer_tick: (t_flags != 0).then_some(transfer),
    })
}

/// Parses a state written by [`encode`] with format `version`.
pub fn decode(version: u32, data: &[u8]) -> Result<Snapshot, PluginError> {
    if version != STATE_VERSION {
        return Err(PluginError::invalid(format!(
            "pit state version {version} is not supported (this plugin reads version {STATE_VERSION})"
        )));
    }
    if data.len() != STATE_BYTES {
        return Err(PluginError::invalid(format!(
            "pit state has {} bytes, expected {STATE_BYTES}",
            data.len()
        )));
    }
    let mut r = Reader { data, pos: 0 };
    let age_ns = r.u64();
    let control = r.u8();
    let refresh = r.u8();
    if control & !WRITABLE != 0 || refresh > 1 {
        return Err(PluginError::invalid(format!(
            "pit state: port 0x61 bits {control:#04x}/{refresh:#04x} are not a valid port B state"
        )));
    }
    let port_b = SystemPort {
        control,
        refresh: refresh != 0,
    };
    let irq_seen_tick = r.u64();
    let counters = [
        get_counter(&mut r, 0)?,
        get_counter(&mut r, 1)?,
        get_counter(&mut r, 2)?,
    ];
    for (i, c) in counters.iter().enumerate() {
        let want = if i == 2 { port_b.gate2() } else { true };
        if c.gate != want {
            return Err(bad(
                i,
                "GATE does not match its wiring (high on 0 and 1, port 0x61 bit 0 on 2)",
            ));
        }
    }
    Ok(Snapshot {
        age_ns,
        port_b,
        irq_seen_tick,
        counters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let mut c0 = Counter::new(true);
        c0.program(0, 0x34);
        c0.write(0, 0x10);
        c0.write(0, 0x00);
        c0.write(5, 0x20);
        c0.write(5, 0x00);
        c0.latch_count(7);
        c0.latch_status(7);
        let mut c2 = Counter::new(true);
        c2.program(0, 0x17);
        c2.write(0, 0x99);
        Snapshot {
            age_ns: 123_456_789,
            port_b: SystemPort {
                control: 0x03,
                refresh: true,
            },
            irq_seen_tick: 42,
            counters: [c0, Counter::new(true), c2],
        }
    }

    #[test]
    fn round_trip() {
        let s = sample();
        assert!(
            s.counters[0].pending.is_some(),
            "sample covers a pending reload"
        );
        let bytes = encode(&s);
        assert_eq!(bytes.len(), STATE_BYTES);
        assert_eq!(&bytes[..8], &123_456_789u64.to_le_bytes());
        assert_eq!(decode(STATE_VERSION, &bytes).unwrap(), s);
    }

    #[test]
    fn malformed_states_are_rejected() {
        let good = encode(&sample());
        let c0 = 18; // first counter byte
        let c1 = c0 + COUNTER_BYTES;
        let patch = |at: usize, bytes: &[u8]| {
            let mut v = good.clone();
            v[at..at + bytes.len()].copy_from_slice(bytes);
            v
        };
        let seg_n = c0 + 9;
        let seg_load = seg_n + 4;
        let cases: Vec<(u32, Vec<u8>, &str)> = vec![
            (2, good.clone(), "version 2 is not supported"),
            (1, good[..STATE_BYTES - 1].to_vec(), "expected"),
            (1, [good.as_slice(), &[0]].concat(), "expected"),
            (1, patch(8, &[0x10]), "not a valid port B state"),
            (1, patch(9, &[2]), "not a valid port B state"),
            (1, patch(c0, &[0x04]), "not a mode control word"),
            (1, patch(c0, &[0x40]), "not a mode control word"),
            (1, patch(seg_n, &0u32.to_le_bytes()), "outside 1..=65536"),
            (
                1,
                patch(seg_n, &65_537u32.to_le_bytes()),
                "outside 1..=65536",
            ),
            (
                1,
                patch(seg_load, &u64::MAX.to_le_bytes()),
                "resumes before",
            ),
            (
                1,
                patch(c0 + 3, &[good[c0 + 3] & !F_GATE]),
                "GATE does not match",
            ),
            (1, patch(c1, &[0x34]), "ok"),
            (1, patch(c0 + 37, &[0x04]), "unknown segment flag bits"),
        ];
        for (v, data, msg) in cases {
            let got = decode(v, &data);
            if msg == "ok" {
                assert!(got.is_ok(), "{got:?}");
                continue;
            }
            let e = got.unwrap_err();
            assert!(e.message.contains(msg), "{msg}: {}", e.message);
        }
    }
}
