//! 256-bit vector sets laid out as the ISR/TMR/IRR registers are: eight
//! 32-bit words, vector v at word v / 32, bit v % 32 (SDM 11.8.4, Figure 11-20).

/// A set of vectors 0..=255.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct VectorSet(pub(crate) [u32; 8]);

impl VectorSet {
    /// Adds `v`.
    pub(crate) fn set(&mut self, v: u8) {
        self.0[usize::from(v >> 5)] |= 1 << (v & 31);
    }

    /// Removes `v`.
    pub(crate) fn clear(&mut self, v: u8) {
        self.0[usize::from(v >> 5)] &= !(1 << (v & 31));
    }

    /// Whether `v` is in the set.
    pub(crate) fn test(&self, v: u8) -> bool {
        self.0[usize::from(v >> 5)] & (1 << (v & 31)) != 0
    }

    /// The highest vector in the set.
    pub(crate) fn highest(&self) -> Option<u8> {
        (0..8u8).rev().find_map(|w| {
            let word = self.0[usize::from(w)];
            (word != 0).then(|| w * 32 + (31 - word.leading_zeros() as u8))
        })
    }

    /// Word `i` (0..8) as the register at offset base + 0x10 * i reads.
    pub(crate) fn word(&self, i: usize) -> u32 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::VectorSet;

    #[test]
    fn set_clear_highest() {
        let mut s = VectorSet::default();
        assert_eq!(s.highest(), None);
        for v in [16u8, 31, 32, 200, 255] {
            s.set(v);
            assert!(s.test(v));
            assert_eq!(s.highest(), Some(v));
        }
        assert_eq!(s.word(7), 1 << 31);
        assert_eq!(s.word(6), 1 << 8);
        assert_eq!(s.word(0), (1 << 16) | (1 << 31));
        s.clear(255);
        assert_eq!(s.highest(), Some(200));
        assert!(!s.test(255));
        assert_eq!(s.word(8), 0);
    }
}
