//! Task switches with 16-bit TSSs (SDM vol. 3, 7.6 "16-Bit Task-State
//! Segment (TSS)", Figure 7-10; busy types 1/3 against 9/11), the TSS
//! limit rule (Table 6-6: #TS below 67H / 2CH), and the debug trap flag T
//! of a 32-bit TSS (SDM vol. 3, 7.2.1; 17.3.1.5: #DB with DR6.BT before
//! the new task's first instruction).

mod common;

use common::*;
use hyperplug_emulator::cpu::SegReg;
use hyperplug_emulator::flags::{NT, RF};
use hyperplug_emulator::policy::InterceptKind;
use hyperplug_emulator::EventKind;

/// The running task A (the common machine's TR): a busy 32-bit TSS at TSS.
const TSS_A: u16 = 0x30;
/// Task B's TSS descriptor.
const TSS_B: u16 = 0x40;
/// Task B's TSS base.
const B_BASE: u64 = 0x1900;
/// Where task B starts.
const B_IP: u64 = 0x0200;

/// A TSS descriptor (SDM vol. 3, Figure 7-3) of type `typ`.
fn tss_desc(base: u64, limit: u32, typ: u8) -> u64 {
    u64::from(limit & 0xffff) | ((base & 0xff_ffff) << 16) | (u64::from(typ) << 40) | (1 << 47)
}

/// A 32-bit protected-mode machine in task A with task B's descriptor
/// (`typ`, `limit`) at TSS_B; #BP, #DB and every fault intercepted.
fn machine(typ: u8, limit: u32) -> Machine {
    let mut m = Machine::new(M::Prot32);
    m.policy.exceptions = u32::MAX;
    m.cpu.gdtr.limit = 0x7f;
    assert!(m.bus.load(
        GDT + u64::from(TSS_A),
        &tss_desc(TSS, 0x67, 0xb).to_le_bytes()
    ));
    assert!(m.bus.load(
        GDT + u64::from(TSS_B),
        &tss_desc(B_BASE, limit, typ).to_le_bytes()
    ));
    m
}

/// Writes a 16-bit TSS for task B: IP, FLAGS, AX..DI = 0x1000 + i,
/// SP = 0x6000, ES/CS/SS/DS = 0x10/0x08/0x10/0x10, no LDT.
fn tss16(m: &mut Machine, flags: u16) {
    let w = |m: &mut Machine, o: u64, v: u16| assert!(m.bus.load(B_BASE + o, &v.to_le_bytes()));
    w(m, 0x0e, B_IP as u16);
    w(m, 0x10, flags);
    for i in 0..8u16 {
        w(m, 0x12 + 2 * u64::from(i), 0x1000 + i);
    }
    w(m, 0x12 + 2 * 4, 0x6000);
    for (i, s) in [0x10u16, 0x08, 0x10, 0x10].into_iter().enumerate() {
        w(m, 0x22 + 2 * i as u64, s);
    }
    w(m, 0x2a, 0);
}

/// Writes a 32-bit TSS for task B (EIP B_IP, ESP 0x6000, flat segments)
/// with the T flag `t`.
fn tss32(m: &mut Machine, t: bool) {
    let w = |m: &mut Machine, o: u64, v: u32| assert!(m.bus.load(B_BASE + o, &v.to_le_bytes()));
    w(m, 0x1c, 0);
    w(m, 0x20, B_IP as u32);
    w(m, 0x24, 2);
    w(m, 0x38, 0x6000);
    for (i, s) in [0x10u32, 0x08, 0x10, 0x10, 0x10, 0x10]
        .into_iter()
        .enumerate()
    {
        w(m, 0x48 + 4 * i as u64, s);
    }
    w(m, 0x60, 0);
    w(m, 0x64, u32::from(t));
}

/// The type nibble of the descriptor `sel`.
fn desc_type(m: &Machine, sel: u16) -> u8 {
    m.bus.peek(GDT + u64::from(sel) + 5, 1).expect("gdt")[0] & 0xf
}

/// Runs until an intercepted exception: (vector, error code).
fn stop(m: &mut Machine) -> (u8, Option<u32>) {
    match m.run(50).kind {
        EventKind::Intercept(i) => match i.kind {
            InterceptKind::Exception {
                vector, error_code, ..
            } => (vector, error_code),
            k => panic!("unexpected {k:?}"),
        },
        k => panic!("unexpected {k:?} at {:#x}", m.cpu.rip),
    }
}

