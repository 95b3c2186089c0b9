//! Memory-slot validation on a real KVM VM.

mod common;

use common::*;
use hyperplug_plugin_api::backend::{MemorySlot, Vm};
use hyperplug_plugin_api::ErrorKind;

#[test]
fn slot_validation_errors() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(0x10000);
    let extra = GuestMem::new(0x4000);
    let (vm, _vcpu) = vm_with_memory(&mem);
    let good = MemorySlot {
        id: 1,
        flags: 0,
        guest_phys_addr: 0x10_0000,
        size: 0x4000,
        host_addr: extra.addr(),
    };
    let with = |f: &dyn Fn(&mut MemorySlot)| {
        let mut s = good;
        f(&mut s);
        s
    };
    let max = vm.caps().max_slots as u32;
    let cases: Vec<(&str, MemorySlot, &str)> = vec![
        ("size 0", with(&|s| s.size = 0), "size is 0"),
        (
            "gpa",
            with(&|s| s.guest_phys_addr += 0x10),
            "guest_phys_addr 0x100010 is not 4 KiB aligned",
        ),
        (
            "size",
            with(&|s| s.size = 0x1001),
            "size 0x1001 is not 4 KiB aligned",
        ),
        ("host", with(&|s| s.host_addr += 8), "host_addr"),
        ("null host", with(&|s| s.host_addr = 0), "host_addr is null"),
        ("flags", with(&|s| s.flags = 0x80), "unknown flags 0x80"),
        (
            "duplicate id",
            with(&|s| s.id = 0),
            "slot 0: id already in use",
        ),
        (
            "overlap",
            with(&|s| s.guest_phys_addr = 0xf000),
            "slot 1 [0xf000, 0x13000) overlaps slot 0 [0x0, 0x10000)",
        ),
        (
            "wrap",
            with(&|s| s.guest_phys_addr = u64::MAX - 0xfff),
            "wraps",
        ),
        ("id range", with(&|s| s.id = max), "id out of range"),
    ];
    for (name, slot, needle) in cases {
        let err = vm.add_memory_slot(slot).expect_err(name);
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{name}: {err}");
        assert!(
            err.message.contains(needle),
            "{name}: '{err}' lacks '{needle}'"
        );
    }
    assert_eq!(vm.slots().len(), 1, "no failed slot was recorded");

    vm.add_memory_slot(good).expect("good slot");
    assert_eq!(vm.slots().len(), 2);
    let err = vm.remove_memory_slot(7).expect_err("no slot 7");
    assert!(err.message.contains("slot 7: no such slot"), "{err}");
    vm.remove_memory_slot(1).expect("remove");
    // Once removed, the range and the id are free again.
    vm.add_memory_slot(good).expect("re-add");
    vm.remove_memory_slot(1).expect("remove again");
    assert_eq!(vm.slots().len(), 1);
}

#[test]
fn duplicate_and_bad_vcpu_ids() {
    if !kvm_usable() {
        return;
    }
    let mem = GuestMem::new(0x10000);
    let (vm, _vcpu) = vm_with_memory(&mem);
    let err = vm.create_vcpu(0).err().expect("duplicate vCPU 0");
    assert!(err.message.contains("vCPU 0 already exists"), "{err}");
    let err = vm.create_vcpu(u32::MAX).err().expect("huge id");
    assert!(err.message.contains("id out of range"), "{err}");
}
