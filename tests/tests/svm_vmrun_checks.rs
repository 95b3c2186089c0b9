//! User story: a host embedding Hyperplug hands the svm backend an illegal
//! guest state; VMRUN's consistency checks (APM vol. 2, 15.5.1) refuse it
//! with #VMEXIT(VMEXIT_INVALID) naming the check, and the VM stops cleanly
//! instead of running garbage.

mod support;

use hyperplug::image::{load_raw_bytes, Mode};
use hyperplug::plugin::{Inventory, PluginPath};
use hyperplug::run::{Machine, MachineConfig, Outcome, Trace};
use hyperplug_plugin_api::state::Sregs;
use support::*;

/// Boots a 64-bit `hlt` image on svm with `break_state` applied to the
/// boot registers; returns how the VM ended.
fn run_with(break_state: impl FnOnce(&mut Sregs)) -> Outcome {
    let inv = Inventory::scan(&PluginPath::new(&[target_dir()]));
    let backend = inv.backend("svm").expect("svm backend built");
    let cfg = MachineConfig {
        deterministic: false,
        memory: 16 << 20,
        cpus: 1,
        devices: Vec::new(),
        trace: Trace::default(),
    };
    let mut m = Machine::create(&backend, &inv, &cfg).expect("machine");
    let mut setup = load_raw_bytes(
        m.memory(),
        m.ram_size(),
        "hlt",
        &[0xfa, 0xf4],
        0x10_0000,
        0x10_0000,
        Mode::Long,
    )
    .expect("load");
    break_state(&mut setup.sregs);
    m.set_boot_state(&setup).expect("boot state");
    m.run().expect("run")
}

#[test]
fn illegal_guest_states_end_in_vmexit_invalid() {
    // (what is broken, the check's words in the message)
    type Case = (&'static str, fn(&mut Sregs), &'static str);
    let cases: [Case; 4] = [
        (
            "CS.L and CS.D both set in long mode",
            |s| s.cs.db = 1,
            "CS.L",
        ),
        (
            "CR0.NW without CR0.CD",
            |s| s.cr0 = (s.cr0 & !(1 << 30)) | (1 << 29),
            "NW",
        ),
        ("long mode without CR4.PAE", |s| s.cr4 &= !(1 << 5), "PAE"),
        ("a reserved EFER bit", |s| s.efer |= 1 << 20, "EFER"),
    ];
    for (what, f, needle) in cases {
        match run_with(f) {
            Outcome::GuestStopped { what: why, .. } => {
                assert!(why.contains("VMEXIT_INVALID"), "{what}: {why}");
                assert!(why.contains(needle), "{what}: {why}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // The unbroken state runs: cli; hlt stops as a halted guest.
    match run_with(|_| {}) {
        Outcome::GuestStopped { what, .. } => {
            assert!(what.contains("interrupts disabled"), "{what}")
        }
        other => panic!("{other:?}"),
    }
}
