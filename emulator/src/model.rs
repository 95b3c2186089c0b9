//! The CPU model: the CPUID table the guest sees (SDM vol. 2, CPUID).

/// One CPUID leaf (and optional subleaf) and its EAX, EBX, ECX, EDX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidEntry {
    /// EAX input.
    pub leaf: u32,
    /// ECX input, when the leaf has subleaves.
    pub subleaf: Option<u32>,
    /// Output registers EAX, EBX, ECX, EDX.
    pub regs: [u32; 4],
}

/// A CPUID table. Leaves not listed return zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuModel {
    /// The entries.
    pub entries: Vec<CpuidEntry>,
}

fn vendor_regs(v: &[u8; 12]) -> [u32; 3] {
    let w = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
    [w(0), w(4), w(8)]
}

impl Default for CpuModel {
    /// A GenuineIntel model advertising only what the engine implements:
    /// leaf 1 EDX = VME(1), PSE(3), TSC(4), MSR(5), PAE(6), CX8(8), SEP(11), PGE(13),
    /// CMOV(15), PAT(16); leaf 1 ECX = CMPXCHG16B(13), MOVBE(22), POPCNT(23);
    /// leaf 7.0 EBX = BMI1(3), BMI2(8), INVPCID(10), ADX(19), ECX = RDPID(22); leaf 0x80000001 ECX = LAHF-SAHF(0),
    /// LZCNT(5), EDX = SYSCALL(11), NX(20), LM(29); 0x80000008 EAX = 48-bit
    /// linear, 52-bit physical (SDM vol. 2, CPUID, Tables 3-8 to 3-20).
    fn default() -> Self {
        let [b, d, c] = vendor_regs(b"GenuineIntel");
        let e = |leaf, regs| CpuidEntry {
            leaf,
            subleaf: None,
            regs,
        };
        let edx1 = (1 << 1)
            | (1 << 3)
            | (1 << 4)
            | (1 << 5)
            | (1 << 6)
            | (1 << 8)
            | (1 << 11)
            | (1 << 13)
            | (1 << 15)
            | (1 << 16);
        let ecx1 = (1 << 13) | (1 << 22) | (1 << 23);
        Self {
            entries: vec![
                e(0, [7, b, c, d]),
                e(1, [0x0006_06a6, 0, ecx1, edx1]),
                CpuidEntry {
                    leaf: 7,
                    subleaf: Some(0),
                    regs: [0, (1 << 3) | (1 << 8) | (1 << 10) | (1 << 19), 1 << 22, 0],
                },
                e(0x8000_0000, [0x8000_0008, 0, 0, 0]),
                e(
                    0x8000_0001,
                    [0, 0, 1 | (1 << 5), (1 << 11) | (1 << 20) | (1 << 29)],
                ),
                e(0x8000_0008, [0x3034, 0, 0, 0]),
            ],
        }
    }
}

impl CpuModel {
    /// The outputs for EAX = `leaf`, ECX = `subleaf`.
    pub fn lookup(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        self.entries
            .iter()
            .find(|e| e.leaf == leaf && e.subleaf.is_none_or(|s| s == subleaf))
            .map_or([0; 4], |e| e.regs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_string() {
        let m = CpuModel::default();
        let r = m.lookup(0, 0);
        let mut s = Vec::new();
        for x in [r[1], r[3], r[2]] {
            s.extend_from_slice(&x.to_le_bytes());
        }
        assert_eq!(&s, b"GenuineIntel");
        assert_eq!(m.lookup(0x1234, 0), [0; 4]);
        assert_ne!(m.lookup(0x8000_0001, 0)[3] & (1 << 29), 0);
    }
}
