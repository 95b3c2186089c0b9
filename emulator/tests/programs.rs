//! Small programs run on a FlatBus in real, protected and long mode,
//! checking final registers, memory and retired-instruction counts.

mod common;

use common::*;
use hyperplug_emulator::flags;
use hyperplug_emulator::EventKind;
use iced_x86::code_asm::*;

#[test]
fn sum_loop_every_mode() {
    for mode in [M::Real, M::Prot32, M::Long64] {
        let mut m = Machine::new(mode);
        m.load(|a| {
            match mode {
                M::Real => {
                    a.xor(ax, ax).unwrap();
                    a.mov(cx, 100u32).unwrap();
                    let mut l = a.create_label();
                    a.set_label(&mut l).unwrap();
                    a.add(ax, cx).unwrap();
                    a.loop_(l).unwrap();
                }
                M::Prot32 => {
                    a.xor(eax, eax).unwrap();
                    a.mov(ecx, 100u32).unwrap();
                    let mut l = a.create_label();
                    a.set_label(&mut l).unwrap();
                    a.add(eax, ecx).unwrap();
                    a.loop_(l).unwrap();
                }
                M::Long64 => {
                    a.xor(eax, eax).unwrap();
                    a.mov(rcx, 100u64).unwrap();
                    let mut l = a.create_label();
                    a.set_label(&mut l).unwrap();
                    a.add(rax, rcx).unwrap();
                    a.loop_(l).unwrap();
                }
            }
            a.hlt().unwrap();
        });
        let e = m.run_to_hlt();
        assert_eq!(m.gpr(0) & 0xffff, 5050, "{mode:?}");
        assert_eq!(m.gpr(1) & 0xffff, 0, "{mode:?}");
        // xor, mov, 100 × (add, loop), hlt
        assert_eq!(e.retired, 2 + 200 + 1, "{mode:?}");
        assert!(m.cpu.halted);
    }
}

#[test]
fn memory_stack_and_calls_long_mode() {
    let mut m = Machine::new(M::Long64);
    m.load(|a| {
        let mut f = a.create_label();
        a.mov(rax, 0x1122_3344_5566_7788u64).unwrap();
        a.mov(qword_ptr(DATA), rax).unwrap();
        a.mov(rbx, DATA).unwrap();
        a.movzx(ecx, byte_ptr(rbx + 1)).unwrap();
        a.movsx(rdx, word_ptr(rbx + 6)).unwrap();
        a.push(rax).unwrap();
        a.call(f).unwrap();
        a.pop(rsi).unwrap();
        a.bswap(rsi).unwrap();
        a.lea(rdi, qword_ptr(rbx + rcx * 4 + 0x10)).unwrap();
        a.xchg(qword_ptr(rbx), rdi).unwrap();
        a.hlt().unwrap();
        a.set_label(&mut f).unwrap();
        a.mov(r8, qword_ptr(rsp + 8)).unwrap();
        a.ret().unwrap();
    });
    m.run_to_hlt();
    assert_eq!(m.gpr(1), 0x77);
    assert_eq!(m.gpr(2), 0x1122);
    assert_eq!(m.gpr(8), 0x1122_3344_5566_7788);
    assert_eq!(m.gpr(6), 0x8877_6655_4433_2211);
    assert_eq!(m.gpr(7), 0x1122_3344_5566_7788, "xchg returned old memory");
    assert_eq!(m.bus.peek_u64(DATA), DATA + 0x77 * 4 + 0x10);
    assert_eq!(m.gpr(4), STACK);
}

#[test]
fn mul_div_and_flags_protected() {
    let mut m = Machine::new(M::Prot32);
    m.load(|a| {
        a.mov(eax, 0xffff_ffffu32).unwrap();
        a.mov(ecx, 2u32).unwrap();
        a.mul(ecx).unwrap(); // edx:eax = 0x1_ffff_fffe, CF=OF=1
        a.mov(esi, eax).unwrap();
        a.mov(edi, edx).unwrap();
        a.mov(ebx, 7u32).unwrap();
        a.div(ebx).unwrap(); // 0x1fffffffe / 7
        a.imul_3(ebp, ebx, -3i32).unwrap();
        a.hlt().unwrap();
    });
    m.run_to_hlt();
    assert_eq!((m.gpr(6), m.gpr(7)), (0xffff_fffe, 1));
    let n: u64 = 0x1_ffff_fffe;
    assert_eq!(m.gpr(0), n / 7);
    assert_eq!(m.gpr(2), n % 7);
    assert_eq!(m.gpr(5), (-21i32) as u32 as u64);
    assert_eq!(m.cpu.rflags & (flags::CF | flags::OF), 0);
}

#[test]
fn real_mode_far_call_and_segments() {
    let mut m = Machine::new(M::Real);
    m.load(|a| {
        let mut far = a.create_label();
        a.mov(ax, 0x2000u32).unwrap();
        a.mov(ds, ax).unwrap();
        a.mov(word_ptr(0x10), 0xbeefu32).unwrap();
        a.mov(bx, word_ptr(0x10)).unwrap();
        a.call(far).unwrap();
        a.hlt().unwrap();
        a.set_label(&mut far).unwrap();
        a.pushf().unwrap();
        a.pop(dx).unwrap();
        a.ret().unwrap();
    });
    m.run_to_hlt();
    assert_eq!(m.gpr(3) & 0xffff, 0xbeef);
    assert_eq!(m.bus.peek(0x20010, 2), Some(vec![0xef, 0xbe]));
    assert_eq!(m.gpr(2) & 0xffff, 2, "pushf image has bit 1 set");
}

