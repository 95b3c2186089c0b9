//! Host CPU features that decide which optional instructions the generator may emit.

/// Optional integer-instruction extensions (CPUID bits per SDM vol. 2A CPUID, tables 3-8,
/// 3-10; AMD APM vol. 3 appendix E for 8000_0001h ECX.ABM).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Features {
    /// POPCNT: CPUID.01H:ECX[23].
    pub popcnt: bool,
    /// MOVBE: CPUID.01H:ECX[22].
    pub movbe: bool,
    /// LZCNT (AMD "ABM"): CPUID.80000001H:ECX[5].
    pub lzcnt: bool,
    /// BMI1 (ANDN, BEXTR, BLSI, BLSMSK, BLSR, TZCNT): CPUID.(EAX=07H,ECX=0):EBX[3].
    pub bmi1: bool,
    /// BMI2 (BZHI, MULX, PDEP, PEXT, RORX, SARX, SHLX, SHRX): CPUID.(EAX=07H,ECX=0):EBX[8].
    pub bmi2: bool,
    /// ADX (ADCX, ADOX): CPUID.(EAX=07H,ECX=0):EBX[19].
    pub adx: bool,
}

impl Features {
    /// Everything enabled (for generating cases for an emulator that has them all).
    pub const ALL: Features = Features {
        popcnt: true,
        movbe: true,
        lzcnt: true,
        bmi1: true,
        bmi2: true,
        adx: true,
    };

    /// Reads the host's CPUID.
    pub fn host() -> Features {
        use std::arch::x86_64::__cpuid_count;
        // CPUID is available on every x86-64 CPU (SDM vol. 2A CPUID); leaf limits are
        // checked before reading leaves 7 and 8000_0001h.
        let l0 = __cpuid_count(0, 0);
        let l1 = __cpuid_count(1, 0);
        let l7 = if l0.eax >= 7 {
            __cpuid_count(7, 0)
        } else {
            __cpuid_count(0, 0)
        };
        let ext_max = __cpuid_count(0x8000_0000, 0).eax;
        let e1_ecx = if ext_max >= 0x8000_0001 {
            __cpuid_count(0x8000_0001, 0).ecx
        } else {
            0
        };
        let has7 = l0.eax >= 7;
        Features {
            popcnt: l1.ecx & (1 << 23) != 0,
            movbe: l1.ecx & (1 << 22) != 0,
            lzcnt: e1_ecx & (1 << 5) != 0,
            bmi1: has7 && l7.ebx & (1 << 3) != 0,
            bmi2: has7 && l7.ebx & (1 << 8) != 0,
            adx: has7 && l7.ebx & (1 << 19) != 0,
        }
    }

    /// Host vendor string from CPUID leaf 0 (e.g. "AuthenticAMD").
    pub fn vendor() -> String {
        let l0 = std::arch::x86_64::__cpuid_count(0, 0);
        let mut b = Vec::with_capacity(12);
        for r in [l0.ebx, l0.edx, l0.ecx] {
            b.extend_from_slice(&r.to_le_bytes());
        }
        String::from_utf8_lossy(&b).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_matches_std_detection() {
        let f = Features::host();
        assert_eq!(f.popcnt, std::is_x86_feature_detected!("popcnt"));
        assert_eq!(f.movbe, std::is_x86_feature_detected!("movbe"));
        assert_eq!(f.lzcnt, std::is_x86_feature_detected!("lzcnt"));
        assert_eq!(f.bmi1, std::is_x86_feature_detected!("bmi1"));
        assert_eq!(f.bmi2, std::is_x86_feature_detected!("bmi2"));
        assert_eq!(f.adx, std::is_x86_feature_detected!("adx"));
        assert_eq!(Features::vendor().len(), 12);
    }
}