/// `jmp far TSS_B:0` (or `call far` if `call`) at CODE.
fn far_to_b(m: &mut Machine, call: bool) {
    let op = if call { 0x9a } else { 0xea };
    assert!(m.bus.load(CODE, &[op, 0, 0, 0, 0, TSS_B as u8, 0]));
}

#[test]
fn jmp_to_16bit_task_loads_the_16bit_layout() {
    let mut m = machine(0x1, 0x2c);
    tss16(&mut m, 0x0002 | 0x0040); // ZF
    m.cpu.gpr[0] = 0xdead_beef;
    m.cpu.cr3 = 0x4000;
    m.cpu.seg[SegReg::Fs as usize].selector = 0x10;
    far_to_b(&mut m, false);
    assert!(m.bus.load(B_IP, &[0xcc])); // int3
    assert_eq!(stop(&mut m), (3, None));
    assert_eq!(m.cpu.tr.selector, TSS_B);
    assert_eq!(m.cpu.tr.typ, 0x3, "busy 16-bit TSS in TR");
    assert_eq!(m.cpu.rip, B_IP, "IP (before the INT3 trap is intercepted)");
    let want: Vec<u64> = (0..8u64)
        .map(|i| if i == 4 { 0x6000 } else { 0x1000 + i })
        .collect();
    assert_eq!(m.cpu.gpr[..8].to_vec(), want, "AX..DI zero-extended");
    assert_ne!(m.cpu.rflags & 0x40, 0, "FLAGS from the TSS");
    assert_eq!(m.cpu.cr3, 0x4000, "a 16-bit TSS has no CR3");
    assert_eq!(m.cpu.seg[SegReg::Fs as usize].selector, 0, "null FS");
    assert_eq!(m.cpu.seg[SegReg::Gs as usize].selector, 0, "null GS");
    assert_eq!((desc_type(&m, TSS_A), desc_type(&m, TSS_B)), (0x9, 0x3));
    // Task A saved in its 32-bit TSS.
    assert_eq!(m.bus.peek_u64(TSS + 0x20) & 0xffff_ffff, CODE + 7);
    assert_eq!(m.bus.peek_u64(TSS + 0x28) & 0xffff_ffff, 0xdead_beef);
}

#[test]
fn call_to_16bit_task_and_iret_back_saves_the_16bit_layout() {
    let mut m = machine(0x1, 0x2c);
    tss16(&mut m, 0x0002);
    far_to_b(&mut m, true);
    assert!(m.bus.load(CODE + 7, &[0xcc])); // int3 back in task A
                                            // Task B: mov ax, 0x4242 (32-bit CS: 66 b8 42 42); iretd.
    assert!(m.bus.load(B_IP, &[0x66, 0xb8, 0x42, 0x42, 0xcf]));
    m.cpu.gpr[3] = 0x7777_1234;
    assert_eq!(stop(&mut m), (3, None));
    assert_eq!(m.cpu.tr.selector, TSS_A, "back in task A");
    assert_eq!(m.gpr(3), 0x7777_1234, "task A's EBX restored");
    assert_eq!(m.cpu.rflags & NT, 0);
    assert_eq!((desc_type(&m, TSS_A), desc_type(&m, TSS_B)), (0xb, 0x1));
    let w = |o: u64| m.bus.peek_u64(B_BASE + o) & 0xffff;
    assert_eq!(w(0), u64::from(TSS_A), "back link in the 16-bit TSS");
    assert_eq!(w(0x0e), B_IP + 5, "IP saved after the IRET");
    assert_eq!(w(0x12), 0x4242, "AX saved");
    assert_eq!(w(0x12 + 8), 0x6000, "SP saved");
    assert_eq!(w(0x10) & NT, 0, "FLAGS saved with NT clear");
    assert_eq!(w(0x24), 0x08, "CS saved");
}

