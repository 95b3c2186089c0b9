//! Four-decade BCD counting (82C54 datasheet, "Control Word Format": BCD = 1
//! selects a binary coded decimal counter of 4 decades).

/// The number a 4-digit BCD register holds. Nibbles above 9 are not valid
/// BCD; the datasheet leaves them undefined and this model weighs them like
/// digits (so `0xFFFF` is 16665).
pub fn decode(raw: u16) -> u32 {
    let d = |shift: u16| u32::from((raw >> shift) & 0xf);
    d(12) * 1000 + d(8) * 100 + d(4) * 10 + d(0)
}

/// The 4-digit BCD register holding `value % 10000`.
pub fn encode(value: u32) -> u16 {
    let v = value % 10_000;
    // Each digit is below 10, so the packed value fits in 16 bits.
    (((v / 1000) << 12) | (((v / 100) % 10) << 8) | (((v / 10) % 10) << 4) | (v % 10)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(u16, u32)] = &[
            (0x0000, 0),
            (0x0001, 1),
            (0x0010, 10),
            (0x1234, 1234),
            (0x9999, 9999),
        ];
        for &(raw, n) in cases {
            assert_eq!(decode(raw), n, "{raw:#x}");
            assert_eq!(encode(n), raw, "{n}");
        }
        assert_eq!(encode(10_000), 0);
        assert_eq!(encode(12_345), 0x2345);
        assert_eq!(decode(0xffff), 16_665);
    }
}
