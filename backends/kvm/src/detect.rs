//! Whether /dev/kvm is usable here, and whether the host CPU virtualizes in hardware.

use hyperplug_plugin_api::backend::Detection;
use kvm_ioctls::{Cap, Kvm};

/// The only KVM API version there has ever been (`KVM_GET_API_VERSION`).
pub const KVM_API_VERSION: i32 = 12;

/// Capabilities the backend cannot work without, with their KVM names.
pub const REQUIRED_CAPS: [(Cap, &str); 4] = [
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    (Cap::Hlt, "KVM_CAP_HLT"),
    (Cap::VcpuEvents, "KVM_CAP_VCPU_EVENTS"),
];

/// Host CPU virtualization extensions, from CPUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostVirt {
    /// CPUID.01H:ECX.VMX\[bit 5\] (SDM vol. 2A, CPUID, Table 3-10).
    pub vmx: bool,
    /// CPUID.80000001H:ECX.SVM\[bit 2\] (APM vol. 3, E.4.2).
    pub svm: bool,
}

impl HostVirt {
    /// Whether either extension is present.
    pub fn any(self) -> bool {
        self.vmx || self.svm
    }
}

/// Reads VMX/SVM support from the host CPU's CPUID.
pub fn host_virt() -> HostVirt {
    use core::arch::x86_64::__cpuid;
    // CPUID is unprivileged and always present on x86_64; leaf 0 gives the max basic leaf.
    let max_basic = __cpuid(0).eax;
    let vmx = max_basic >= 1 && (__cpuid(1).ecx >> 5) & 1 == 1;
    let max_ext = __cpuid(0x8000_0000).eax;
    let svm = max_ext >= 0x8000_0001 && (__cpuid(0x8000_0001).ecx >> 2) & 1 == 1;
    HostVirt { vmx, svm }
}

/// Opens /dev/kvm, turning the usual failures into the one-line reasons `detect` reports.
pub fn open_kvm() -> Result<Kvm, String> {
    Kvm::new().map_err(|e| match e.errno() {
        libc::ENOENT | libc::ENODEV | libc::ENXIO => format!("no /dev/kvm: {e}"),
        libc::EACCES | libc::EPERM => {
            "/dev/kvm: permission denied (add your user to the kvm group)".to_string()
        }
        _ => format!("/dev/kvm: cannot open: {e}"),
    })
}

/// Checks the API version and the required capabilities of an open /dev/kvm.
pub fn check_kvm(kvm: &Kvm) -> Result<i32, String> {
    let api = kvm.get_api_version();
    if api < 0 {
        // The ioctl returned -1; errno still holds its cause.
        let err = std::io::Error::last_os_error();
        return Err(format!(
            "/dev/kvm: KVM_GET_API_VERSION failed: {err} (not a KVM device?)"
        ));
    }
    if api != KVM_API_VERSION {
        return Err(format!(
            "/dev/kvm: KVM_GET_API_VERSION is {api}, need {KVM_API_VERSION}"
        ));
    }
    let missing: Vec<&str> = REQUIRED_CAPS
        .iter()
        .filter(|(cap, _)| !kvm.check_extension(*cap))
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "/dev/kvm: required capabilities missing: {}",
            missing.join(", ")
        ));
    }
    Ok(api)
}

/// Builds the detection result from its parts (pure, so it is testable).
pub fn detection_from(check: Result<i32, String>, virt: HostVirt) -> Detection {
    match check {
        Err(reason) => Detection {
            usable: false,
            hardware_assisted: false,
            reason: reason.into(),
        },
        Ok(api) => {
            let reason = if virt.any() {
                let ext = match (virt.vmx, virt.svm) {
                    (true, true) => "VMX+SVM",
                    (true, false) => "VMX",
                    _ => "SVM",
                };
                format!("/dev/kvm usable (API {api}), hardware-assisted: host CPU has {ext}")
            } else {
                format!(
                    "/dev/kvm usable (API {api}), paravirtual: host CPU has no VMX/SVM, \
                     guest kernel code is emulated by the host kernel"
                )
            };
            Detection {
                usable: true,
                hardware_assisted: virt.any(),
                reason: reason.into(),
            }
        }
    }
}

/// Whether the kvm backend works on this machine, and why (not).
pub fn detect() -> Detection {
    let check = open_kvm().and_then(|kvm| check_kvm(&kvm));
    detection_from(check, host_virt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_table() {
        let none = HostVirt {
            vmx: false,
            svm: false,
        };
        let vmx = HostVirt {
            vmx: true,
            svm: false,
        };
        let svm = HostVirt {
            vmx: false,
            svm: true,
        };
        type Case = (Result<i32, String>, HostVirt, bool, bool, &'static str);
        let cases: [Case; 5] = [
            (
                Ok(12),
                vmx,
                true,
                true,
                "hardware-assisted: host CPU has VMX",
            ),
            (
                Ok(12),
                svm,
                true,
                true,
                "hardware-assisted: host CPU has SVM",
            ),
            (
                Ok(12),
                none,
                true,
                false,
                "paravirtual: host CPU has no VMX/SVM",
            ),
            (
                Err("no /dev/kvm: x".into()),
                vmx,
                false,
                false,
                "no /dev/kvm",
            ),
            (
                Err("/dev/kvm: permission denied (add your user to the kvm group)".into()),
                none,
                false,
                false,
                "permission denied",
            ),
        ];
        for (check, virt, usable, hw, needle) in cases {
            let d = detection_from(check, virt);
            assert_eq!(d.usable, usable, "{}", d.reason);
            assert_eq!(d.hardware_assisted, hw, "{}", d.reason);
            assert!(d.reason.contains(needle), "{} lacks {needle}", d.reason);
        }
    }

    #[test]
    fn detect_is_consistent_with_cpuid() {
        let d = detect();
        if d.usable {
            assert_eq!(d.hardware_assisted, host_virt().any());
            assert!(
                d.reason.starts_with("/dev/kvm usable (API 12)"),
                "{}",
                d.reason
            );
        } else {
            assert!(!d.hardware_assisted);
            assert!(d.reason.contains("/dev/kvm"), "{}", d.reason);
        }
    }
}
