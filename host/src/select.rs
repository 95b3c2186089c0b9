//! `--backend auto`: the ranking of DESIGN.md ("CPU detection and CPU models").
//!
//! 1. `kvm` when /dev/kvm is usable and the host CPU has VMX or SVM;
//! 2. the software backend of the host's vendor (Intel → `vmx`, AMD → `svm`,
//!    others → `vmx`), then the other software backend;
//! 3. `kvm` without hardware assistance (a paravirtual /dev/kvm emulates guest
//!    kernel code in software, far slower than the software backends).

use crate::cpu::HostCpu;
use hyperplug_plugin_api::backend::Detection;

/// One backend as seen by the ranking.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Backend name.
    pub name: String,
    /// Its `detect()` result.
    pub detection: Detection,
}

/// The outcome of the ranking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Index into the candidates of the chosen backend, if any is usable.
    pub index: Option<usize>,
    /// Why, in one sentence.
    pub why: String,
}

/// Ranks `candidates` for this host CPU.
pub fn choose(cpu: &HostCpu, candidates: &[Candidate]) -> Choice {
    let usable = |name: &str| {
        candidates
            .iter()
            .position(|c| c.name == name && c.detection.usable)
    };
    if let Some(i) = usable("kvm") {
        if candidates[i].detection.hardware_assisted && cpu.hardware_virtualization() {
            return Choice {
                index: Some(i),
                why:
                    "kvm: /dev/kvm is usable and the host CPU has hardware virtualization (rank 1)"
                        .into(),
            };
        }
    }
    let native = cpu.native_software_backend();
    if let Some(i) = usable(native) {
        return Choice {
            index: Some(i),
            why: format!(
                "{native}: the software backend of the host vendor {} (rank 2)",
                cpu.vendor
            ),
        };
    }
    let other = if native == "vmx" { "svm" } else { "vmx" };
    if let Some(i) = usable(other) {
        return Choice {
            index: Some(i),
            why: format!("{other}: a software backend ({native}, the host vendor's, is not available) (rank 2)"),
        };
    }
    if let Some(i) = usable("kvm") {
        return Choice {
            index: Some(i),
            why: format!(
                "kvm: the only usable backend; /dev/kvm works but without hardware assistance \
                 (no VMX/SVM in the host CPUID), so guest kernel code is emulated by the host kernel (rank 3; \
                 the {native} software backend would rank higher once built)"
            ),
        };
    }
    if let Some(i) = candidates.iter().position(|c| c.detection.usable) {
        return Choice {
            index: Some(i),
            why: format!("{}: the only usable backend", candidates[i].name),
        };
    }
    let why = if candidates.is_empty() {
        "no backend plugins found (check --plugin-dir or HYPERPLUG_PLUGIN_PATH)".to_string()
    } else {
        let reasons: Vec<String> = candidates
            .iter()
            .map(|c| format!("{}: {}", c.name, c.detection.reason))
            .collect();
        format!("no usable backend ({})", reasons.join("; "))
    };
    Choice { index: None, why }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(vendor: &str, vmx: bool, svm: bool) -> HostCpu {
        HostCpu {
            vendor: vendor.into(),
            brand: String::new(),
            family: 6,
            model: 1,
            stepping: 0,
            vmx,
            svm,
            hypervisor: false,
            hypervisor_vendor: None,
        }
    }

    fn cand(name: &str, usable: bool, hw: bool) -> Candidate {
        Candidate {
            name: name.into(),
            detection: Detection {
                usable,
                hardware_assisted: hw,
                reason: "r".into(),
            },
        }
    }

    fn pick(c: &HostCpu, cands: &[Candidate]) -> Option<String> {
        choose(c, cands).index.map(|i| cands[i].name.clone())
    }

    #[test]
    fn ranking_table() {
        let intel_hw = cpu("GenuineIntel", true, false);
        let intel_pv = cpu("GenuineIntel", false, false);
        let amd_pv = cpu("AuthenticAMD", false, false);
        let amd_hw = cpu("AuthenticAMD", false, true);
        let all = |kvm_ok, kvm_hw| {
            vec![
                cand("kvm", kvm_ok, kvm_hw),
                cand("vmx", true, false),
                cand("svm", true, false),
            ]
        };
        let cases: Vec<(&HostCpu, Vec<Candidate>, Option<&str>)> = vec![
            (&intel_hw, all(true, true), Some("kvm")),
            (&amd_hw, all(true, true), Some("kvm")),
            (&intel_pv, all(true, false), Some("vmx")),
            (&amd_pv, all(true, false), Some("svm")),
            (&amd_pv, all(false, false), Some("svm")),
            (&intel_hw, all(false, false), Some("vmx")),
            (
                &amd_pv,
                vec![cand("kvm", true, false), cand("vmx", true, false)],
                Some("vmx"),
            ),
            (&amd_pv, vec![cand("kvm", true, false)], Some("kvm")),
            (&intel_pv, vec![cand("kvm", false, false)], None),
            (&intel_pv, vec![], None),
        ];
        for (i, (c, cands, want)) in cases.iter().enumerate() {
            assert_eq!(pick(c, cands).as_deref(), *want, "case {i}");
        }
    }

    #[test]
    fn paravirtual_kvm_reason_says_so() {
        let c = choose(
            &cpu("AuthenticAMD", false, false),
            &[cand("kvm", true, false)],
        );
        assert!(c.why.contains("without hardware assistance"), "{}", c.why);
    }
}
