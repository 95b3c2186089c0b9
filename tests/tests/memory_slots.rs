//! User story: a host embedding Hyperplug as a library adds a read-only slot
//! (a ROM) while the VM is paused; the guest reads it, its writes to it do not
//! change it, and addresses and ports nobody claims read as all ones.

mod support;

use hyperplug::image::{load_raw_bytes, Mode};
use hyperplug::plugin::{Inventory, PluginPath};
use hyperplug::run::{Machine, MachineConfig, Outcome, Trace, VmOptions};
use iced_x86::code_asm::*;
use support::*;
use vm_memory::{Bytes, GuestAddress};

const ROM_BASE: u64 = 0x4000_0000;
const UNBACKED: u64 = 0x5000_0000;
const LOAD: u64 = 0x10_0000;

/// 32-bit guest: reads the ROM, writes it, reads it again, reads unbacked
/// memory and an unclaimed port, then `cli; hlt`.
fn rom_guest() -> Vec<u8> {
    let mut a = CodeAssembler::new(32).unwrap();
    a.mov(esi, dword_ptr(ROM_BASE as u32)).unwrap();
    a.mov(dword_ptr(ROM_BASE as u32), 0x1234_5678u32).unwrap();
    a.mov(edi, dword_ptr(ROM_BASE as u32)).unwrap();
    a.mov(ebp, dword_ptr(UNBACKED as u32)).unwrap();
    a.xor(eax, eax).unwrap();
    a.mov(dx, 0x80u32).unwrap();
    a.in_(al, dx).unwrap();
    a.cli().unwrap();
    a.hlt().unwrap();
    a.assemble(LOAD).unwrap()
}

#[test]
fn read_only_slot_and_unclaimed_accesses() {
    // (backend, nested paging)
    let mut legs = vec![("svm", false), ("svm", true)];
    if kvm_usable_or_skip("memory slots under kvm") {
        legs.push(("kvm", false));
    }
    for (name, nested) in legs {
        rom_slot_on(name, nested);
    }
}

/// The ROM story on backend `name`.
fn rom_slot_on(name: &str, nested: bool) {
    let inv = Inventory::scan(&PluginPath::new(&[target_dir()]));
    let backend = inv.backend(name).expect("backend built");
    let cfg = MachineConfig {
        deterministic: false,
        memory: 16 << 20,
        cpus: 1,
        devices: Vec::new(),
        trace: Trace::default(),
    };
    let opts = VmOptions {
        nested_paging: nested,
    };
    let mut m = Machine::create_with(&backend, &inv, &cfg, opts).expect("machine");

    let rom = m
        .add_memory_slot(ROM_BASE, 0x1000, true)
        .expect("add ROM slot");
    m.memory()
        .write_obj(0xdead_beefu32, GuestAddress(ROM_BASE))
        .unwrap();
    // The same range cannot be added twice.
    assert!(m.add_memory_slot(ROM_BASE, 0x1000, false).is_err());

    let setup = load_raw_bytes(
        m.memory(),
        m.ram_size(),
        "rom-guest",
        &rom_guest(),
        LOAD,
        LOAD,
        Mode::Protected,
    )
    .expect("load guest");
    m.set_boot_state(&setup).unwrap();
    let outcome = m.run().expect("run");
    assert!(
        matches!(outcome, Outcome::GuestStopped { .. }),
        "{outcome:?}"
    );
    let (r, _) = m.registers().unwrap();
    assert_eq!(r.rsi as u32, 0xdead_beef, "ROM read on {name}");
    assert_eq!(
        r.rdi as u32, 0xdead_beef,
        "ROM unchanged by the guest's write on {name} (nested {nested})"
    );
    assert_eq!(r.rbp as u32, 0xffff_ffff, "unbacked memory reads all ones");
    assert_eq!(r.rax as u8, 0xff, "unclaimed port reads all ones");
    assert_eq!(
        m.memory().read_obj::<u32>(GuestAddress(ROM_BASE)).unwrap(),
        0xdead_beef
    );

    m.remove_memory_slot(rom.id).expect("remove ROM slot");
    assert!(
        m.remove_memory_slot(rom.id).is_err(),
        "a slot can be removed once"
    );
    assert!(
        m.memory().read_obj::<u32>(GuestAddress(ROM_BASE)).is_err(),
        "host view dropped the slot"
    );
}
