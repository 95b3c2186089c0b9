//! Instruction decoding with `iced_x86` and the decoded-instruction cache.
//!
//! Instructions are decoded with IP = 0, so every RIP-relative quantity iced
//! reports (near-branch targets, RIP-relative displacements) is relative to
//! the instruction's own start; the executor adds the real RIP. That makes a
//! decoded instruction independent of where it is mapped, so the cache is
//! keyed by the guest-physical address of its first byte and the bitness.
//!
//! Self-modifying code: every cached instruction's page is marked in a
//! 4096-bit filter; each committed guest write checks the filter and, on a
//! hit, drops the cached instructions of that page. Instructions that cross
//! a page boundary are never cached (their second page could be remapped
//! independently).

use crate::fast::{classify, is_safe, Fast};
use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction};

/// Number of cache slots (direct-mapped, a power of two).
pub const DCACHE_SLOTS: usize = 8192;

/// One decoded instruction with its bytes and what the engine derives
/// from it once, at decode time.
#[derive(Debug, Clone, Copy)]
pub struct Decoded {
    /// The instruction (decoded at IP 0).
    pub insn: Instruction,
    /// Its bytes (first `insn.len()` valid).
    pub bytes: [u8; 15],
    /// Its length.
    pub len: u8,
    /// Address size in bytes (2, 4, 8).
    pub asz: u8,
    /// Its general handler leaves paging, CPL, segments and the TLB alone.
    pub safe: bool,
    /// The fast-path form.
    pub(crate) fast: Fast,
}

#[derive(Clone, Copy)]
struct Slot {
    tag: u64,
    d: Decoded,
}

const EMPTY_TAG: u64 = u64::MAX;

/// The decoded-instruction cache.
pub struct DecodeCache {
    slots: Box<[Slot]>,
    filter: [u64; 64],
    /// Hits (for statistics).
    pub hits: u64,
    /// Misses.
    pub misses: u64,
    /// Pages invalidated by guest writes.
    pub invalidations: u64,
    /// Bumped whenever cached instructions are dropped (blocks built from
    /// them are stale then).
    pub(crate) generation: u64,
}

impl std::fmt::Debug for DecodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodeCache")
            .field("hits", &self.hits)
            .field("misses", &self.misses)
            .field("invalidations", &self.invalidations)
            .finish()
    }
}

impl Default for DecodeCache {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
fn tag(gpa: u64, bitness: u32) -> u64 {
    gpa | (u64::from(bitness) << 56)
}

#[inline]
fn index(gpa: u64) -> usize {
    ((gpa ^ (gpa >> 13).wrapping_mul(0x9e37)) as usize) & (DCACHE_SLOTS - 1)
}

#[inline]
fn filter_bit(gfn: u64) -> (usize, u64) {
    (((gfn >> 6) & 63) as usize, 1 << (gfn & 63))
}

impl DecodeCache {
    /// An empty cache.
    pub fn new() -> Self {
        let empty = Slot {
            tag: EMPTY_TAG,
            d: Decoded {
                insn: Instruction::default(),
                bytes: [0; 15],
                len: 0,
                asz: 0,
                safe: false,
                fast: Fast::None,
            },
        };
        Self {
            slots: vec![empty; DCACHE_SLOTS].into_boxed_slice(),
            filter: [0; 64],
            hits: 0,
            misses: 0,
            invalidations: 0,
            generation: 0,
        }
    }

    /// The cached instruction at `gpa` for `bitness`.
    #[inline]
    pub fn get(&mut self, gpa: u64, bitness: u32) -> Option<&Decoded> {
        let s = &self.slots[index(gpa)];
        if s.tag == tag(gpa, bitness) {
            self.hits += 1;
            Some(&s.d)
        } else {
            self.misses += 1;
            None
        }
    }

    /// The cached instruction at `gpa` for `bitness`, without counting.
    #[inline]
    pub(crate) fn peek(&self, gpa: u64, bitness: u32) -> Option<&Decoded> {
        let s = &self.slots[index(gpa)];
        (s.tag == tag(gpa, bitness)).then_some(&s.d)
    }

    /// Whether instructions of page `gfn` may be cached (a filter: false
    /// positives, no false negatives).
    #[inline]
    pub fn may_hold_page(&self, gfn: u64) -> bool {
        let (w, b) = filter_bit(gfn);
        self.filter[w] & b != 0
    }

    /// Caches `d` at `gpa` (it must not cross a page).
    pub fn insert(&mut self, gpa: u64, bitness: u32, d: Decoded) {
        let (w, b) = filter_bit(gpa >> 12);
        self.filter[w] |= b;
        self.slots[index(gpa)] = Slot {
            tag: tag(gpa, bitness),
            d,
        };
    }

