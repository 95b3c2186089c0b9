//! Lazily built second-level tables: fault → install → retry, page-size
//! choice, MMIO outside slots, read-only slots, slot removal.

use super::tdp::*;
use super::{GpaAccess, SecondLevel, SlError};
use crate::access::AccessKind::{Read, Write};
use crate::fault::{NestedFault, NestedKind};
use crate::phys::PhysMemory;
use hyperplug_plugin_api::backend::MemorySlot;

const MB: u64 = 1 << 20;

fn both() -> Vec<(&'static str, TdpMmu)> {
    vec![
        ("ept4", TdpMmu::new_ept(4, true, 46).unwrap()),
        ("ept5", TdpMmu::new_ept(5, true, 46).unwrap()),
        ("npt4", TdpMmu::new_npt(4, true, 46).unwrap()),
        ("npt5", TdpMmu::new_npt(5, true, 46).unwrap()),
    ]
}

fn slot(id: u32, gpa: u64, size: u64, host_base: u64, read_only: bool) -> SlotRange {
    SlotRange {
        id,
        gpa,
        size,
        host_base,
        read_only,
    }
}

fn fault_kind(e: &Result<super::SlTranslation, SlError>) -> Option<NestedKind> {
    match e {
        Err(SlError::Fault(f)) => Some(f.kind),
        _ => None,
    }
}

#[test]
fn fault_install_retry_and_page_size() {
    // (slot, large pages allowed, faulting gpa, expected page size)
    let cases = [
        (slot(1, 0, 4 * MB, 0x4000_0000, false), true, 0x1234, 2 * MB),
        (slot(1, 0, 4 * MB, 0x4000_0000, false), false, 0x1234, 4096),
        (
            slot(1, 0x1000, 4 * MB, 0x4000_1000, false),
            true,
            0x20_1000,
            2 * MB,
        ),
        (
            slot(1, 0x1000, 4 * MB, 0x4000_0000, false),
            true,
            0x20_1000,
            4096,
        ),
        (
            slot(1, 0x1000, 4 * MB, 0x4000_1000, false),
            true,
            0x1800,
            4096,
        ),
        (
            slot(1, 0x1000, 4 * MB, 0x4000_1000, false),
            true,
            0x40_0800,
            4096,
        ),
        (
            slot(1, 0x10_0000, 0x1000, 0x7000, false),
            true,
            0x10_0ff8,
            4096,
        ),
    ];
    for (s, large, gpa, size) in cases {
        for (name, mut tdp) in both() {
            tdp.set_large_pages(large);
            tdp.add_slot(s).unwrap();
            let acc = GpaAccess::physical(Write);
            let first = tdp.translate(gpa, acc);
            let want_kind = match tdp.second_level() {
                SecondLevel::Ept(_) => NestedKind::EptViolation,
                SecondLevel::Npt(_) => NestedKind::Npf,
            };
            assert_eq!(fault_kind(&first), Some(want_kind), "{name} {gpa:#x}");
            assert_eq!(
                tdp.handle_fault(gpa, 4, true),
                Ok(FaultOutcome::Retry),
                "{name}"
            );
            let t = tdp.translate(gpa, acc).unwrap();
            assert_eq!(
                (t.hpa, t.page_size),
                (s.host_base + (gpa - s.gpa), size),
                "{name} {gpa:#x}"
            );
            assert!(t.writable && t.executable, "{name}");
            // A second fault on the same page is spurious and changes nothing.
            let leaf = tdp.tables().read_u64(t.leaf_entry).unwrap();
            assert_eq!(tdp.handle_fault(gpa, 4, false), Ok(FaultOutcome::Retry));
            assert_eq!(
                tdp.tables().read_u64(t.leaf_entry).unwrap(),
                leaf,
                "{name}: D flag kept"
            );
        }
    }
}