#[test]
fn tss_limit_and_type_table() {
    // (descriptor type, limit, outcome: None = switched, Some(vector))
    let rows: [(u8, u32, Option<u8>); 8] = [
        (0x1, 0x2c, None),
        (0x1, 0x2b, Some(10)),
        (0x9, 0x67, None),
        (0x9, 0x66, Some(10)),
        (0x9, 0x2c, Some(10)),
        (0x3, 0x2c, Some(13)),
        (0xb, 0x67, Some(13)),
        (0x2, 0x67, Some(13)),
    ];
    for (i, &(typ, limit, want)) in rows.iter().enumerate() {
        let mut m = machine(typ, limit);
        if typ & 8 != 0 {
            tss32(&mut m, false);
        } else {
            tss16(&mut m, 2);
        }
        far_to_b(&mut m, false);
        assert!(m.bus.load(B_IP, &[0xcc]));
        let got = stop(&mut m);
        match want {
            None => {
                assert_eq!(got, (3, None), "row {i}");
                assert_eq!(m.cpu.tr.selector, TSS_B, "row {i}");
            }
            Some(v) => {
                assert_eq!(got, (v, Some(u32::from(TSS_B))), "row {i}");
                assert_eq!((m.cpu.tr.selector, m.cpu.rip), (TSS_A, CODE), "row {i}");
            }
        }
    }
}

#[test]
fn t_flag_raises_db_in_the_new_task() {
    // (T flag, #DB expected)
    for (t, db) in [(true, true), (false, false)] {
        let mut m = machine(0x9, 0x67);
        tss32(&mut m, t);
        far_to_b(&mut m, false);
        assert!(m.bus.load(B_IP, &[0xcc]));
        let got = stop(&mut m);
        assert_eq!(m.cpu.tr.selector, TSS_B, "T {t}");
        assert_eq!(m.cpu.rip, B_IP, "T {t}: before the first instruction");
        if db {
            assert_eq!(got, (1, None), "T {t}");
            assert_ne!(m.cpu.dr[6] & (1 << 15), 0, "DR6.BT");
        } else {
            assert_eq!(got, (3, None), "T {t}");
            assert_eq!(m.cpu.dr[6] & (1 << 15), 0);
        }
    }
}

#[test]
fn t_flag_db_delivered_to_the_new_task_handler() {
    let mut m = machine(0x9, 0x67);
    m.policy.exceptions = 0;
    tss32(&mut m, true);
    m.gate(1, CODE + 0x800);
    assert!(m.bus.load(CODE + 0x800, &[0xf4]));
    far_to_b(&mut m, false);
    m.run_to_hlt();
    // The trap frame on task B's stack: EIP, CS, EFLAGS (RF 0: a trap).
    let sp = m.gpr(4);
    assert_eq!(sp, 0x6000 - 12);
    assert_eq!(m.bus.peek_u64(sp) & 0xffff_ffff, B_IP);
    assert_eq!(m.bus.peek_u64(sp + 8) & RF, 0);
    assert_ne!(m.cpu.dr[6] & (1 << 15), 0);
}

#[test]
fn post_commit_fault_pushes_rf_and_keeps_the_new_task() {
    // Task B's DS is not present: #NP(DS) in task B, delivered through
    // task B's IDT gate on task B's stack, RF = 1 (a fault).
    let mut m = machine(0x9, 0x67);
    m.policy.exceptions = 0;
    tss32(&mut m, false);
    assert!(m
        .bus
        .load(GDT + 0x50, &0x004f_1200_0000_ffffu64.to_le_bytes()));
    assert!(m.bus.load(B_BASE + 0x54, &0x50u32.to_le_bytes()));
    m.gate(11, CODE + 0x800);
    assert!(m.bus.load(CODE + 0x800, &[0xf4]));
    far_to_b(&mut m, false);
    m.run_to_hlt();
    assert_eq!(m.cpu.tr.selector, TSS_B);
    let sp = m.gpr(4);
    assert_eq!(sp, 0x6000 - 16, "error code, EIP, CS, EFLAGS");
    assert_eq!(m.bus.peek_u64(sp) & 0xffff_ffff, 0x50, "#NP(DS selector)");
    assert_eq!(m.bus.peek_u64(sp + 4) & 0xffff_ffff, B_IP);
    assert_ne!(m.bus.peek_u64(sp + 12) & RF, 0, "RF in the image");
    assert_eq!(m.cpu.seg[SegReg::Ds as usize].selector, 0x50);
    assert!(m.cpu.seg[SegReg::Ds as usize].unusable, "DS not qualified");
}