    /// Notes a guest write of `len` bytes at `gpa`; drops cached instructions
    /// on the pages it touches. Returns whether anything could have been cached there.
    #[inline(always)]
    pub fn on_write(&mut self, gpa: u64, len: u64) -> bool {
        let first = gpa >> 12;
        let last = gpa.saturating_add(len.max(1) - 1) >> 12;
        if first == last {
            // One page (the common case): one filter test.
            let (w, b) = filter_bit(first);
            if self.filter[w] & b == 0 {
                return false;
            }
        }
        let mut hit = false;
        for gfn in first..=last {
            let (w, b) = filter_bit(gfn);
            if self.filter[w] & b != 0 {
                self.invalidate_page(gfn);
                hit = true;
            }
        }
        hit
    }

    #[cold]
    fn invalidate_page(&mut self, gfn: u64) {
        self.invalidations += 1;
        self.generation += 1;
        let (w, b) = filter_bit(gfn);
        self.filter[w] &= !b;
        let mut refill = [0u64; 64];
        for s in self.slots.iter_mut().filter(|s| s.tag != EMPTY_TAG) {
            let g = (s.tag & ((1 << 56) - 1)) >> 12;
            if g == gfn {
                s.tag = EMPTY_TAG;
            } else {
                let (w, b) = filter_bit(g);
                refill[w] |= b;
            }
        }
        self.filter[w] |= refill[w] & b;
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.generation += 1;
        for s in self.slots.iter_mut() {
            s.tag = EMPTY_TAG;
        }
        self.filter = [0; 64];
    }
}

/// Result of decoding a byte window.
pub enum DecodeOutcome {
    /// A complete instruction.
    Ok(Decoded),
    /// The window ended before the instruction did.
    NeedMore,
    /// Not a valid instruction (#UD).
    Invalid,
}

/// Address size from the legacy prefixes (SDM vol. 1, 3.6.1, Tables 3-3 and
/// 3-4 "Effective Operand- and Address-Size Attributes"; 0x67 toggles it).
fn address_size(bitness: u32, bytes: &[u8]) -> u8 {
    let mut has67 = false;
    for &b in bytes {
        match b {
            0x67 => has67 = true,
            0xf0 | 0xf2 | 0xf3 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 | 0x66 => {}
            0x40..=0x4f if bitness == 64 => {}
            _ => break,
        }
    }
    match (bitness, has67) {
        (16, false) | (32, true) => 2,
        (64, false) => 8,
        _ => 4,
    }
}

/// Decodes one instruction from `bytes` at `bitness` (16, 32, 64).
pub fn decode(bitness: u32, bytes: &[u8]) -> DecodeOutcome {
    let mut dec = Decoder::with_ip(bitness, bytes, 0, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    dec.decode_out(&mut insn);
    match dec.last_error() {
        DecoderError::None => {
            let mut b = [0u8; 15];
            let n = insn.len().min(15);
            b[..n].copy_from_slice(&bytes[..n]);
            let asz = address_size(bitness, &b[..n]);
            DecodeOutcome::Ok(Decoded {
                insn,
                bytes: b,
                len: n as u8,
                asz,
                safe: is_safe(&insn),
                fast: classify(&insn, bitness, asz),
            })
        }
        DecoderError::NoMoreBytes if bytes.len() < 15 => DecodeOutcome::NeedMore,
        _ => DecodeOutcome::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(bytes: &[u8]) -> Decoded {
        match decode(64, bytes) {
            DecodeOutcome::Ok(d) => d,
            _ => panic!("decode failed"),
        }
    }

    #[test]
    fn cache_hit_miss_and_invalidate() {
        let mut c = DecodeCache::new();
        assert!(c.get(0x1000, 64).is_none());
        c.insert(0x1000, 64, d(&[0x90]));
        c.insert(0x2000, 64, d(&[0xc3]));
        assert!(c.get(0x1000, 64).is_some());
        assert!(c.get(0x1000, 32).is_none(), "bitness is part of the key");
        assert!(!c.on_write(0x3000, 8));
        assert!(c.on_write(0x1ffe, 4), "write crossing into the cached page");
        assert!(c.get(0x1000, 64).is_none());
        assert!(c.get(0x2000, 64).is_none());
        c.insert(0x2000, 64, d(&[0xc3]));
        assert!(c.get(0x2000, 64).is_some());
    }

    #[test]
    fn decode_outcomes() {
        assert!(matches!(decode(64, &[0x48]), DecodeOutcome::NeedMore));
        assert!(matches!(decode(64, &[0x0f, 0x0b]), DecodeOutcome::Ok(_)));
        assert!(
            matches!(decode(64, &[0x06, 0x90, 0x90]), DecodeOutcome::Invalid),
            "push es is invalid in 64-bit mode"
        );
        assert!(matches!(decode(64, &[0x66; 15]), DecodeOutcome::Invalid));
    }
}
