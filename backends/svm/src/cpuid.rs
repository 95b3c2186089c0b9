//! The CPU model the guest sees under svm: AuthenticAMD, with only the
//! features the host engine implements (its own model supplies the feature
//! words), as kvm-amd answers CPUID from the table user space gives it.

use hyperplug_plugin_api::engine::{CpuidRegs, EngineBox};

/// The vendor string, as CPUID leaf 0 returns it in EBX, EDX, ECX.
pub const VENDOR: &[u8; 12] = b"AuthenticAMD";
/// The brand string of leaves 0x8000_0002..=0x8000_0004.
const BRAND: &[u8; 48] = b"Hyperplug AMD-V (svm) virtual CPU\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
/// Family 17h, model 31h, stepping 0 (APM vol. 3, E.3.2 "Function 1h":
/// base family 0Fh + extended family 08h).
const SIGNATURE: u32 = 0x0083_0F10;
/// CPUID.01H:EDX.APIC (APM vol. 3, E.3.2).
const EDX1_APIC: u32 = 1 << 9;
/// CPUID.01H:ECX.x2APIC (bit 21): not offered (the host cannot forward
/// the x2APIC MSRs of every backend).
const ECX1_X2APIC: u32 = 1 << 21;
/// CPUID.01H:ECX.HYPERVISOR (bit 31): the guest runs under a hypervisor.
const ECX1_HYPERVISOR: u32 = 1 << 31;

fn word(b: &[u8], i: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(w)
}

/// The model's answer for vCPU `apic_id`.
pub fn cpuid(engine: &EngineBox, leaf: u32, subleaf: u32, apic_id: u32, apic: bool) -> CpuidRegs {
    let mut r = engine.cpuid(leaf, subleaf);
    match leaf {
        0 | 0x8000_0000 => {
            r.ebx = word(VENDOR, 0);
            r.edx = word(VENDOR, 4);
            r.ecx = word(VENDOR, 8);
        }
        1 => {
            r.eax = SIGNATURE;
            // APIC ID 31:24, one logical processor 23:16, CLFLUSH 8 qwords 15:8.
            r.ebx = (apic_id << 24) | (1 << 16) | (8 << 8);
            r.ecx = (r.ecx & !ECX1_X2APIC) | ECX1_HYPERVISOR;
            if apic {
                r.edx |= EDX1_APIC;
            } else {
                r.edx &= !EDX1_APIC;
            }
        }
        0x8000_0002..=0x8000_0004 => {
            let base = (leaf - 0x8000_0002) as usize * 16;
            r = CpuidRegs {
                eax: word(BRAND, base),
                ebx: word(BRAND, base + 4),
                ecx: word(BRAND, base + 8),
                edx: word(BRAND, base + 12),
            };
        }
        _ => {}
    }
    if leaf == 0x8000_0000 && r.eax < 0x8000_0004 {
        r.eax = 0x8000_0008;
    }
    r
}