#[test]
fn rep_movsb_resumes_after_budget() {
    let mut m = Machine::new(M::Long64);
    let src: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
    m.bus.load(DATA, &src);
    m.load(|a| {
        a.mov(rsi, DATA).unwrap();
        a.mov(rdi, DATA + 0x1000).unwrap();
        a.mov(ecx, 200u32).unwrap();
        a.cld().unwrap();
        a.rep().movsb().unwrap();
        a.hlt().unwrap();
    });
    let mut total = 0;
    let mut rounds = 0;
    loop {
        let e = m.run(7);
        total += e.retired;
        rounds += 1;
        if e.kind == EventKind::Hlt {
            break;
        }
        assert_eq!(e.kind, EventKind::Budget);
        assert!(rounds < 100);
    }
    assert_eq!(m.bus.peek(DATA + 0x1000, 200), Some(src));
    assert_eq!(m.gpr(1), 0);
    assert_eq!(m.gpr(6), DATA + 200);
    // mov, mov, mov, cld, rep movsb (once), hlt
    assert_eq!(total, 6);
    assert!(rounds > 20, "the rep was split across runs ({rounds})");
}

#[test]
fn rep_with_zero_count_and_repe_cmps() {
    let mut m = Machine::new(M::Prot32);
    m.bus.load(DATA, b"hello world");
    m.bus.load(DATA + 0x100, b"hello there");
    m.load(|a| {
        a.xor(ecx, ecx).unwrap();
        a.mov(edi, (DATA + 0x200) as u32).unwrap();
        a.rep().stosb().unwrap(); // count 0: nothing
        a.mov(esi, DATA as u32).unwrap();
        a.mov(edi, (DATA + 0x100) as u32).unwrap();
        a.mov(ecx, 11u32).unwrap();
        a.repe().cmpsb().unwrap();
        a.hlt().unwrap();
    });
    m.run_to_hlt();
    // Mismatch at index 6 ('w' vs 't'): 7 compares done.
    assert_eq!(m.gpr(1), 4);
    assert_eq!(m.gpr(6), DATA + 7);
    assert_eq!(m.cpu.rflags & flags::ZF, 0);
    assert_eq!(m.bus.peek(DATA + 0x200, 1), Some(vec![0]));
}

#[test]
fn self_modifying_code_invalidates_decode_cache() {
    let mut m = Machine::new(M::Long64);
    // Loop twice over `mov eax, imm32`; after the first pass patch the immediate.
    let bytes = m.load(|a| {
        let mut top = a.create_label();
        let mut done = a.create_label();
        a.xor(ebx, ebx).unwrap();
        a.set_label(&mut top).unwrap();
        a.mov(eax, 0x1111_1111u32).unwrap(); // at CODE + 2, imm at CODE + 3
        a.add(ebx, eax).unwrap();
        a.cmp(ebx, 0x1111_1111u32).unwrap();
        a.jne(done).unwrap();
        a.mov(dword_ptr(CODE + 3), 0x2222_2222u32).unwrap();
        a.jmp(top).unwrap();
        a.set_label(&mut done).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(&bytes[2..7], &[0xb8, 0x11, 0x11, 0x11, 0x11]);
    m.run_to_hlt();
    assert_eq!(
        m.gpr(3),
        0x3333_3333,
        "second pass saw the patched immediate"
    );
    assert!(m.eng.decode_cache().invalidations >= 1);
}

#[test]
fn cmov_setcc_shifts_real_mode() {
    let mut m = Machine::new(M::Real);
    m.load(|a| {
        a.mov(ax, 0x8001u32).unwrap();
        a.shl(ax, 1).unwrap(); // CF=1, OF=1
        a.setc(bl).unwrap();
        a.seto(bh).unwrap();
        a.mov(cx, 5u32).unwrap();
        a.mov(dx, 9u32).unwrap();
        a.cmp(cx, dx).unwrap();
        a.cmovl(cx, dx).unwrap();
        a.mov(si, 0xf00fu32).unwrap();
        a.rol(si, 4).unwrap();
        a.hlt().unwrap();
    });
    m.run_to_hlt();
    assert_eq!(m.gpr(0) & 0xffff, 2);
    assert_eq!(m.gpr(3) & 0xffff, 0x0101);
    assert_eq!(m.gpr(1) & 0xffff, 9);
    assert_eq!(m.gpr(6) & 0xffff, 0x00ff);
}

#[test]
fn enter_leave_protected() {
    let mut m = Machine::new(M::Prot32);
    m.load(|a| {
        a.mov(ebp, 0x1234u32).unwrap();
        a.enter(16u32, 0u32).unwrap();
        a.mov(eax, ebp).unwrap();
        a.mov(ebx, esp).unwrap();
        a.leave().unwrap();
        a.hlt().unwrap();
    });
    m.run_to_hlt();
    assert_eq!(m.gpr(0), STACK - 4);
    assert_eq!(m.gpr(3), STACK - 4 - 16);
    assert_eq!(m.gpr(5), 0x1234);
    assert_eq!(m.gpr(4), STACK);
}
