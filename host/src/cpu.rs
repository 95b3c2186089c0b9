//! Host CPU identification through CPUID, for backend detection.

/// What the host CPU says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCpu {
    /// CPUID leaf 0 vendor string (`GenuineIntel`, `AuthenticAMD`, ...).
    pub vendor: String,
    /// Brand string from leaves 0x8000_0002..4, if present.
    pub brand: String,
    /// Display family (SDM vol. 2A, CPUID leaf 1 EAX: family + extended family).
    pub family: u32,
    /// Display model (model + extended model << 4 for family 6 and 15).
    pub model: u32,
    /// Stepping ID.
    pub stepping: u32,
    /// CPUID.1:ECX.VMX[bit 5] (SDM vol. 3, 24.6 "Discovering Support for VMX").
    pub vmx: bool,
    /// CPUID.8000_0001h:ECX.SVM[bit 2] (APM vol. 2, 15.4 "Enabling SVM").
    pub svm: bool,
    /// CPUID.1:ECX[bit 31]: running under a hypervisor.
    pub hypervisor: bool,
    /// Hypervisor vendor signature from leaf 0x4000_0000, if any.
    pub hypervisor_vendor: Option<String>,
}

impl HostCpu {
    /// Whether the CPU offers hardware virtualization (VMX or SVM).
    pub fn hardware_virtualization(&self) -> bool {
        self.vmx || self.svm
    }

    /// Reads the host CPU with CPUID.
    #[cfg(target_arch = "x86_64")]
    pub fn detect() -> Self {
        use std::arch::x86_64::__cpuid;
        let regs_str = |regs: &[u32]| -> String {
            let bytes: Vec<u8> = regs.iter().flat_map(|r| r.to_le_bytes()).collect();
            String::from_utf8_lossy(&bytes)
                .trim_matches(char::from(0))
                .trim()
                .to_string()
        };
        let l0 = __cpuid(0);
        let vendor = regs_str(&[l0.ebx, l0.edx, l0.ecx]);
        let l1 = __cpuid(1);
        let base_family = (l1.eax >> 8) & 0xf;
        let ext_family = (l1.eax >> 20) & 0xff;
        let base_model = (l1.eax >> 4) & 0xf;
        let ext_model = (l1.eax >> 16) & 0xf;
        // SDM vol. 2A, CPUID, "Figure 3-6 Version Information Returned by CPUID in EAX".
        let family = if base_family == 0xf {
            base_family + ext_family
        } else {
            base_family
        };
        let model = if base_family == 0x6 || base_family == 0xf {
            (ext_model << 4) | base_model
        } else {
            base_model
        };
        let max_ext = __cpuid(0x8000_0000).eax;
        let svm = max_ext >= 0x8000_0001 && { (__cpuid(0x8000_0001).ecx >> 2) & 1 == 1 };
        let brand = if max_ext >= 0x8000_0004 {
            let mut r = Vec::new();
            for leaf in 0x8000_0002u32..=0x8000_0004 {
                let c = __cpuid(leaf);
                r.extend([c.eax, c.ebx, c.ecx, c.edx]);
            }
            regs_str(&r)
        } else {
            String::new()
        };
        let hypervisor = (l1.ecx >> 31) & 1 == 1;
        let hypervisor_vendor = hypervisor.then(|| {
            let h = __cpuid(0x4000_0000);
            regs_str(&[h.ebx, h.ecx, h.edx])
        });
        Self {
            vendor,
            brand,
            family,
            model,
            stepping: l1.eax & 0xf,
            vmx: (l1.ecx >> 5) & 1 == 1,
            svm,
            hypervisor,
            hypervisor_vendor,
        }
    }

    /// Non-x86 hosts have no CPUID; nothing is usable but the report still prints.
    #[cfg(not(target_arch = "x86_64"))]
    pub fn detect() -> Self {
        Self {
            vendor: std::env::consts::ARCH.to_string(),
            brand: String::new(),
            family: 0,
            model: 0,
            stepping: 0,
            vmx: false,
            svm: false,
            hypervisor: false,
            hypervisor_vendor: None,
        }
    }

    /// The software backend that models this vendor (DESIGN.md "CPU detection").
    pub fn native_software_backend(&self) -> &'static str {
        match self.vendor.as_str() {
            "AuthenticAMD" | "HygonGenuine" => "svm",
            _ => "vmx",
        }
    }
}

/// /dev/kvm as the host sees it, independent of any backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevKvm {
    /// Not present.
    Missing,
    /// Present but cannot be opened read-write.
    NoAccess(String),
    /// Opens read-write.
    Usable,
}

impl DevKvm {
    /// Probes `/dev/kvm` by opening it read-write.
    pub fn probe() -> Self {
        let p = std::path::Path::new("/dev/kvm");
        if !p.exists() {
            return DevKvm::Missing;
        }
        match std::fs::OpenOptions::new().read(true).write(true).open(p) {
            Ok(_) => DevKvm::Usable,
            Err(e) => DevKvm::NoAccess(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_a_vendor() {
        let c = HostCpu::detect();
        assert!(!c.vendor.is_empty());
        assert!(c.family > 0);
    }

    #[test]
    fn software_backend_by_vendor() {
        let mut c = HostCpu::detect();
        for (v, b) in [
            ("GenuineIntel", "vmx"),
            ("AuthenticAMD", "svm"),
            ("HygonGenuine", "svm"),
            ("CentaurHauls", "vmx"),
        ] {
            c.vendor = v.into();
            assert_eq!(c.native_software_backend(), b, "{v}");
        }
    }
}