#[test]
fn outside_slots_is_mmio_and_marked() {
    for (name, mut tdp) in both() {
        tdp.add_slot(slot(1, 0, MB, 0x10_0000, false)).unwrap();
        let gpa = 0xfee0_0030;
        let want = FaultOutcome::Mmio(MmioAccess {
            gpa,
            size: 4,
            write: true,
        });
        assert_eq!(tdp.handle_fault(gpa, 4, true), Ok(want), "{name}");
        // The MMIO entry now faults with the format's "MMIO" flavour.
        let got = tdp.translate(gpa, GpaAccess::physical(Read));
        match (tdp.second_level(), got) {
            (SecondLevel::Ept(_), Err(SlError::Fault(f))) => {
                assert_eq!(f.kind, NestedKind::EptMisconfig, "{name}")
            }
            (SecondLevel::Npt(_), Err(SlError::Fault(f))) => {
                assert_eq!(f.kind, NestedKind::Npf);
                assert_eq!(f.info & 0b1001, 0b1001, "{name}: P and RSVD");
            }
            (_, other) => panic!("{name}: {other:?}"),
        }
        // Beyond the tables' reach: MMIO, and no entry aliasing a lower address.
        let far = (1u64 << 57) | 0x1000;
        tdp.handle_fault(0x1000, 4, false).unwrap();
        assert!(matches!(
            tdp.handle_fault(far, 4, false),
            Ok(FaultOutcome::Mmio(_))
        ));
        assert_eq!(
            tdp.translate(0x1000, GpaAccess::physical(Read))
                .map(|t| t.hpa),
            Ok(0x10_1000),
            "{name}"
        );
        let read = FaultOutcome::Mmio(MmioAccess {
            gpa,
            size: 1,
            write: false,
        });
        assert_eq!(tdp.handle_fault(gpa, 1, false), Ok(read), "{name}");
        // A slot added over it replaces the MMIO entry.
        tdp.add_slot(slot(2, 0xfee0_0000, 0x1000, 0x20_0000, false))
            .unwrap();
        assert!(fault_kind(&tdp.translate(gpa, GpaAccess::physical(Read))).is_some());
        assert_eq!(tdp.handle_fault(gpa, 4, false), Ok(FaultOutcome::Retry));
        assert_eq!(
            tdp.translate(gpa, GpaAccess::physical(Read)).map(|t| t.hpa),
            Ok(0x20_0030),
            "{name}"
        );
    }
}

#[test]
fn read_only_slot_writes_are_mmio() {
    for (name, mut tdp) in both() {
        tdp.add_slot(slot(4, 0xfff0_0000, MB, 0x80_0000, true))
            .unwrap();
        let gpa = 0xfff0_1234;
        let mmio_write = FaultOutcome::Mmio(MmioAccess {
            gpa,
            size: 2,
            write: true,
        });
        assert_eq!(
            tdp.handle_fault(gpa, 2, true),
            Ok(mmio_write),
            "{name}: write before read"
        );
        assert_eq!(tdp.handle_fault(gpa, 2, false), Ok(FaultOutcome::Retry));
        let t = tdp.translate(gpa, GpaAccess::physical(Read)).unwrap();
        assert_eq!((t.hpa, t.writable), (0x80_1234, false), "{name}");
        let w = tdp.translate(gpa, GpaAccess::physical(Write));
        let want = match tdp.second_level() {
            // Write, and R and X allowed (bits 3 and 5).
            SecondLevel::Ept(_) => (NestedKind::EptViolation, 2 | 1 << 3 | 1 << 5),
            // P, W, U/S.
            SecondLevel::Npt(_) => (NestedKind::Npf, 0b111),
        };
        match w {
            Err(SlError::Fault(NestedFault { kind, info, .. })) => {
                assert_eq!((kind, info), want, "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(tdp.handle_fault(gpa, 2, true), Ok(mmio_write), "{name}");
    }
}

#[test]
fn slot_removal_zaps_and_frees() {
    for (name, mut tdp) in both() {
        tdp.add_slot(slot(1, 0, 4 * MB, 0x4000_0000, false))
            .unwrap();
        tdp.add_slot(slot(2, 4 * MB, 4 * MB, 0x5000_0000, false))
            .unwrap();
        tdp.set_large_pages(false);
        let empty = tdp.tables().in_use();
        for gpa in [0x1000, 0x20_3000, 0x40_0000, 0x60_0000] {
            tdp.handle_fault(gpa, 4, false).unwrap();
        }
        let full = tdp.tables().in_use();
        assert_eq!(
            full,
            empty + 4 + (tdp.second_level().levels() as usize - 2),
            "{name}"
        );
        let removed = tdp.remove_slot(1).unwrap();
        assert_eq!(removed.id, 1);
        assert_eq!(
            tdp.tables().in_use(),
            full - 2,
            "{name}: both page tables of slot 1 freed"
        );
        for gpa in [0x1000, 0x20_3000] {
            assert!(
                fault_kind(&tdp.translate(gpa, GpaAccess::physical(Read))).is_some(),
                "{name} {gpa:#x}"
            );
            assert!(
                matches!(tdp.handle_fault(gpa, 4, false), Ok(FaultOutcome::Mmio(_))),
                "{name}"
            );
        }
        for gpa in [0x40_0000, 0x60_0000] {
            assert!(
                tdp.translate(gpa, GpaAccess::physical(Read)).is_ok(),
                "{name}: slot 2 kept"
            );
        }
        assert_eq!(tdp.remove_slot(1), Err(TdpError::NoSlot(1)));
        // Zapping part of a table clears exactly the covered leaves.
        assert_eq!(tdp.zap_range(0x60_0000, 0x1000), Ok(1), "{name}");
        assert!(tdp.translate(0x40_0000, GpaAccess::physical(Read)).is_ok());
    }
}

#[test]
fn splitting_a_large_page_keeps_its_mappings() {
    for (name, mut tdp) in both() {
        tdp.add_slot(slot(1, 0, 2 * MB, 0x4000_0000, false))
            .unwrap();
        tdp.handle_fault(0, 8, true).unwrap();
        tdp.translate(0x5000, GpaAccess::physical(Write)).unwrap();
        // Force a 4-KiB install into the 2-MiB range: the leaf is split.
        tdp.set_large_pages(false);
        tdp.handle_fault(0x1000, 8, false).unwrap();
        let t = tdp.translate(0x1234, GpaAccess::physical(Read)).unwrap();
        assert_eq!((t.hpa, t.page_size), (0x4000_1234, 4096), "{name}");
        let t = tdp.translate(0x1f_f000, GpaAccess::physical(Read)).unwrap();
        assert_eq!((t.hpa, t.page_size), (0x401f_f000, 4096), "{name}");
        // The 2-MiB leaf was dirty: all 512 split entries still are.
        assert_eq!(tdp.harvest_dirty(|_, _| {}), Ok(512), "{name}");
    }
}

#[test]
fn bad_slots_are_refused() {
    let mut tdp = TdpMmu::new_ept(4, false, 46).unwrap();
    tdp.add_slot(slot(1, 0, MB, 0, false)).unwrap();
    let cases = [
        (slot(2, 0x10_0000, 0, 0, false), "size is zero"),
        (slot(2, 0x10_0800, 0x1000, 0, false), "not 4-KiB aligned"),
        (
            slot(2, 0x10_0000, 0x1000, 0x800, false),
            "not 4-KiB aligned",
        ),
        (
            slot(2, 1 << 48, 0x1000, 0, false),
            "beyond the second level",
        ),
        (
            slot(2, 0x10_0000, 0x1000, 1 << 46, false),
            "beyond MAXPHYADDR",
        ),
        (slot(2, 0x8_0000, MB, 0x100_0000, false), "overlaps"),
        (slot(1, 0x100_0000, MB, 0x100_0000, false), "overlaps"),
    ];
    for (s, msg) in cases {
        let err = tdp.add_slot(s).unwrap_err();
        assert!(err.to_string().contains(msg), "{s:?}: {err}");
    }
    assert_eq!(
        TdpMmu::new_npt(3, true, 46).err(),
        Some(TdpError::Levels(3))
    );
    assert_eq!(
        TdpMmu::new_ept(6, true, 46).err(),
        Some(TdpError::Levels(6))
    );
}

#[test]
fn memory_slot_conversion() {
    let m = MemorySlot {
        id: 9,
        flags: MemorySlot::READONLY | MemorySlot::LOG_DIRTY,
        guest_phys_addr: 0x10_0000,
        size: 0x2000,
        host_addr: 0x7f00_0000_0000,
    };
    assert_eq!(
        SlotRange::from(&m),
        slot(9, 0x10_0000, 0x2000, 0x7f00_0000_0000, true)
    );
    let s = SlotRange::from(&MemorySlot { flags: 0, ..m });
    assert!(
        !s.read_only && s.contains(0x10_1fff) && !s.contains(0x10_2000) && s.end() == 0x10_2000
    );
}
